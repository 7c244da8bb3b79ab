/**
 * Where the control plane keeps its state and blobs (issue #16): the one place that picks the
 * store (SQLite in $PILOT_HOME by default, PostgreSQL with `--store postgres://…` / PILOT_STORE /
 * `--store-file`) and constructs the blob store (`--artifacts PATH` / PILOT_ARTIFACTS, shared by
 * replicas until the OCI registry store lands).
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { storeCallHistogram } from './metrics.js';
import { fail, isPilotError } from '../core/errors.js';
import { maskUrl } from '../store/pg-url.js';
import { SqliteStore } from '../store/sqlite-store.js';
import type { Store } from '../store/store.js';

/** What `--store` / PILOT_STORE / `--store-file` say: SQLite in the home, or a PostgreSQL URL. */
export type StoreChoice = { kind: 'sqlite' } | { kind: 'postgres'; url: string };

/**
 * The store the user chose. A password in a URL given on the command line is refused (argv is
 * readable by every user); PILOT_STORE and a `--store-file` may hold one, PGPASSWORD and ~/.pgpass
 * work as for psql (node-postgres reads both).
 */
export function storeChoice(o: { flag?: string | undefined; file?: string | undefined; env?: string | undefined }): StoreChoice {
  let from: string;
  let raw: string;
  if (o.file !== undefined) {
    from = '--store-file';
    try {
      const mode = statSync(o.file).mode;
      raw = readFileSync(o.file, 'utf8').trim();
      if ((mode & 0o077) !== 0) throw new Error('readable by other users: chmod 600 it');
    } catch (err) {
      throw fail.storeFileUnreadable({ file: o.file, message: (err as Error).message });
    }
  } else if (o.flag !== undefined) {
    from = '--store';
    raw = o.flag.trim();
  } else {
    from = 'PILOT_STORE';
    raw = (o.env ?? '').trim();
  }
  if (raw === '' || raw === 'sqlite') return { kind: 'sqlite' };
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw fail.invalidStoreUrl({ from, value: maskUrl(raw) });
  }
  if ((u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') || u.hostname === '' || u.pathname.replace(/^\//, '') === '')
    throw fail.invalidStoreUrl({ from, value: maskUrl(raw) });
  if (from === '--store' && u.password !== '') throw fail.storePasswordInArgv({ url: maskUrl(raw) });
  return { kind: 'postgres', url: raw };
}

/** The opened store, how `pilot status` names it (password masked), and SQLite's own handle. */
export interface OpenedStore {
  readonly store: Store & { close(): void };
  readonly kind: 'sqlite' | 'postgres';
  readonly location: string;
  readonly sqlite: SqliteStore | undefined;
  readonly postgresUrl: string | undefined;
}

/**
 * Open the chosen store. PostgreSQL not answering yet (a machine booting, the database restarting)
 * is waited for, retrying every second and saying so, until `waitMs`; a schema from a newer Pilot
 * or a refused login is not retried.
 */
export async function openControlStore(home: string, choice: StoreChoice, log: Logger, waitMs: number): Promise<OpenedStore> {
  if (choice.kind === 'sqlite') {
    const file = join(home, 'pilot.db');
    const sqlite = new SqliteStore(file);
    return { store: sqlite, kind: 'sqlite', location: file, sqlite, postgresUrl: undefined };
  }
  const masked = maskUrl(choice.url);
  const start = performance.now();
  let said = false;
  for (;;) {
    try {
      // The driver loads only for a PostgreSQL store: a SQLite installation never pays for it.
      const { openPostgresStore } = await import('../store/postgres-store.js');
      const store = await openPostgresStore(choice.url);
      if (said) log.info({ store: masked }, 'PostgreSQL answers; starting');
      return { store, kind: 'postgres', location: masked, sqlite: undefined, postgresUrl: choice.url };
    } catch (err) {
      const message = (err as Error).message;
      if (!isPilotError(err) || err.code !== 'internal' || !retryableOpen(message)) throw err;
      if (performance.now() - start >= waitMs)
        throw fail.storeWaitExpired({ url: masked, seconds: Math.round(waitMs / 1000), message }, { cause: err });
      if (!said) log.warn({ store: masked, err: message, waitMs }, 'waiting for PostgreSQL');
      said = true;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/** A start-up failure worth waiting out: the server is not there (yet), not a refusal of what we asked. */
function retryableOpen(message: string): boolean {
  if (/newer than this Pilot|password authentication failed|does not exist|no pg_hba.conf entry/i.test(message)) return false;
  return /cannot use the PostgreSQL database/.test(message);
}

/**
 * Replicas share one sealing key and the same tokens: a replica with its own would seal what the
 * others cannot open and accept tokens they refuse. Compared by fingerprint (recorded by the first
 * replica in PostgreSQL), refused at start naming the files that differ.
 */
export async function assertReplicaSecrets(
  home: string,
  url: string,
  tokens: { admin: string; join: string; router: string },
): Promise<void> {
  const fp = (v: string | Buffer): string => createHash('sha256').update('pilot-replica-file\0').update(v).digest('hex');
  const { replicaSecretsDiffer } = await import('../store/postgres-lease.js');
  const differ = await replicaSecretsDiffer(url, {
    'secret.key': fp(readFileSync(join(home, 'secret.key'))),
    'admin-token': fp(tokens.admin),
    'join-token': fp(tokens.join),
    'router-token': fp(tokens.router),
  });
  if (differ.length > 0) throw fail.replicaSecretsDiffer({ home, files: differ.join(', ') });
}

/** The artifact repository's blobs: `--artifacts PATH` (replicas share one folder), else $PILOT_HOME/artifacts. */

/**
 * `store` with each call timed into `pilot_store_call_seconds{method}` (the store's latency seen
 * by its callers: queueing included). Synchronous methods are counted as they return.
 */
export function timedStore<S extends object>(store: S, registry: Registry): S {
  const h = storeCallHistogram(registry);
  return new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      // Called on the store itself, never on the proxy (a #private field is not reachable through it).
      if (typeof prop !== 'string' || prop === 'subscribeEvents') return (v as (...a: unknown[]) => unknown).bind(target);
      return (...args: unknown[]) => {
        const end = h.startTimer({ method: prop });
        let out: unknown;
        try {
          out = (v as (...a: unknown[]) => unknown).apply(target, args);
        } catch (err) {
          end();
          throw err;
        }
        if (out instanceof Promise) return out.finally(end);
        end();
        return out;
      };
    },
  });
}
