/**
 * Deploy admission: everything between "a client asks to deploy (or roll back)" and "a revision
 * and its rollout are stored". The routes (app-routes.ts) parse and answer; this module decides.
 *
 *   request ─► validate (commit, config, runtime, blobs, Node.js runtime)
 *           ─► preview: the pure planner (core/plan.ts previewDeploy) on the current cluster:
 *              where the new revision's instances would go, what would stop
 *           ─► dry run? answer the preview; nothing is written
 *           ─► refuse what cannot be placed (before anything is stored: nothing half-placed)
 *           ─► inside the single writer: blobs still present, app not being removed, hosts free,
 *              a retried run's revision reused, fencing (a run never deploys over a newer push),
 *              the replica count's owner (core/replicas.ts), revision + rollout created
 */
import type { RolloutCommand } from '../core/rollout-types.js';
import type { Logger } from 'pino';
import { resolveAppConfig, validateAppConfig, type AppConfig } from '../core/app-config.js';
import { fail } from '../core/errors.js';
import { assertDigest, assertName, isCommitSha } from '../core/names.js';
import { previewDeploy, type DeployPreview } from '../core/plan.js';
import { replicasOnDeploy, type ReplicasDecision } from '../core/replicas.js';
import type { ImageRef, NodeRuntimeRef } from '../core/types.js';
import type { DeployPlanView } from '../api/wire.js';
import type { BlobStore } from '../artifacts/blob-port.js';
import type { AppRecord, RevisionRecord, RolloutRecord, Store } from '../store/store.js';
import type { RunLedger } from '../cd/run-ledger.js';
import { assertBlobsPresent, revisionBlobDigests } from './artifact-gc.js';
import { assertHostsFree } from './host-claims.js';
import type { Reconciler } from './reconciler.js';
import { assertRecordedRuntime } from './runtime-routes.js';
import { assertTargetDeployable, TargetBoard } from './target-routes.js';
import { MAX_SLOT } from '../core/target.js';

export interface DeployDeps {
  readonly store: Store;
  readonly blobs: BlobStore;
  readonly reconciler: Reconciler;
  /** The only writer of runs (a rollback's run). */
  readonly ledger: RunLedger;
  readonly log: Pick<Logger, 'info'>;
  /** Deploy targets' last reports (target-routes.ts): a deploy to a target whose manager is down is refused. */
  readonly targets?: TargetBoard | undefined;
}

/** A deploy request as the route received it (schema-checked). */
export interface DeployRequest {
  readonly artifact?: string | undefined;
  readonly image?: ImageRef | undefined;
  readonly node?: NodeRuntimeRef | undefined;
  readonly commit?: string | undefined;
  readonly dirty?: boolean | undefined;
  readonly config?: unknown;
  readonly runId?: number | undefined;
}

/** What a deploy or rollback would do (dry run): the API's answer (api/wire.ts). */
export type PlanPreview = DeployPlanView;

export interface Deployed {
  readonly revision: RevisionRecord;
  readonly rollout: RolloutRecord;
  readonly reused: boolean;
  readonly notes: readonly string[];
}

/** Validate a deploy request, then either preview it (dryRun) or store its revision and rollout. */
export async function admitDeploy(
  deps: DeployDeps,
  appName: string,
  b: DeployRequest,
  opts: { readonly dryRun: boolean },
): Promise<Deployed | PlanPreview> {
  const { store, blobs, reconciler } = deps;
  const name = assertName(appName);
  // A dry run of `pilot run` plans before anything is built: no artifact yet.
  if (!opts.dryRun && (b.artifact === undefined || b.commit === undefined)) {
    throw fail.deployFieldMissing({ field: b.artifact === undefined ? 'artifact' : 'commit' });
  }
  const digest = b.artifact === undefined ? undefined : assertDigest(b.artifact);
  if (b.commit !== undefined) {
    if (!isCommitSha(b.commit)) throw fail.deployCommitNotSha({ commit: String(b.commit).slice(0, 80) });
  }
  const input = validateAppConfig(b.config ?? {}, 'config');
  if (input.name !== undefined && input.name !== name) {
    throw fail.configNameMismatch({ configName: input.name, app: name });
  }
  const config = resolveAppConfig(input, name);
  if (config.runtime === 'docker') {
    if (!b.image && digest !== undefined) throw fail.dockerDeployNeedsImage();
    if (b.image && !b.image.ref && !b.image.archive) throw fail.imageNeedsRefOrArchive();
    if (b.node) throw fail.nodeOnlyForProcess();
    if (config.release) throw fail.releaseNeedsProcess();
    if (b.image && digest !== (b.image.archive ?? b.image.id)) throw fail.artifactNotImage({ digest });
  } else if (b.image) {
    throw fail.imageOnlyForDocker();
  }
  if (digest !== undefined && (config.runtime === 'process' || b.image?.archive) && !(await blobs.has(digest))) {
    throw fail.artifactMissing({ digest });
  }
  if (b.node && !(await blobs.has(b.node.digest))) {
    throw fail.runtimeArtifactMissing({ version: b.node.version, digest: b.node.digest });
  }
  if (b.node?.npm && !(await blobs.has(b.node.npm.digest))) {
    throw fail.npmArtifactMissing({ npm: b.node.npm.version, digest: b.node.npm.digest, node: b.node.version });
  }
  if (b.node) await assertRecordedRuntime(store, b.node);
  if (config.target !== undefined) {
    // A Swarm target runs images, gives each task its own port, and must be there and answering.
    if (config.runtime !== 'docker') throw fail.targetNeedsDocker({ target: config.target });
    if (config.port !== undefined) throw fail.targetFixedPort({ target: config.target, port: config.port });
    if (config.volumes.length > 0) throw fail.targetVolumes({ target: config.target });
    if (config.replicas > MAX_SLOT) throw fail.targetTooManyReplicas({ target: config.target, replicas: config.replicas });
    await assertTargetDeployable({ store, board: deps.targets ?? new TargetBoard() }, config.target);
  }
  // A fixed port switches without downtime only where every node gives instances their own network namespace.
  const isolated = config.port !== undefined && config.runtime === 'process' && (await reconciler.everyNodeIsolates());
  const notes =
    config.port === undefined
      ? []
      : [
          isolated
            ? `fixed port ${config.port}: each instance gets its own network namespace, so the new revision starts beside the old one (no downtime)`
            : `fixed port ${config.port}: recreate (the old instances stop before the new ones start: a short gap in service). Run the agents as root on Linux, with \`ip\` and \`nsenter\`, for a switch without downtime`,
        ];

  const existing = await store.getApp(name);
  const replicas = replicasOnDeploy(
    existing && { replicas: existing.replicas, source: existing.replicasSource, configReplicas: existing.config.replicas },
    config.replicas,
    config.autoscale ?? null,
  );
  // Refuse what cannot be placed before anything is stored (nothing half-placed). The app's own
  // current instances are left out: the rollout retires them. Instances that wait for their
  // volume's node are not refused (they start when it comes back, or after `pilot volumes forget`).
  // Only apps that ask something of a node are checked (the snapshot reads every instance).
  const constrained =
    config.resources.cpu !== undefined ||
    config.resources.memoryMb !== undefined ||
    Object.keys(config.constraints).length > 0 ||
    config.runtime !== 'process';
  const preview =
    opts.dryRun || constrained
      ? await previewOf(deps, name, config, replicas.replicas, isolated ? undefined : config.port, digest)
      : undefined;
  if (opts.dryRun) {
    const next = ((await store.listRevisions(name))[0]?.number ?? 0) + 1;
    return previewAnswer(deps, name, next, replicas, preview!.preview, notes);
  }
  if (preview?.preview.unplaced && !preview.volumesPinned) {
    const noEngine = config.runtime === 'docker' && !preview.nodes.some((n) => n.schedulable && n.runtimes?.has('docker'));
    throw fail.cannotPlace({ name, reason: preview.preview.unplaced.reason, noEngine });
  }
  const result = await reconciler.serial(async () => {
    // Again inside the single writer, where the artifact GC runs: nothing is deleted from here to the commit.
    await assertBlobsPresent(
      blobs,
      revisionBlobDigests({ artifact: digest!, config, image: b.image, nodeRuntime: b.node }),
      `revision of "${name}"`,
      false,
    );
    const now = Date.now();
    if ((await store.removingApps()).includes(name)) throw fail.appRemoving({ name });
    await assertHostsFree(store, reconciler, name, [`${name}.localhost`, ...config.hosts]);
    const current = await store.getApp(name);
    if (b.runId !== undefined) {
      // A retried run (the server died mid-deploy) must not deploy its commit a second time: the
      // revision its fence already made of this commit is the answer.
      const run = await store.getRun(b.runId);
      const made = run?.app === name && run.fence !== undefined ? await store.revisionOfFence(name, run.fence, b.commit!) : undefined;
      if (made) {
        const rollouts = await store.listRollouts(name, 50);
        const rollout = rollouts.find((r) => r.toRevision === made.number);
        if (rollout) return { revision: made, rollout, reused: true };
      }
    }
    await store.upsertApp(name, config, now);
    // Decided again on the row as it is now (a `pilot scale` may have landed since the preview).
    const owner = replicasOnDeploy(
      current && { replicas: current.replicas, source: current.replicasSource, configReplicas: current.config.replicas },
      config.replicas,
      config.autoscale ?? null,
    );
    if (!current || owner.changed || owner.source !== current.replicasSource) {
      await store.setReplicas(name, owner.replicas, now, owner.source);
      if (current) deps.log.info({ app: name, replicas: owner.replicas, setBy: owner.source }, owner.why);
    }
    if (b.runId !== undefined) {
      // Fencing: a run may not deploy over a revision made by a newer push (a retried or slow run).
      const run = await store.getRun(b.runId);
      if (!run || run.app !== name) throw fail.runOfAppNotFound({ runId: b.runId, name });
      const latest = run.fence === undefined ? undefined : await store.latestDeployedFence(name);
      if (run.fence !== undefined && latest !== undefined && latest > run.fence) {
        throw fail.deploySuperseded({ name, latest, fence: run.fence });
      }
    }
    const revision = await store.createRevision({
      app: name,
      artifact: digest!,
      commit: b.commit!,
      dirty: b.dirty ?? false,
      config,
      runId: b.runId,
      createdAt: now,
      image: b.image,
      nodeRuntime: b.node,
    });
    const previous = await store.activeRollout(name);
    if (previous) await store.finishRollout(previous.id, 'failed', `superseded by revision ${revision.number}`, now);
    const after = await store.getApp(name);
    const rollout = await store.createRollout({
      app: name,
      fromRevision: after?.activeRevision,
      toRevision: revision.number,
      startedAt: now,
      strategy: config.strategy,
    });
    return { revision, rollout, reused: false };
  });
  reconciler.enqueue(name);
  return { ...result, notes };
}

/** Roll an app back to revision `to` (default: the one before the active one), or preview it. */
export async function admitRollback(
  deps: DeployDeps,
  a: AppRecord,
  to: number | undefined,
  opts: { readonly dryRun: boolean },
): Promise<RolloutRecord | PlanPreview> {
  const { store, blobs, reconciler } = deps;
  const revisions = await store.listRevisions(a.name);
  if (to === undefined) {
    const before = revisions.find((r) => a.activeRevision !== undefined && r.number < a.activeRevision);
    if (!before) throw fail.rollbackWithoutPrevious({ name: a.name, activeRevision: a.activeRevision ?? 'none' });
    to = before.number;
  }
  const target = revisions.find((r) => r.number === to);
  if (!target) throw fail.revisionNotFoundForRollback({ name: a.name, to });
  if (target.number === a.activeRevision) throw fail.revisionAlreadyActive({ to });
  // Back to a revision run by a deploy target: the target must still be there and answering.
  if (target.config.target !== undefined)
    await assertTargetDeployable({ store, board: deps.targets ?? new TargetBoard() }, target.config.target);
  if (opts.dryRun) {
    // The rollout plans with the target revision's config and the app's own replica count.
    const c = target.config;
    const isolated = c.port !== undefined && c.runtime === 'process' && (await reconciler.everyNodeIsolates());
    const { preview } = await previewOf(deps, a.name, c, a.replicas, isolated ? undefined : c.port, target.artifact);
    const replicas: ReplicasDecision = {
      replicas: a.replicas,
      source: a.replicasSource,
      changed: false,
      why: `a rollback keeps the replica count (${a.replicas}, set by ${a.replicasSource})`,
    };
    return previewAnswer(deps, a.name, target.number, replicas, preview, []);
  }
  const rollout = await reconciler.serial(async () => {
    await assertBlobsPresent(blobs, revisionBlobDigests(target), `cannot roll "${a.name}" back to revision ${target.number}`, true);
    const now = Date.now();
    const previous = await store.activeRollout(a.name);
    if (previous) await store.finishRollout(previous.id, 'failed', `superseded by rollback to revision ${to}`, now);
    const ro = await store.createRollout({ app: a.name, fromRevision: a.activeRevision, toRevision: target.number, startedAt: now });
    // The audit trail: a rollback is a run too, ended by its rollout (reconciler).
    await deps.ledger.startRollbackRun({ app: a.name, target, rolloutId: ro.id, now });
    return ro;
  });
  reconciler.enqueue(a.name);
  return rollout;
}

/**
 * `pilot promote [--full]` / `pilot abort`: record the command on the running rollout; the planner
 * acts on it at the app's next reconcile (core/rollout.ts). Promote needs a canary (the only
 * strategy with steps); abort stops any rollout's new revision at once.
 */
export async function commandRollout(deps: DeployDeps, app: string, command: RolloutCommand): Promise<RolloutRecord> {
  const { store, reconciler } = deps;
  const rollout = await reconciler.serial(async () => {
    const a = await store.getApp(app);
    if (!a) throw fail.appNotFound({ app });
    const r = await store.activeRollout(app);
    const verb = command === 'abort' ? 'abort' : 'promote';
    if (!r) throw fail.noRolloutToCommand({ app, verb });
    const strategy = r.strategy?.type ?? 'blue-green';
    if (command !== 'abort' && strategy !== 'canary') throw fail.rolloutHasNoSteps({ app, revision: r.toRevision, strategy });
    if (!(await store.setRolloutCommand(r.id, command, Date.now()))) throw fail.rolloutJustEnded({ app, revision: r.toRevision });
    return (await store.getRollout(r.id))!;
  });
  reconciler.enqueue(app);
  return rollout;
}

/** The planner's preview of a rollout of `config` for the app, on the cluster as it is now. Reads only. */
async function previewOf(
  deps: DeployDeps,
  name: string,
  config: AppConfig,
  replicas: number,
  fixedPort: number | undefined,
  artifact: string | undefined,
) {
  const { store, reconciler } = deps;
  const nodes = await reconciler.schedulerSnapshot();
  const volumes = await reconciler.volumeRequest(
    name,
    config.volumes.map((v) => v.name),
    nodes,
  );
  const instances = (await store.listInstances({ app: name })).map((i) => ({
    ...i,
    drainingForMs: undefined,
    inflight: 0,
    nodeDown: reconciler.nodeStatus(i.nodeId) === 'down',
    nodeDraining: false,
  }));
  const preview: DeployPreview = previewDeploy({
    app: { name, replicas, activeRevision: undefined },
    toRevision: 0,
    instances,
    fixedPort,
    nodes,
    placement: {
      cpu: config.resources.cpu,
      memoryMb: config.resources.memoryMb,
      constraints: config.constraints,
      artifact,
      runtime: config.runtime,
      volumes,
    },
    drainMs: config.deploy.drainMs,
    maxDrainMs: 0,
    crashLoopRestarts: 0,
  });
  return { preview, nodes, volumesPinned: volumes?.node !== undefined };
}

async function previewAnswer(
  deps: DeployDeps,
  app: string,
  revision: number,
  replicas: ReplicasDecision,
  p: DeployPreview,
  notes: readonly string[],
): Promise<PlanPreview> {
  const names = new Map((await deps.store.listNodes()).map((n) => [n.id, n.name]));
  return {
    dryRun: true,
    app,
    revision,
    replicas,
    placements: p.placements.map((x) => ({ node: x.node, nodeId: x.nodeId })),
    unplaced: p.unplaced ?? null,
    stops: p.stops.map((s) => ({ id: s.id, revision: s.revision, node: names.get(s.nodeId) ?? s.nodeId })),
    recreate: p.recreate,
    notes,
  };
}
