/** REST API for apps: deploy a revision, status, rollback, scale, logs. */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { fail } from '../core/errors.js';
import { assertName } from '../core/names.js';
import type { AppRecord, Store } from '../store/store.js';
import type { BlobStore } from '../artifacts/blob-port.js';
import { volumeViews } from './volume-routes.js';
import type { Reconciler } from './reconciler.js';
import type { SecretBox } from '../store/secret-box.js';
import { registerLogRoutes } from './log-routes.js';
import { instanceView } from '../core/instance-view.js';
import { rolloutView } from '../core/strategy.js';
import { admitDeploy, admitRollback, commandRollout } from './deploy.js';
import type { TargetBoard } from './target-routes.js';
import type { RunLedger } from '../cd/run-ledger.js';
import { experimentView } from './experiments.js';
import { describeTarget, MAX_REPLICAS } from '../core/autoscale-config.js';
import type { Autoscaler } from './autoscaler.js';

export interface AppRouteDeps {
  store: Store;
  box: SecretBox;
  blobs: BlobStore;
  reconciler: Reconciler;
  /** The only writer of runs (a rollback's run). */
  ledger: RunLedger;
  /** Autoscaled apps' figures and last decision, for the app's status (control/autoscaler.ts). */
  autoscaler?: Pick<Autoscaler, 'status'>;
  /** Deploy targets' last reports (a deploy to a target whose manager is down is refused). */
  targets?: TargetBoard;
}

const Digest = Type.String({ pattern: '^sha256:[a-f0-9]{64}$' });
/** `?dryRun=true`: plan only, write nothing. */
const DryRunQuery = Type.Object({ dryRun: Type.Optional(Type.Boolean()) });
const DeployBody = Type.Object(
  {
    artifact: Type.String(),
    /** runtime docker: the image (see ImageRef). */
    image: Type.Optional(
      Type.Object(
        {
          id: Digest,
          ref: Type.Optional(
            Type.String({ maxLength: 512, pattern: '^[a-z0-9][a-z0-9.-]*(:[0-9]{1,5})?/[a-z0-9][a-z0-9._/-]*@sha256:[a-f0-9]{64}$' }),
          ),
          archive: Type.Optional(Digest),
        },
        { additionalProperties: false },
      ),
    ),
    /** runtime process: the exact Node.js runtime (a blob in the artifact repository). */
    node: Type.Optional(
      Type.Object(
        {
          version: Type.String({ pattern: '^[0-9]+\\.[0-9]+\\.[0-9]+$' }),
          digest: Digest,
          source: Type.String({ maxLength: 200 }),
          npm: Type.Optional(
            Type.Object(
              {
                version: Type.String({ pattern: '^[0-9]+\\.[0-9]+\\.[0-9]+$' }),
                digest: Digest,
              },
              { additionalProperties: false },
            ),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    commit: Type.String(),
    dirty: Type.Optional(Type.Boolean()),
    config: Type.Optional(Type.Unknown()),
    runId: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { additionalProperties: false },
);

/** A dry run's body: the deploy's, where `artifact` and `commit` may be left out (`pilot run --dry-run` plans before building). */
const PlanBody = Type.Object(
  { ...DeployBody.properties, artifact: Type.Optional(Type.String()), commit: Type.Optional(Type.String()) },
  { additionalProperties: false },
);
const checkPlanBody = TypeCompiler.Compile(PlanBody);

/**
 * The deploy route validates its body against `DeployBody` (what the OpenAPI document shows), with
 * the failure attached rather than answered: a dry run that only lacks `artifact` or `commit` is
 * checked against `PlanBody` instead; any other failure is answered as every route answers it.
 */
function deployRequest(req: FastifyRequest<{ Body: Static<typeof PlanBody>; Querystring: Static<typeof DryRunQuery> }>): {
  body: Static<typeof PlanBody>;
  dryRun: boolean;
} {
  const err = req.validationError as
    (Error & { validation?: { keyword?: string; params?: { missingProperty?: string } }[]; validationContext?: string }) | undefined;
  if (!err) return { body: req.body, dryRun: req.query.dryRun === true };
  // Fastify stops at the first failing part (body before querystring): the query is still raw here.
  const dryRun = String((req.query as Record<string, unknown>).dryRun) === 'true';
  const onlyMissing =
    err.validationContext === 'body' &&
    (err.validation ?? []).every((v) => v.keyword === 'required' && ['artifact', 'commit'].includes(v.params?.missingProperty ?? ''));
  if (!dryRun || !onlyMissing) throw err;
  if (!checkPlanBody.Check(req.body)) {
    const first = [...checkPlanBody.Errors(req.body)][0];
    throw fail.invalidRequestBody({ path: first?.path ?? '', message: first?.message ?? 'is not a deploy request' });
  }
  return { body: req.body, dryRun };
}

async function mustGetApp(store: Store, name: string): Promise<AppRecord> {
  assertName(name);
  const app = await store.getApp(name);
  if (!app) throw fail.appNotFound({ app: name });
  return app;
}

export function registerAppRoutes(app: FastifyInstance, deps: AppRouteDeps): void {
  const { store, reconciler } = deps;

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
          autoscale: a.config.autoscale ? { min: a.config.autoscale.min, max: a.config.autoscale.max } : null,
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
      app: {
        name: a.name,
        activeRevision: a.activeRevision ?? null,
        replicas: a.replicas,
        replicasSetBy: a.replicasSource,
        // Autoscaled apps: bounds, target, the metric now, the last decision and why (null otherwise).
        autoscale: deps.autoscaler?.status(a) ?? null,
        hosts: [`${a.name}.localhost`, ...a.config.hosts],
        createdAt: a.createdAt,
        updatedAt: a.updatedAt,
      },
      revisions: revisions.map((r) => ({
        number: r.number,
        artifact: r.artifact,
        commit: r.commit,
        dirty: r.dirty,
        runId: r.runId ?? null,
        createdAt: r.createdAt,
        active: r.number === a.activeRevision,
        runtime: r.config.runtime,
        image: r.image ?? null,
        node: r.nodeRuntime ?? null,
      })),
      rollouts,
      // The running rollout as a person reads it: strategy, step, weights, what it waits for, the last verdict.
      rollout:
        rollouts[0]?.status === 'running'
          ? { id: rollouts[0].id, toRevision: rollouts[0].toRevision, ...rolloutView(rollouts[0], Date.now()) }
          : null,
      // state: what is known of the instance (instanceView); reported: the agent's last word.
      instances: instances.map((i) => ({
        ...i,
        reported: i.state,
        state: instanceView(i, nodes.has(i.nodeId) ? reconciler.nodeStatus(i.nodeId) : undefined),
        node: nodes.get(i.nodeId)?.name ?? i.nodeId,
        address: i.address ?? nodes.get(i.nodeId)?.address,
      })),
      routing: { problems: reconciler.routeProblems(a.name) },
      orphans: reconciler.orphans().filter((o) => o.app === a.name),
      volumes: await volumeViews(store, reconciler, a.name),
      // Instances the scheduler could not place in its last pass, and why (e.g. the volume's node is down).
      pending: reconciler.pendingOf(a.name) ?? null,
      // A running A/B experiment (control/experiments.ts), or null.
      experiment: await store.activeExperiment(a.name).then((e) => (e ? experimentView(e) : null)),
    };
  });

  // Deploy a revision; `?dryRun=true` answers what would be placed where and what would stop, and writes nothing.
  app.post<{ Params: { app: string }; Body: Static<typeof PlanBody>; Querystring: Static<typeof DryRunQuery> }>(
    '/api/v1/apps/:app/revisions',
    { schema: { body: DeployBody, querystring: DryRunQuery }, attachValidation: true },
    async (req, reply) => {
      const { body, dryRun } = deployRequest(req);
      const result = await admitDeploy({ ...deps, log: req.log }, req.params.app, body, { dryRun });
      if ('dryRun' in result) return result;
      void reply.status(result.reused ? 200 : 201);
      const r = result.revision;
      return {
        revision: {
          number: r.number,
          artifact: r.artifact,
          commit: r.commit,
          dirty: r.dirty,
          image: r.image ?? null,
          node: r.nodeRuntime ?? null,
        },
        rollout: result.rollout,
        notes: result.notes,
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
      if (!a) throw fail.appNotFound({ app: name });
      const instances = (await store.listInstances({ app: name })).length;
      await store.removeApp(name, Date.now());
      await reconciler.publishRoutes();
      return { instances };
    });
    reconciler.enqueue(name);
    return { app: name, removed: true, stopping: removed.instances };
  });

  app.get<{ Params: { app: string; id: string } }>('/api/v1/apps/:app/rollouts/:id', async (req) => {
    const a = await mustGetApp(store, req.params.app);
    const id = Number(req.params.id);
    const rollout = Number.isInteger(id) ? await store.getRollout(id) : undefined;
    if (!rollout || rollout.app !== a.name) throw fail.rolloutAppNotFound({ id: req.params.id, name: a.name });
    const instances = (await store.listInstances({ app: a.name })).filter((i) => i.revision === rollout.toRevision);
    return { rollout, activeRevision: a.activeRevision ?? null, instances };
  });

  app.post<{ Params: { app: string }; Body: { to?: number } | undefined; Querystring: Static<typeof DryRunQuery> }>(
    '/api/v1/apps/:app/rollback',
    {
      schema: {
        body: Type.Optional(Type.Object({ to: Type.Optional(Type.Integer({ minimum: 1 })) }, { additionalProperties: false })),
        querystring: DryRunQuery,
      },
    },
    async (req, reply) => {
      const a = await mustGetApp(store, req.params.app);
      const result = await admitRollback({ ...deps, log: req.log }, a, req.body?.to, { dryRun: req.query.dryRun === true });
      if ('dryRun' in result) return result;
      void reply.status(201);
      return { rollout: result };
    },
  );

  // A canary's next step now (or straight to 100 with full: true); abort: the new revision stopped, stable keeps serving.
  app.post<{ Params: { app: string }; Body: { full?: boolean } | undefined }>(
    '/api/v1/apps/:app/promote',
    { schema: { body: Type.Optional(Type.Object({ full: Type.Optional(Type.Boolean()) }, { additionalProperties: false })) } },
    async (req) => {
      assertName(req.params.app);
      return {
        rollout: await commandRollout({ ...deps, log: req.log }, req.params.app, req.body?.full === true ? 'promote-full' : 'promote'),
      };
    },
  );
  app.post<{ Params: { app: string } }>('/api/v1/apps/:app/abort', async (req) => {
    assertName(req.params.app);
    return { rollout: await commandRollout({ ...deps, log: req.log }, req.params.app, 'abort') };
  });

  app.post<{ Params: { app: string }; Body: { replicas: unknown } }>('/api/v1/apps/:app/scale', async (req) => {
    const a = await mustGetApp(store, req.params.app);
    const n = (req.body as { replicas?: unknown } | undefined)?.replicas;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_REPLICAS) {
      throw fail.replicasMustWholeNumber({ maxReplicas: MAX_REPLICAS, n });
    }
    // Volumes keep every replica on one node; a fixed port allows one instance per node.
    if (n > 1 && a.config.volumes.length > 0 && a.config.port !== undefined) {
      throw fail.volumesPinReplicas({ name: a.name, port: a.config.port, n });
    }
    // An autoscaled app's count has one owner, the autoscaler: a manual count would be undone at
    // its next tick (or fight it), so it is refused; its bounds come from pilot.yaml.
    const auto = a.config.autoscale;
    if (auto) {
      throw fail.appAutoscaled({ app: a.name, min: auto.min, max: auto.max, target: describeTarget(auto.target), replicas: a.replicas });
    }
    await reconciler.serial(() => store.setReplicas(a.name, n, Date.now(), 'scale'));
    reconciler.enqueue(a.name);
    return { app: a.name, replicas: n };
  });

  registerLogRoutes(app, deps);
}
