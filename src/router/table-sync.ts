/**
 * Following the control plane's routing table from a router in its own process: the router process
 * on the control plane's machine (router-process.ts, router token) and a node's router
 * (node-router.ts, the node's credential). Both long-poll `POST /api/v1/router/sync`, report the
 * table version they applied and their in-flight counts, apply a new table per app (admitRoutes),
 * save it (write + rename, 0600) and keep serving the last one while the control plane is away.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { request } from 'undici';
import { fromLegacyRoutes, ROUTES_FORMAT, ROUTES_FORMAT_HEADER } from './legacy-table.js';
import { admitRoutes, type RoutingTable, type Route } from './routing-table.js';

export const tableFile = (dir: string): string => join(dir, 'table.json');

export function writeAtomic(file: string, text: string): void {
  writeFileSync(file + '.tmp', text, { mode: 0o600 });
  renameSync(file + '.tmp', file);
}

/**
 * The table saved by the last run in `dir`. One saved by a router before weighted backends is
 * converted (legacy-table.ts) with a log line; an unreadable one is ignored with a log line: start
 * empty, the control plane sends a table at the first poll.
 */
export function loadTable(dir: string, log: Logger): { version: string | undefined; routes: Route[] } {
  try {
    const saved = JSON.parse(readFileSync(tableFile(dir), 'utf8')) as { version?: unknown; routes?: unknown };
    if (!Array.isArray(saved.routes)) {
      log.warn('saved routing table has no list of routes; starting empty');
      return { version: undefined, routes: [] };
    }
    const { routes, converted } = fromLegacyRoutes(saved.routes as unknown[]);
    if (converted > 0) log.info({ routes: converted }, 'saved routing table is in the shape before weighted backends; converted');
    return { version: typeof saved.version === 'string' ? saved.version : undefined, routes };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      log.warn({ err: (err as Error).message }, 'saved routing table unreadable; starting empty');
    return { version: undefined, routes: [] };
  }
}

export interface SyncTarget {
  /** The control plane's API base URL. */
  readonly api: string;
  /** The bearer token to sync with. */
  readonly token: string;
}

/**
 * Sync until `isClosed()` (or `abort` fires): a failure to read the target (no server.json, no
 * credential yet) or to reach the control plane is retried every 500 ms, logged once per distinct
 * error, while the table in force keeps being served.
 */
export async function followControlPlane(o: {
  dir: string;
  table: RoutingTable;
  version: string | undefined;
  target: () => SyncTarget;
  inflight: () => Record<string, number> | Promise<Record<string, number>>;
  /** After a new table is set on `table`: a data plane that is not the embedded router applies it too (HAProxy). */
  onTable?: (routes: readonly Route[]) => Promise<void>;
  log: Logger;
  signal: AbortSignal;
  isClosed: () => boolean;
  /** Checked before each poll: false stops the loop (the router process's folder is gone). */
  keepGoing?: () => boolean;
  /** More fields of the sync body (a node router's traffic endpoint). */
  extra?: Record<string, unknown>;
  /** Called after each failed attempt: the next target to try (a node router with several control-plane URLs). */
  onFailure?: () => void;
}): Promise<void> {
  let version = o.version;
  let lastError: string | undefined;
  while (!o.isClosed()) {
    if (o.keepGoing && !o.keepGoing()) break;
    try {
      const target = o.target();
      const inflight = await o.inflight();
      // Draining upstreams need fresh counts: poll briefly while anything is in flight.
      const waitMs = Object.keys(inflight).length > 0 ? 200 : 20_000;
      const res = await request(`${target.api}/api/v1/router/sync`, {
        method: 'POST',
        headers: { authorization: `Bearer ${target.token}`, 'content-type': 'application/json', [ROUTES_FORMAT_HEADER]: ROUTES_FORMAT },
        body: JSON.stringify({ version: version ?? '', waitMs, inflight, ...o.extra }),
        headersTimeout: waitMs + 10_000,
        bodyTimeout: 10_000,
        signal: o.signal,
      });
      const body = (await res.body.json()) as { version?: string; routes?: unknown; error?: { message?: string } };
      if (res.statusCode !== 200) throw new Error(`control plane answered ${res.statusCode}: ${body.error?.message ?? ''}`);
      if (Array.isArray(body.routes) && body.version) {
        // An older control plane answers in the shape before weighted backends.
        const { routes, problems } = admitRoutes(fromLegacyRoutes(body.routes as unknown[]).routes);
        if (problems.length > 0) o.log.warn({ problems }, 'parts of the routing table left out');
        o.table.set(routes);
        if (o.onTable) await o.onTable(routes);
        version = body.version;
        writeAtomic(tableFile(o.dir), JSON.stringify({ version, routes }));
      }
      if (lastError !== undefined) o.log.info('control plane reachable again');
      lastError = undefined;
    } catch (err) {
      if (o.isClosed()) break;
      const msg = (err as Error).message;
      if (msg !== lastError) o.log.warn({ err: msg }, 'cannot reach the control plane; serving the last routing table');
      lastError = msg;
      o.onFailure?.();
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
