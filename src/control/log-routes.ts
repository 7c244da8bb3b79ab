/**
 * `GET /api/v1/apps/:app/logs`: an app's output, gathered from the agents that run (or ran) it.
 *   (default)      live instances, then the stopped instances of revisions newer than the active one
 *                  (a failed deploy: what the app said before it was abandoned)
 *   previous=1     the kept logs of stopped instances, newest first (the agents keep the newest 5 per app)
 *   instance=ID    one instance, live or stopped
 * Every line is prefixed `[instance id]` and masked with the app's secrets.
 */
import type { FastifyInstance } from 'fastify';
import { request } from '../http/undici.js';
import { fail } from '../core/errors.js';
import type { NodeRecord, Store } from '../store/store.js';
import type { Reconciler } from './reconciler.js';
import type { SecretBox } from '../store/secret-box.js';
import { appMasker } from './source-routes.js';

interface Stopped {
  id: string;
  app: string;
  revision: number;
  kind: string;
  stoppedAt: number;
  lastError?: string;
}

/** The kept stopped instances of an app on every node that answers, newest first. */
async function stoppedOf(nodes: readonly NodeRecord[], app: string): Promise<(Stopped & { node: NodeRecord })[]> {
  const lists = await Promise.all(
    nodes.map(async (node) => {
      try {
        const res = await request(`${node.apiUrl}/v1/apps/${encodeURIComponent(app)}/stopped`, {
          headers: { authorization: `Bearer ${node.agentToken}` },
          headersTimeout: 3000,
          bodyTimeout: 3000,
        });
        if (res.statusCode !== 200) {
          await res.body.dump();
          return [];
        }
        return ((await res.body.json()) as { stopped: Stopped[] }).stopped.map((s) => ({ ...s, node }));
      } catch {
        return []; // a node that does not answer has nothing to show now
      }
    }),
  );
  return lists.flat().sort((a, b) => b.stoppedAt - a.stoppedAt);
}

export function registerLogRoutes(app: FastifyInstance, deps: { store: Store; box: SecretBox; reconciler: Reconciler }): void {
  const { store, reconciler } = deps;
  app.get<{ Params: { app: string }; Querystring: { follow?: string; tail?: string; previous?: string; instance?: string } }>(
    '/api/v1/apps/:app/logs',
    async (req, reply) => {
      const a = await store.getApp(req.params.app);
      if (!a) throw fail.appNotFoundSeeApps({ app: req.params.app });
      const follow = req.query.follow === '1' || req.query.follow === 'true';
      const previous = req.query.previous === '1' || req.query.previous === 'true';
      const only = req.query.instance;
      if (only !== undefined && !/^[a-z0-9-]{1,200}$/.test(only)) throw fail.invalidInstanceId({ only: only.slice(0, 80) });
      const tail = Math.min(Math.max(Number(req.query.tail ?? 100) || 100, 0), 10_000);
      const allNodes = await store.listNodes();
      const nodes = new Map(allNodes.map((n) => [n.id, n]));
      const answering = allNodes.filter((n) => reconciler.nodeStatus(n.id) !== 'down');
      // One named instance is shown even while it is being stopped (its logs move to the kept ones then).
      const live = (await store.listInstances({ app: a.name })).filter((i) => (only === undefined ? i.desired !== 'stop' : i.id === only));
      type Source = { id: string; node: NodeRecord; header?: string; follow: boolean };
      const sources: Source[] = [];
      if (!previous)
        for (const i of live) {
          const node = nodes.get(i.nodeId);
          if (node) sources.push({ id: i.id, node, follow });
        }
      {
        const stopped = (await stoppedOf(answering, a.name)).filter((s) => {
          if (only !== undefined) return s.id === only && !live.some((l) => l.id === s.id);
          if (previous) return true;
          // By default: those of a deploy that did not become active (failed rollouts), not the retired ones.
          return a.activeRevision === undefined || s.revision > a.activeRevision;
        });
        for (const s of stopped) {
          const when = new Date(s.stoppedAt).toISOString();
          sources.push({
            id: s.id,
            node: s.node,
            follow: false,
            header: `--- ${s.kind === 'release' ? 'release phase' : 'instance'} of revision ${s.revision}, stopped ${when}${s.lastError ? `: ${s.lastError.split('\n')[0]}` : ''} ---`,
          });
        }
      }
      if (only !== undefined && sources.length === 0) throw fail.instanceNotFound({ only, name: a.name });
      const mask = await appMasker(store, deps.box, a.name);
      reply.hijack();
      const out = reply.raw;
      out.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache' });
      const abort = new AbortController();
      out.on('close', () => abort.abort());
      // Stopped instances one after the other (each a block); live ones are followed side by side.
      const stream = async (s: Source): Promise<void> => {
        const res = await request(
          `${s.node.apiUrl}/v1/instances/${encodeURIComponent(s.id)}/logs?tail=${tail}${s.follow ? '&follow=1' : ''}`,
          {
            headers: { authorization: `Bearer ${s.node.agentToken}` },
            signal: abort.signal,
          },
        );
        if (res.statusCode !== 200) {
          await res.body.dump();
          throw new Error(`the agent answered ${res.statusCode}`);
        }
        if (s.header) out.write(`[${s.id}] ${mask(s.header)}\n`);
        let partial = '';
        for await (const chunk of res.body) {
          const text = partial + (chunk as Buffer).toString('utf8');
          const lines = text.split('\n');
          partial = lines.pop() ?? '';
          for (const line of lines) out.write(`[${s.id}] ${mask(line)}\n`);
        }
        if (partial) out.write(`[${s.id}] ${mask(partial)}\n`);
      };
      // An instance whose node did not answer says so (unless this client is the one that left).
      const noLogs = (s: Source, err: unknown): void => {
        if (!abort.signal.aborted) out.write(`[${s.id}] (no logs from its node: ${(err as Error)?.message ?? 'no answer'})\n`);
      };
      for (const s of sources.filter((x) => !x.follow)) await stream(s).catch((err: unknown) => noLogs(s, err));
      const followed = sources.filter((x) => x.follow);
      const results = await Promise.allSettled(followed.map(stream));
      results.forEach((r, n) => {
        if (r.status === 'rejected') noLogs(followed[n]!, r.reason);
      });
      out.end();
    },
  );
}
