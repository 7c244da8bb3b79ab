/** Nodes: list with health, cordon (no new instances), drain (move instances away, then no new ones), uncordon. */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { fail } from '../core/errors.js';
import { assertName } from '../core/names.js';
import type { NodeRecord, NodeScheduling, Store } from '../store/store.js';
import type { Reconciler } from './reconciler.js';
import { hashToken, newToken } from '../api/auth.js';
import { randomBytes } from 'node:crypto';
import { request } from '../http/undici.js';
import type { RouterView } from '../router/table-feed.js';
import type { NodeView } from '../api/wire.js';

type NodeRouterView = NonNullable<NodeView['router']>;

export function registerNodeRoutes(
  app: FastifyInstance,
  deps: {
    store: Store;
    reconciler: Reconciler;
    /** The routers that sync with this control plane (node routers are `node:<id>`). */
    routers?: () => readonly RouterView[];
  },
): void {
  const { store, reconciler } = deps;
  const routerOf = (nodeId: string): RouterView | undefined => deps.routers?.().find((r) => r.id === `node:${nodeId}`);
  const mustGetNode = async (raw: string): Promise<NodeRecord> => {
    const name = assertName(raw, 'node name');
    const node = await store.getNodeByName(name);
    if (!node) throw fail.nodeNotFound({ name });
    return node;
  };

  app.get('/api/v1/nodes', async () => {
    const nodes = await store.listNodes();
    const instances = await store.listInstances();
    return {
      nodes: nodes.map((n) => ({
        id: n.id,
        name: n.name,
        address: n.address,
        // Where the agent answers: `pilot doctor` reads its clock from the HTTP Date header there.
        apiUrl: n.apiUrl,
        status: reconciler.nodeStatus(n.id),
        scheduling: n.scheduling,
        labels: n.labels,
        instances: instances.filter((i) => i.nodeId === n.id && i.desired !== 'stop').length,
        orphans: reconciler.orphans().filter((o) => o.nodeId === n.id).length,
        cpus: n.cpus ?? null,
        memoryMb: n.memoryMb ?? null,
        runtimes: n.runtimes,
        lastSeenAt: n.lastSeenAt,
        registeredAt: n.registeredAt,
        router: routerViewOf(routerOf(n.id)),
      })),
    };
  });

  // A node router's pilot_router_* metrics, relayed with the token it gave in its sync (kept in
  // memory only); 503 when it is silent or does not answer.
  app.get<{ Params: { name: string } }>('/api/v1/nodes/:name/router/metrics', async (req, reply) => {
    const node = await mustGetNode(req.params.name);
    const r = routerOf(node.id);
    if (r?.traffic === undefined) throw fail.nodeRouterSilent({ node: node.name });
    let text: string;
    try {
      const res = await request(`${r.traffic.url}/metrics`, {
        headers: { authorization: `Bearer ${r.traffic.token}` },
        headersTimeout: 3000,
        bodyTimeout: 3000,
      });
      text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`answered ${res.statusCode}`);
    } catch (err) {
      throw fail.nodeRouterSilent({ node: node.name }, { cause: err });
    }
    void reply.type('text/plain; version=0.0.4; charset=utf-8');
    return text;
  });

  // Instances agents run that this control plane has no record of: kept running, never stopped on a guess.
  app.get('/api/v1/orphans', async () => ({ orphans: reconciler.orphans() }));
  app.post<{ Params: { id: string } }>('/api/v1/orphans/:id/stop', async (req) => {
    const o = reconciler.stopOrphan(req.params.id);
    if (!o) throw fail.orphanNotFound({ id: req.params.id });
    return { orphan: o };
  });

  const setScheduling = (path: string, to: NodeScheduling): void => {
    app.post<{ Params: { name: string }; Body: { force?: boolean } | undefined }>(
      `/api/v1/nodes/:name/${path}`,
      { schema: { body: Type.Optional(Type.Object({ force: Type.Optional(Type.Boolean()) }, { additionalProperties: false })) } },
      async (req) => {
        const node = await mustGetNode(req.params.name);
        await reconciler.serial(async () => {
          if (to === 'draining' && !req.body?.force) {
            const others = (await store.listNodes()).filter(
              (n) => n.id !== node.id && n.scheduling === 'eligible' && reconciler.nodeStatus(n.id) === 'ready',
            );
            if (others.length === 0) {
              throw fail.lastReadyNode({ name: node.name });
            }
          }
          await store.setNodeScheduling(node.id, to);
        });
        // Its apps move (draining) or stay; apps waiting for room may fit (uncordon).
        await reconciler.nodeChanged(node.id);
        req.log.info({ node: node.name, scheduling: to }, 'node scheduling changed');
        return { node: node.name, scheduling: to };
      },
    );
  };
  // Join tokens: each agent can get its own, and a leaked one can be revoked (only its sha256 is kept).
  app.post('/api/v1/tokens/join', async (_req, reply) => {
    const token = newToken('pilot_join');
    const id = randomBytes(6).toString('hex');
    await store.createJoinToken(id, hashToken(token), Date.now());
    void reply.status(201);
    return { id, token, note: 'shown once; give it to `pilot agent` as PILOT_JOIN_TOKEN or --token-file FILE' };
  });
  app.get('/api/v1/tokens/join', async () => ({ tokens: await store.listJoinTokens() }));
  app.delete<{ Params: { id: string } }>('/api/v1/tokens/join/:id', async (req) => {
    if (!/^[a-f0-9]{12}$/.test(req.params.id) || !(await store.revokeJoinToken(req.params.id, Date.now()))) {
      throw fail.joinTokenNotFound({ id: req.params.id.slice(0, 40) });
    }
    return { revoked: req.params.id };
  });

  setScheduling('drain', 'draining');
  setScheduling('cordon', 'cordoned');
  setScheduling('uncordon', 'eligible');
}

function routerViewOf(r: RouterView | undefined): NodeRouterView | null {
  if (r === undefined) return null;
  return {
    port: r.self?.port ?? null,
    httpsPort: r.self?.httpsPort ?? null,
    tableVersion: r.version,
    current: r.current,
    lastSyncAt: r.lastSyncAt,
  };
}
