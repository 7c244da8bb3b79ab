/**
 * Live traffic figures per app and revision: `GET /api/v1/apps/:app/traffic?window=60s` and
 * `GET /api/v1/traffic?window=60s` (every app), read by `pilot top`, later by canary analysis and
 * the autoscaler.
 *
 *   router (embedded: in this process; process: GET /traffic on its admin port, router token)
 *     └─► summaries per (app, revision) ─► merged by revision (several routers) ─► figures
 *
 * With `Accept: text/event-stream` both answer a stream instead: the same document as an `event:
 * traffic` frame every `every` (1s–60s, default 2s) until the client goes, so a live view (the
 * dashboard) is pushed its figures rather than asking in a loop; a failure to read the routers is
 * an `event: problem` frame with the error's JSON and the stream goes on. A client that does not
 * read misses frames (each replaces the last) rather than growing the server's buffer.
 *
 * The router is asked at each request (pull): nothing is stored, and a router process that does not
 * answer is a 503 `unavailable` naming it, never figures that silently drop its traffic. So are the
 * node routers (`pilot agent --router-port`) that synced within the last minute, at the traffic URL
 * and token each sent with its sync.
 */
import type { ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import { request } from '../http/undici.js';
import { fail, PilotError } from '../core/errors.js';
import { toPilotError } from './http-errors.js';
import { assertName } from '../core/names.js';
import {
  emptySummary,
  figures,
  isTrafficSummary,
  LATENCY_LAYOUT,
  mergeSummaries,
  parseTrafficWindow,
  type TrafficFigures,
  type TrafficSummary,
} from '../core/traffic-window.js';
import type { RevisionTraffic } from '../router/metrics.js';
import { readRouterFile } from '../router/router-process.js';
import type { TrafficAnswer } from '../router/traffic-endpoint.js';
import type { AppRecord, Store } from '../store/store.js';

/** Every router's summaries for the window (one app's, or all). Throws `unavailable` when a router cannot be read. */
export type TrafficSource = (windowMs: number, app?: string) => Promise<readonly RevisionTraffic[]>;

/** One revision's row. `revision` null: requests for which no instance was ready. */
export interface RevisionFigures extends TrafficFigures {
  readonly revision: number | null;
  readonly active: boolean;
}

export interface AppTraffic {
  readonly app: string;
  readonly activeRevision: number | null;
  readonly revisions: readonly RevisionFigures[];
}

const Query = Type.Object({ window: Type.Optional(Type.String({ maxLength: 40 })), every: Type.Optional(Type.String({ maxLength: 40 })) });

/** A stream's period: `every` as a duration of 1s to 60s (default 2s). */
function everyMs(raw: string | undefined): number {
  if (raw === undefined) return 2000;
  const w = parseTrafficWindow(raw);
  if ('error' in w || w.ms < 1000 || w.ms > 60_000) throw fail.invalidTrafficEvery({ value: raw });
  return w.ms;
}

/** Bytes queued for a stream client above which a frame is skipped (the next one replaces it). */
const STREAM_HIGH_WATER = 64 * 1024;

/**
 * Write `compute()`'s document as an `event: traffic` frame every `periodMs` until the client goes or
 * `stop` fires. Never rejects: a failed read is a `problem` frame; a failed write ends the stream.
 */
export async function serveTrafficStream(
  res: ServerResponse,
  compute: () => Promise<unknown>,
  periodMs: number,
  stop: AbortSignal,
): Promise<void> {
  let closed = false;
  let wake: (() => void) | undefined;
  const onClose = (): void => {
    closed = true;
    wake?.();
  };
  res.on('close', onClose);
  res.on('error', onClose);
  stop.addEventListener('abort', onClose, { once: true });
  try {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
    res.write('retry: 2000\n\n');
    while (!closed) {
      let frame: string;
      try {
        frame = `event: traffic\ndata: ${JSON.stringify(await compute())}\n\n`;
      } catch (err) {
        frame = `event: problem\ndata: ${JSON.stringify({ error: toPilotError(err).toJSON() })}\n\n`;
      }
      if (closed) break;
      if (res.writableLength < STREAM_HIGH_WATER) res.write(frame);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, periodMs);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      wake = undefined;
    }
  } catch {
    // the socket failed under a write: the client is gone
  } finally {
    stop.removeEventListener('abort', onClose);
    if (!res.destroyed) res.end();
  }
}

const wantsStream = (req: FastifyRequest): boolean => (req.headers.accept ?? '').includes('text/event-stream');

function windowMs(raw: string | undefined): number {
  const w = parseTrafficWindow(raw);
  if ('error' in w) throw fail.invalidTrafficWindow({ problem: w.error });
  return w.ms;
}

/** Merge the rows of one app by revision and turn them into figures, newest revision first, the no-instance row last. */
export function appTraffic(app: AppRecord, rows: readonly RevisionTraffic[], windowMs: number): AppTraffic {
  const byRevision = new Map<number | null, TrafficSummary>();
  for (const r of rows) {
    if (r.app !== app.name) continue;
    const had = byRevision.get(r.revision);
    byRevision.set(r.revision, had === undefined ? r.summary : mergeSummaries(had, r.summary));
  }
  // The active revision always has a row, even before its first request.
  const active = app.activeRevision ?? null;
  if (active !== null && !byRevision.has(active)) byRevision.set(active, emptySummary(windowMs));
  const order = (x: number | null): number => (x === null ? -1 : x);
  return {
    app: app.name,
    activeRevision: active,
    revisions: [...byRevision]
      .sort((a, b) => order(b[0]) - order(a[0]))
      .map(([revision, summary]) => ({ revision, active: revision !== null && revision === active, ...figures(summary) })),
  };
}

export function registerTrafficRoutes(api: FastifyInstance, deps: { store: Store; source: TrafficSource }): { close(): void } {
  const stop = new AbortController();
  /** Answer once, or as a stream when the client asks for one. */
  const answer = async (req: FastifyRequest<{ Querystring: { every?: string } }>, reply: FastifyReply, compute: () => Promise<unknown>) => {
    if (!wantsStream(req)) return compute();
    const period = everyMs(req.query.every);
    reply.hijack();
    await serveTrafficStream(reply.raw, compute, period, stop.signal);
    return reply;
  };

  api.get<{ Params: { app: string }; Querystring: { window?: string; every?: string } }>(
    '/api/v1/apps/:app/traffic',
    { schema: { querystring: Query } },
    async (req, reply) => {
      const name = assertName(req.params.app);
      const ms = windowMs(req.query.window);
      if (!(await deps.store.getApp(name))) throw fail.appNotFound({ app: name });
      return answer(req, reply, async () => {
        const app = await deps.store.getApp(name);
        if (!app) throw fail.appNotFound({ app: name });
        return { windowSeconds: ms / 1000, ...appTraffic(app, await deps.source(ms, name), ms) };
      });
    },
  );

  api.get<{ Querystring: { window?: string; every?: string } }>(
    '/api/v1/traffic',
    { schema: { querystring: Query } },
    async (req, reply) => {
      const ms = windowMs(req.query.window);
      return answer(req, reply, async () => {
        const apps = await deps.store.listApps();
        const rows = await deps.source(ms);
        return { windowSeconds: ms / 1000, apps: apps.map((a) => appTraffic(a, rows, ms)) };
      });
    },
  );

  return { close: () => stop.abort() };
}

/** The router process's figures (GET /traffic on its admin port, with the router token). */
export async function routerProcessTraffic(home: string, token: string, ms: number, app?: string): Promise<RevisionTraffic[]> {
  const info = readRouterFile(home);
  if (!info) throw fail.noRouterProcess({ home });
  try {
    return readAnswer(await askTraffic(info.admin, token, ms, app));
  } catch (err) {
    if (err instanceof PilotError) throw err;
    throw fail.routerGaveNoTraffic({ pid: info.pid, admin: info.admin, message: (err as Error).message });
  }
}

/** A node router's figures, at the URL and with the token it sent with its sync (`router` is its feed id, node:ID). */
export async function nodeRouterTraffic(
  router: string,
  at: { url: string; token: string },
  ms: number,
  app?: string,
): Promise<RevisionTraffic[]> {
  try {
    return readAnswer(await askTraffic(at.url, at.token, ms, app));
  } catch (err) {
    if (err instanceof PilotError) throw err;
    throw fail.nodeRouterGaveNoTraffic({ node: router.replace(/^node:/, ''), url: at.url, message: (err as Error).message });
  }
}

async function askTraffic(base: string, token: string, ms: number, app: string | undefined): Promise<unknown> {
  const qs = new URLSearchParams({ window: `${ms}ms`, ...(app === undefined ? {} : { app }) });
  const res = await request(`${base}/traffic?${qs}`, {
    headers: { authorization: `Bearer ${token}` },
    headersTimeout: 2000,
    bodyTimeout: 2000,
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`it answered ${res.statusCode}`);
  return JSON.parse(text);
}

/** Only well-formed rows of a router's answer are believed; a router of another version (other bin layout) is refused. */
function readAnswer(x: unknown): RevisionTraffic[] {
  const a = x as Partial<TrafficAnswer> | null;
  if (typeof a !== 'object' || a === null || a.layout !== LATENCY_LAYOUT || !Array.isArray(a.revisions)) {
    throw fail.routerTrafficUnreadable();
  }
  return a.revisions.filter(
    (r): r is RevisionTraffic =>
      typeof r === 'object' &&
      r !== null &&
      typeof r.app === 'string' &&
      (r.revision === null || Number.isInteger(r.revision)) &&
      isTrafficSummary(r.summary),
  );
}

/**
 * Several replicas: `GET /api/v1/replica/traffic?window=NNNms&app=` (admin token) answers the
 * figures of the routers that sync with this replica (its router process or embedded router, and
 * the node routers whose feed it serves) in the routers' own wire form (`TrafficAnswer`), so
 * another replica merges them into its own (`replicaTraffic`): canary analysis, the autoscaler and
 * `pilot top` see every router whichever replica each one syncs with.
 */
export function registerReplicaTrafficRoute(api: FastifyInstance, local: (ms: number, app?: string) => Promise<RevisionTraffic[]>): void {
  api.get<{ Querystring: { window?: string; app?: string } }>('/api/v1/replica/traffic', async (req) => {
    const m = /^(\d{1,7})ms$/.exec(req.query.window ?? '');
    const ms = m ? Number(m[1]) : NaN;
    if (!(ms >= 1000 && ms <= 300_000)) throw fail.invalidRequest({ message: 'window: give 1000ms to 300000ms' });
    const app = req.query.app === undefined ? undefined : assertName(req.query.app);
    const answer: TrafficAnswer = { layout: LATENCY_LAYOUT, windowMs: ms, revisions: await local(ms, app) };
    return answer;
  });
}

/** Another replica's routers' figures (`registerReplicaTrafficRoute`); throws when it does not answer. */
export async function replicaTraffic(replicaUrl: string, adminToken: string, ms: number, app?: string): Promise<RevisionTraffic[]> {
  return readAnswer(await askTraffic(`${replicaUrl}/api/v1/replica`, adminToken, ms, app));
}
