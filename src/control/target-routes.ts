/**
 * Deploy targets (`pilot targets add|list|remove`): Docker Swarm managers that run the apps whose
 * pilot.yaml says `target: NAME`. The control plane keeps the list (store `targets`) and what each
 * target's bridge (src/swarm/bridge.ts) last reported; the bridge itself is an agent whose runtime
 * is Swarm: it registers the node `swarm-<name>` and syncs like any agent.
 *
 *   POST /api/v1/targets {name, docker, ports?} ─► engine answers? is a Swarm manager? ─► stored
 *   GET  /api/v1/targets                        ─► targets, their node, apps and last status
 *   PUT  /api/v1/targets/:name/status           ◄── the bridge, after each look at the Swarm
 *   DELETE /api/v1/targets/:name                ─► refused while an app runs there
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { TargetStatus, TargetView } from '../api/wire.js';
import { fail } from '../core/errors.js';
import { DEFAULT_TARGET_PORTS, parseDockerUrl, parsePortRange, type DockerEndpoint } from '../core/target.js';
import { Agent, request } from '../http/undici.js';
import type { Store, TargetRecord } from '../store/store.js';
import type { Reconciler } from './reconciler.js';

const AddBody = Type.Object(
  {
    name: Type.String({ pattern: '^[a-z][a-z0-9-]{0,55}$' }),
    docker: Type.String({ minLength: 1, maxLength: 4096 }),
    ports: Type.Optional(Type.String({ maxLength: 20 })),
  },
  { additionalProperties: false },
);

const Status = Type.Object(
  {
    at: Type.Number(),
    ok: Type.Boolean(),
    error: Type.Optional(Type.String({ maxLength: 2000 })),
    nodes: Type.Array(Type.Object({}, { additionalProperties: true }), { maxItems: 1000 }),
    tasks: Type.Array(Type.Object({}, { additionalProperties: true }), { maxItems: 20_000 }),
  },
  { additionalProperties: false },
);

/** The Pilot node a target's bridge registers. */
export function targetNodeName(target: string): string {
  return `swarm-${target}`;
}

/** What a Docker Engine says of its Swarm: whether it answers, and its local node's swarm state. */
export async function probeSwarm(ep: DockerEndpoint, timeoutMs = 3000): Promise<{ state: string; manager: boolean }> {
  const dispatcher = 'socketPath' in ep ? new Agent({ connect: { socketPath: ep.socketPath } }) : undefined;
  const origin = 'socketPath' in ep ? 'http://docker' : `http://${ep.host.includes(':') ? `[${ep.host}]` : ep.host}:${ep.port}`;
  try {
    const res = await request(`${origin}/info`, {
      ...(dispatcher ? { dispatcher } : {}),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = (await res.body.json()) as { Swarm?: { LocalNodeState?: string; ControlAvailable?: boolean } };
    if (res.statusCode !== 200) throw new Error(`GET /info answered ${res.statusCode}`);
    return { state: body.Swarm?.LocalNodeState ?? '', manager: body.Swarm?.ControlAvailable === true };
  } finally {
    await dispatcher?.close();
  }
}

/** The last status each target's bridge reported (memory: a restarted control plane hears again within seconds). */
export class TargetBoard {
  private readonly statuses = new Map<string, TargetStatus>();
  report(name: string, s: TargetStatus): void {
    this.statuses.set(name, s);
  }
  status(name: string): TargetStatus | undefined {
    return this.statuses.get(name);
  }
  forget(name: string): void {
    this.statuses.delete(name);
  }
}

/** Apps whose active revision or running rollout names the target. */
async function appsOn(store: Store, target: string): Promise<string[]> {
  const out: string[] = [];
  for (const a of await store.listApps()) {
    const r = await store.activeRollout(a.name);
    const revs = [a.activeRevision, r?.toRevision].filter((n): n is number => n !== undefined);
    for (const n of revs) {
      if ((await store.getRevision(a.name, n))?.config.target === target) {
        out.push(a.name);
        break;
      }
    }
  }
  return out;
}

export interface TargetRouteDeps {
  readonly store: Store;
  readonly reconciler: Reconciler;
  readonly board: TargetBoard;
  /** How a target's engine is asked whether it is a Swarm manager (tests give another). */
  readonly probe?: typeof probeSwarm;
}

/** Refuse a deploy to a target that does not exist, or whose bridge last found its manager down. */
export async function assertTargetDeployable(deps: Pick<TargetRouteDeps, 'store' | 'board'>, target: string): Promise<void> {
  const t = (await deps.store.listTargets()).find((x) => x.name === target);
  if (!t) throw fail.targetUnknown({ target });
  const s = deps.board.status(target);
  if (s && !s.ok) throw fail.targetNotReady({ target, why: s.error ?? 'its Swarm manager does not answer' });
}

export function registerTargetRoutes(app: FastifyInstance, deps: TargetRouteDeps): void {
  const { store, reconciler, board } = deps;
  const probe = deps.probe ?? probeSwarm;

  const view = async (t: TargetRecord): Promise<TargetView> => {
    const node = (await store.listNodes()).find((n) => n.name === targetNodeName(t.name));
    return {
      name: t.name,
      kind: t.kind,
      docker: t.docker,
      ports: t.ports,
      createdAt: t.createdAt,
      node: node ? { name: node.name, status: reconciler.nodeStatus(node.id) } : null,
      apps: await appsOn(store, t.name),
      status: board.status(t.name) ?? null,
    };
  };

  app.get('/api/v1/targets', async () => ({ targets: await Promise.all((await store.listTargets()).map(view)) }));

  app.get<{ Params: { name: string } }>('/api/v1/targets/:name', async (req) => {
    const t = (await store.listTargets()).find((x) => x.name === req.params.name);
    if (!t) throw fail.targetUnknown({ target: req.params.name });
    return view(t);
  });

  app.post<{ Body: Static<typeof AddBody> }>('/api/v1/targets', { schema: { body: AddBody } }, async (req, reply) => {
    const b = req.body;
    const ep = parseDockerUrl(b.docker);
    const ports = b.ports === undefined ? DEFAULT_TARGET_PORTS : parsePortRange(b.ports);
    const existing = (await store.listTargets()).find((x) => x.name === b.name);
    if (existing) throw fail.targetExists({ target: b.name, docker: existing.docker });
    let swarm: { state: string; manager: boolean };
    try {
      swarm = await probe(ep);
    } catch (err) {
      throw fail.targetUnreachable({ target: b.name, docker: b.docker, error: (err as Error).message });
    }
    if (swarm.state !== 'active' || !swarm.manager)
      throw fail.swarmNotInitialised({ target: b.name, docker: b.docker, state: swarm.state });
    const rec: TargetRecord = { name: b.name, kind: 'swarm', docker: b.docker, ports, createdAt: Date.now() };
    if (!(await store.addTarget(rec))) throw fail.targetExists({ target: b.name, docker: b.docker });
    void reply.status(201);
    return view(rec);
  });

  app.put<{ Params: { name: string }; Body: TargetStatus }>('/api/v1/targets/:name/status', { schema: { body: Status } }, async (req) => {
    if (!(await store.listTargets()).some((x) => x.name === req.params.name)) throw fail.targetUnknown({ target: req.params.name });
    board.report(req.params.name, req.body);
    return { ok: true };
  });

  app.delete<{ Params: { name: string } }>('/api/v1/targets/:name', async (req) => {
    const name = req.params.name;
    if (!(await store.listTargets()).some((x) => x.name === name)) throw fail.targetUnknown({ target: name });
    const apps = await appsOn(store, name);
    if (apps.length > 0) throw fail.targetInUse({ target: name, apps: apps.join(', ') });
    await store.deleteTarget(name);
    board.forget(name);
    return { removed: name };
  });
}
