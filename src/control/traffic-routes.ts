/**
 * Live traffic figures per app and revision: `GET /api/v1/apps/:app/traffic?window=60s` and
 * `GET /api/v1/traffic?window=60s` (every app), read by `pilot top`, later by canary analysis and
 * the autoscaler.
 *
 *   router (embedded: in this process; process: GET /traffic on its admin port, router token)
 *     └─► summaries per (app, revision) ─► merged by revision (several routers) ─► figures
 *
 * The router is asked at each request (pull): nothing is stored, and a router process that does not
 * answer is a 503 `unavailable` naming it, never figures that silently drop its traffic. So are the
 * node routers (`pilot agent --router-port`) that synced within the last minute, at the traffic URL
 * and token each sent with its sync.
 */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { request } from 'undici';
import { fail, PilotError } from '../core/errors.js';
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

const Query = Type.Object({ window: Type.Optional(Type.String({ maxLength: 40 })) });

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

export function registerTrafficRoutes(api: FastifyInstance, deps: { store: Store; source: TrafficSource }): void {
  api.get<{ Params: { app: string }; Querystring: { window?: string } }>(
    '/api/v1/apps/:app/traffic',
    { schema: { querystring: Query } },
    async (req) => {
      const name = assertName(req.params.app);
      const ms = windowMs(req.query.window);
      const app = await deps.store.getApp(name);
      if (!app) throw fail.appNotFound({ app: name });
      return { windowSeconds: ms / 1000, ...appTraffic(app, await deps.source(ms, name), ms) };
    },
  );

  api.get<{ Querystring: { window?: string } }>('/api/v1/traffic', { schema: { querystring: Query } }, async (req) => {
    const ms = windowMs(req.query.window);
    const apps = await deps.store.listApps();
    const rows = await deps.source(ms);
    return { windowSeconds: ms / 1000, apps: apps.map((a) => appTraffic(a, rows, ms)) };
  });
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
