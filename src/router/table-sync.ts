/**
 * Following the control plane's routing table from a router in its own process: the router process
 * on the control plane's machine (router-process.ts, router token) and a node's router
 * (node-router.ts, the node's credential). Both long-poll `POST /api/v1/router/sync`, report the
 * table version they applied and their in-flight counts, apply a new table per app (admitRoutes),
 * save it (write + rename, 0600) and keep serving the last one while the control plane is away.
 */
import { chmodSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Log as Logger } from '../core/log.js';
import { request } from '../http/undici.js';
import { fromLegacyRoutes, ROUTES_FORMAT, ROUTES_FORMAT_HEADER } from './legacy-table.js';
import { admitRoutes, type RoutingTable, type Route } from './routing-table.js';
import type { RouterSelf } from './table-feed.js';
import type { AcmeChallenges, CertificateStore, TlsBundle } from './tls.js';

export const tableFile = (dir: string): string => join(dir, 'table.json');
/** The certificates (chains and keys) and policies last received: 0600, in the router's 0700 folder. */
export const tlsFile = (dir: string): string => join(dir, 'tls.json');

export function writeAtomic(file: string, text: string): void {
  writeFileSync(file + '.tmp', text, { mode: 0o600 });
  chmodSync(file + '.tmp', 0o600); // a .tmp left by a crash keeps its mode otherwise
  renameSync(file + '.tmp', file);
}

/** What a router in its own process serves over HTTPS, kept as the table is kept. */
export interface TlsState {
  readonly certs: CertificateStore;
  readonly challenges: AcmeChallenges;
}

/**
 * Serve the certificates saved by the last run in `dir` (the control plane may be away). Returns
 * their version. A missing file is no certificates; an unreadable one, or an entry that cannot be
 * used, is logged (the host, never the key) and left out.
 */
export function loadTls(dir: string, tls: TlsState, log: Logger): string | undefined {
  try {
    const saved = JSON.parse(readFileSync(tlsFile(dir), 'utf8')) as { version?: unknown; certs?: unknown; policies?: unknown };
    if (!Array.isArray(saved.certs) || typeof saved.policies !== 'object' || saved.policies === null) {
      log.warn('saved certificates have no list of certificates; starting without');
      return undefined;
    }
    const problems = tls.certs.replace({ certs: saved.certs as TlsBundle['certs'], policies: saved.policies as TlsBundle['policies'] });
    if (problems.length > 0) log.warn({ problems }, 'saved certificates left out');
    return typeof saved.version === 'string' ? saved.version : undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      log.warn({ err: (err as Error).message }, 'saved certificates unreadable; starting without');
    return undefined;
  }
}

/** Apply a bundle from the control plane (live: the next handshake gets the new context), then save it. */
function applyTls(dir: string, tls: TlsState, version: string, bundle: TlsBundle, log: Logger): void {
  const policies = typeof bundle.policies === 'object' && bundle.policies !== null ? bundle.policies : {};
  const problems = tls.certs.replace({ certs: bundle.certs, policies });
  if (problems.length > 0) log.warn({ problems }, 'certificates left out');
  tls.challenges.replace(typeof bundle.challenges === 'object' && bundle.challenges !== null ? bundle.challenges : {});
  // ACME answers live for minutes: not saved.
  writeAtomic(tlsFile(dir), JSON.stringify({ version, certs: bundle.certs, policies }));
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
  /**
   * HTTPS: the certificates this router serves, following the control plane's, and their saved
   * version. `onApplied`: awaited after a new bundle is applied and before its version is reported
   * (a data plane other than the embedded router takes it there).
   */
  tls?: TlsState & { version: string | undefined; onApplied?: () => Promise<void> };
  /** Where this router listens, reported at each sync. */
  self?: RouterSelf;
}): Promise<void> {
  let version = o.version;
  let tlsVersion = o.tls?.version;
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
        body: JSON.stringify({
          version: version ?? '',
          waitMs,
          inflight,
          ...o.extra,
          // An older control plane drops these fields (Fastify strips unknown properties): it sends no certificates.
          ...(o.tls ? { tlsVersion: tlsVersion ?? '' } : {}),
          ...(o.self ? { self: o.self } : {}),
        }),
        headersTimeout: waitMs + 10_000,
        bodyTimeout: 10_000,
        signal: o.signal,
      });
      const body = (await res.body.json()) as {
        version?: string;
        routes?: unknown;
        tls?: { version?: unknown; bundle?: TlsBundle };
        error?: { message?: string };
      };
      if (res.statusCode !== 200) throw new Error(`control plane answered ${res.statusCode}: ${body.error?.message ?? ''}`);
      if (Array.isArray(body.routes) && body.version) {
        // An older control plane answers in the shape before weighted backends.
        const { routes, problems } = admitRoutes(fromLegacyRoutes(body.routes as unknown[]).routes);
        if (problems.length > 0) o.log.warn({ problems }, 'parts of the routing table left out');
        o.table.set(routes);
        if (o.onTable) await o.onTable(routes);
        version = body.version;
        writeAtomic(tableFile(o.dir), JSON.stringify({ version, routes }));
        o.log.debug(
          {
            version,
            from: target.api,
            routes: routes.map((r) => ({ app: r.app, backends: r.backends.map((b) => [b.revision, b.weight, b.upstreams.length]) })),
          },
          'routing table applied',
        );
      }
      const tls = body.tls;
      if (o.tls && tls && typeof tls.version === 'string' && tls.bundle && Array.isArray(tls.bundle.certs)) {
        applyTls(o.dir, o.tls, tls.version, tls.bundle, o.log);
        if (o.tls.onApplied) await o.tls.onApplied();
        tlsVersion = tls.version;
        o.log.info({ hosts: tls.bundle.certs.map((c) => c.host) }, 'certificates applied');
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
