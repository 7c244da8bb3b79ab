/** REST API for apps: deploy a revision, status, rollback, scale, logs. */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { resolveAppConfig, validateAppConfig } from '../core/app-config.js';
import { PilotError } from '../core/errors.js';
import { assertDigest, assertName, isCommitSha } from '../core/names.js';
import type { AppRecord, Store } from '../store/store.js';
import type { FsBlobStore } from '../artifacts/blob-store.js';
import { volumeViews } from './volume-routes.js';
import type { Reconciler } from './reconciler.js';
import { schedule } from '../core/scheduler.js';
import type { SecretBox } from '../store/secret-box.js';
import { registerLogRoutes } from './log-routes.js';
import { assertRecordedRuntime } from './runtime-routes.js';
import { assertBlobsPresent, revisionBlobDigests } from './artifact-gc.js';
import { assertHostsFree } from './host-claims.js';
import { instanceView } from '../core/instance-view.js';

export interface AppRouteDeps {
  store: Store;
  box: SecretBox;
  blobs: FsBlobStore;
  reconciler: Reconciler;
}

const Digest = Type.String({ pattern: '^sha256:[a-f0-9]{64}$' });
const DeployBody = Type.Object({
  artifact: Type.String(),
  /** runtime docker: the image (see ImageRef). */
  image: Type.Optional(Type.Object({
    id: Digest,
    ref: Type.Optional(Type.String({ maxLength: 512, pattern: '^[a-z0-9][a-z0-9.-]*(:[0-9]{1,5})?/[a-z0-9][a-z0-9._/-]*@sha256:[a-f0-9]{64}$' })),
    archive: Type.Optional(Digest),
  }, { additionalProperties: false })),
  /** runtime process: the exact Node.js runtime (a blob in the artifact repository). */
  node: Type.Optional(Type.Object({
    version: Type.String({ pattern: '^[0-9]+\\.[0-9]+\\.[0-9]+$' }),
    digest: Digest,
    source: Type.String({ maxLength: 200 }),
    npm: Type.Optional(Type.Object({
      version: Type.String({ pattern: '^[0-9]+\\.[0-9]+\\.[0-9]+$' }),
      digest: Digest,
    }, { additionalProperties: false })),
  }, { additionalProperties: false })),
  commit: Type.String(),
  dirty: Type.Optional(Type.Boolean()),
  config: Type.Optional(Type.Unknown()),
  runId: Type.Optional(Type.Integer({ minimum: 1 })),
}, { additionalProperties: false });

const MAX_REPLICAS = 100;

async function mustGetApp(store: Store, name: string): Promise<AppRecord> {
  assertName(name);
  const app = await store.getApp(name);
  if (!app) throw new PilotError('app_not_found', `app "${name}" not found`);
  return app;
}

export function registerAppRoutes(app: FastifyInstance, deps: AppRouteDeps): void {
  const { store, blobs, reconciler } = deps;

  app.get('/api/v1/apps', async () => {
    const apps = await store.listApps();
    const instances = await store.listInstances();
    return {
      apps: apps.map((a) => {
        const mine = instances.filter((i) => i.app === a.name && i.desired === 'run');
        return {
          name: a.name,
          activeRevision: a.activeRevision ?? null,
          replicas: a.replicas,
          ready: mine.filter((i) => instanceView(i, reconciler.nodeStatus(i.nodeId)) === 'ready' && i.revision === a.activeRevision).length,
          instances: mine.length,
          url: `http://${a.name}.localhost`,
          updatedAt: a.updatedAt,
        };
      }),
    };
  });

  app.get<{ Params: { app: string } }>('/api/v1/apps/:app', async (req) => {
    const a = await mustGetApp(store, req.params.app);
    const revisions = (await store.listRevisions(a.name)).slice(0, 20);
    const rollouts = await store.listRollouts(a.name, 10);
    const instances = await store.listInstances({ app: a.name });
    const nodes = new Map((await store.listNodes()).map((n) => [n.id, n]));
    return {
      app: { name: a.name, activeRevision: a.activeRevision ?? null, replicas: a.replicas, hosts: [`${a.name}.localhost`, ...a.config.hosts], createdAt: a.createdAt, updatedAt: a.updatedAt },
      revisions: revisions.map((r) => ({
        number: r.number, artifact: r.artifact, commit: r.commit, dirty: r.dirty, runId: r.runId ?? null, createdAt: r.createdAt, active: r.number === a.activeRevision,
        runtime: r.config.runtime, image: r.image ?? null, node: r.nodeRuntime ?? null,
      })),
      rollouts,
      // state: what is known of the instance (instanceView); reported: the agent's last word.
      instances: instances.map((i) => ({
        ...i, reported: i.state, state: instanceView(i, nodes.has(i.nodeId) ? reconciler.nodeStatus(i.nodeId) : undefined),
        node: nodes.get(i.nodeId)?.name ?? i.nodeId, address: i.address ?? nodes.get(i.nodeId)?.address,
      })),
      routing: { problems: reconciler.routeProblems(a.name) },
      orphans: reconciler.orphans().filter((o) => o.app === a.name),
      volumes: await volumeViews(store, reconciler, a.name),
      // Instances the scheduler could not place in its last pass, and why (e.g. the volume's node is down).
      pending: reconciler.pendingOf(a.name) ?? null,
    };
  });

  app.post<{ Params: { app: string }; Body: Static<typeof DeployBody> }>(
    '/api/v1/apps/:app/revisions',
    { schema: { body: DeployBody } },
    async (req, reply) => {
      const name = assertName(req.params.app);
      const b = req.body;
      const digest = assertDigest(b.artifact);
      if (!isCommitSha(b.commit)) throw new PilotError('bad_request', `commit must be a full 40-character SHA (got ${JSON.stringify(String(b.commit).slice(0, 80))})`);
      const input = validateAppConfig(b.config ?? {}, 'config');
      if (input.name !== undefined && input.name !== name) {
        throw new PilotError('invalid_config', `config name "${input.name}" does not match the app "${name}" in the URL`);
      }
      const config = resolveAppConfig(input, name);
      if (config.runtime === 'docker') {
        if (!b.image) throw new PilotError('bad_request', 'runtime docker needs `image` ({ id, ref or archive }) in the deploy request');
        if (!b.image.ref && !b.image.archive) throw new PilotError('bad_request', 'image needs `ref` (pushed to a registry) or `archive` (an image tarball in the artifact repository)');
        if (b.node) throw new PilotError('bad_request', '`node` applies to runtime process only; a container gets Node.js from its image');
        if (config.release) throw new PilotError('invalid_config', 'release: a release phase needs runtime: process for now', { hint: 'Run migrations from the image\'s entrypoint, or remove `release` (pilot.yaml) / the Procfile `release:` line.' });
        if (digest !== (b.image.archive ?? b.image.id)) throw new PilotError('bad_request', `artifact must be the image archive's digest, or the image id when pushed to a registry (got ${digest})`);
      } else if (b.image) {
        throw new PilotError('bad_request', '`image` applies to runtime docker only (set `runtime: docker` in pilot.yaml)');
      }
      if ((config.runtime === 'process' || b.image?.archive) && !(await blobs.has(digest))) {
        throw new PilotError('artifact_not_found', `artifact ${digest} is not in the artifact repository`);
      }
      if (b.node && !(await blobs.has(b.node.digest))) {
        throw new PilotError('artifact_not_found', `Node.js runtime ${b.node.version} (${b.node.digest}) is not in the artifact repository`);
      }
      if (b.node?.npm && !(await blobs.has(b.node.npm.digest))) {
        throw new PilotError('artifact_not_found', `npm ${b.node.npm.version} (${b.node.npm.digest}), paired with Node.js ${b.node.version}, is not in the artifact repository`);
      }
      if (b.node) await assertRecordedRuntime(store, b.node);
      // A fixed port switches without downtime only where every node gives instances their own network namespace.
      const isolated = config.port !== undefined && config.runtime === 'process' && await reconciler.everyNodeIsolates();
      const notes = config.port === undefined ? [] : [isolated
        ? `fixed port ${config.port}: each instance gets its own network namespace, so the new revision starts beside the old one (no downtime)`
        : `fixed port ${config.port}: recreate (the old instances stop before the new ones start: a short gap in service). Run the agents as root on Linux, with \`ip\` and \`nsenter\`, for a switch without downtime`];
      // Refuse what cannot be placed before anything is stored (nothing half-placed). The app's own
      // current instances are left out: the rollout retires them.
      if (config.resources.cpu !== undefined || config.resources.memoryMb !== undefined || Object.keys(config.constraints).length > 0 || config.runtime !== 'process') {
        const snapshot = (await reconciler.schedulerSnapshot()).map((n) => ({ ...n, instances: n.instances.filter((i) => i.app !== name) }));
        const fit = schedule(snapshot, {
          app: name, count: config.replicas, fixedPort: isolated ? undefined : config.port, cpu: config.resources.cpu, memoryMb: config.resources.memoryMb, constraints: config.constraints,
          runtime: config.runtime,
        });
        if (fit.unplaced > 0) {
          const noEngine = config.runtime === 'docker' && !snapshot.some((n) => n.schedulable && n.runtimes?.has('docker'));
          throw new PilotError('unschedulable', `app "${name}" cannot be placed: ${fit.reason ?? 'no room'}`, noEngine
            ? { hint: 'Start the Docker engine on a node (`dockerd`, or `systemctl start docker`); its agent reports it within 10 s. `pilot nodes --json` shows each node\'s engine and its error.' }
            : {});
        }
      }
      const result = await reconciler.serial(async () => {
        // Again inside the single writer, where the artifact GC runs: nothing is deleted from here to the commit.
        await assertBlobsPresent(blobs, revisionBlobDigests({ artifact: digest, config, image: b.image, nodeRuntime: b.node }), `revision of "${name}"`, false);
        const now = Date.now();
        if ((await store.removingApps()).includes(name)) throw new PilotError('app_removing', `app "${name}" is being removed; its instances are still stopping`);
        await assertHostsFree(store, reconciler, name, [`${name}.localhost`, ...config.hosts]);
        const existing = await store.getApp(name);
        if (b.runId !== undefined) {
          // A retried run (the server died mid-deploy) must not deploy its commit a second time: the
          // revision its fence already made of this commit is the answer.
          const run = await store.getRun(b.runId);
          const made = run?.app === name && run.fence !== undefined ? await store.revisionOfFence(name, run.fence, b.commit) : undefined;
          if (made) {
            const rollouts = await store.listRollouts(name, 50);
            const rollout = rollouts.find((r) => r.toRevision === made.number);
            if (rollout) return { revision: made, rollout, reused: true };
          }
        }
        await store.upsertApp(name, config, now);
        if (!existing) await store.setReplicas(name, config.replicas, now);
        else if (existing.config.replicas !== config.replicas) await store.setReplicas(name, config.replicas, now);
        if (b.runId !== undefined) {
          // Fencing: a run may not deploy over a revision made by a newer push (a retried or slow run).
          const run = await store.getRun(b.runId);
          if (!run || run.app !== name) throw new PilotError('run_not_found', `run ${b.runId} of app "${name}" not found`);
          const latest = run.fence === undefined ? undefined : await store.latestDeployedFence(name);
          if (run.fence !== undefined && latest !== undefined && latest > run.fence) {
            throw new PilotError('superseded', `deploy skipped: a newer push of "${name}" is already deployed (fence ${latest} > ${run.fence})`);
          }
        }
        const revision = await store.createRevision({
          app: name, artifact: digest, commit: b.commit, dirty: b.dirty ?? false, config, runId: b.runId, createdAt: now, image: b.image, nodeRuntime: b.node,
        });
        const previous = await store.activeRollout(name);
        if (previous) await store.finishRollout(previous.id, 'failed', `superseded by revision ${revision.number}`, now);
        const current = await store.getApp(name);
        const rollout = await store.createRollout({ app: name, fromRevision: current?.activeRevision, toRevision: revision.number, startedAt: now });
        return { revision, rollout, reused: false };
      });
      reconciler.enqueue(name);
      void reply.status(result.reused ? 200 : 201);
      return {
        revision: { number: result.revision.number, artifact: result.revision.artifact, commit: b.commit, dirty: result.revision.dirty, image: result.revision.image ?? null, node: result.revision.nodeRuntime ?? null },
        rollout: result.rollout,
        notes,
        reused: result.reused,
      };
    },
  );

  // Remove an app: stop its instances, drop its routes (the next table has no entry for it), release
  // its hosts, cancel its queued runs, forget its secrets and webhook source. Its rows go once its
  // last instance has stopped (reconciler); its artifacts stay until `pilot gc` collects them.
  app.delete<{ Params: { app: string } }>('/api/v1/apps/:app', async (req) => {
    const name = assertName(req.params.app);
    const removed = await reconciler.serial(async () => {
      const a = await store.getApp(name);
      if (!a) throw new PilotError('app_not_found', `app "${name}" not found`);
      const instances = (await store.listInstances({ app: name })).length;
      await store.removeApp(name, Date.now());
      await reconciler.publishRoutes();
      return { instances };
    });
    reconciler.wake();
    reconciler.enqueue(name);
    return { app: name, removed: true, stopping: removed.instances };
  });

  app.get<{ Params: { app: string; id: string } }>('/api/v1/apps/:app/rollouts/:id', async (req) => {
    const a = await mustGetApp(store, req.params.app);
    const id = Number(req.params.id);
    const rollout = Number.isInteger(id) ? await store.getRollout(id) : undefined;
    if (!rollout || rollout.app !== a.name) throw new PilotError('not_found', `rollout ${req.params.id} of app "${a.name}" not found`);
    const instances = (await store.listInstances({ app: a.name })).filter((i) => i.revision === rollout.toRevision);
    return { rollout, activeRevision: a.activeRevision ?? null, instances };
  });

  app.post<{ Params: { app: string }; Body: { to?: number } | undefined }>(
    '/api/v1/apps/:app/rollback',
    { schema: { body: Type.Optional(Type.Object({ to: Type.Optional(Type.Integer({ minimum: 1 })) }, { additionalProperties: false })) } },
    async (req, reply) => {
      const a = await mustGetApp(store, req.params.app);
      const revisions = await store.listRevisions(a.name);
      let to = req.body?.to;
      if (to === undefined) {
        const before = revisions.find((r) => a.activeRevision !== undefined && r.number < a.activeRevision);
        if (!before) throw new PilotError('revision_not_found', `app "${a.name}" has no revision before ${a.activeRevision ?? 'none'} to roll back to`);
        to = before.number;
      }
      const target = revisions.find((r) => r.number === to);
      if (!target) throw new PilotError('revision_not_found', `app "${a.name}" has no revision ${to}`);
      if (target.number === a.activeRevision) throw new PilotError('conflict', `revision ${to} is already active`);
      const rollout = await reconciler.serial(async () => {
        await assertBlobsPresent(blobs, revisionBlobDigests(target), `cannot roll "${a.name}" back to revision ${target.number}`, true);
        const now = Date.now();
        const previous = await store.activeRollout(a.name);
        if (previous) await store.finishRollout(previous.id, 'failed', `superseded by rollback to revision ${to}`, now);
        const ro = await store.createRollout({ app: a.name, fromRevision: a.activeRevision, toRevision: target.number, startedAt: now });
        // The audit trail: a rollback is a run too, ended by its rollout (reconciler).
        const run = await store.createRun({ app: a.name, trigger: 'rollback', commit: target.commit, dirty: target.dirty, steps: [{ name: 'deploy', status: 'running', startedAt: now }], now });
        await store.updateRun(run.id, { revision: target.number, artifact: target.artifact, rolloutId: ro.id });
        return ro;
      });
      reconciler.enqueue(a.name);
      void reply.status(201);
      return { rollout };
    },
  );

  app.post<{ Params: { app: string }; Body: { replicas: unknown } }>('/api/v1/apps/:app/scale', async (req) => {
    const a = await mustGetApp(store, req.params.app);
    const n = (req.body as { replicas?: unknown } | undefined)?.replicas;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_REPLICAS) {
      throw new PilotError('bad_request', `replicas must be a whole number from 0 to ${MAX_REPLICAS} (got ${JSON.stringify(n)})`);
    }
    // Volumes keep every replica on one node; a fixed port allows one instance per node.
    if (n > 1 && a.config.volumes.length > 0 && a.config.port !== undefined) {
      throw new PilotError('invalid_config', `app "${a.name}" has volumes, so all its replicas run on the volume's node, and a fixed port (${a.config.port}) allows one instance per node: ${n} replicas cannot be placed`, {
        hint: 'Remove `port:` from pilot.yaml (instances then get $PORT) and deploy, then scale.',
      });
    }
    await reconciler.serial(() => store.setReplicas(a.name, n, Date.now()));
    reconciler.enqueue(a.name);
    return { app: a.name, replicas: n };
  });

  registerLogRoutes(app, deps);
}
