/**
 * `GET /api/v1/cluster` (issue #16 part 5): the control-plane replicas (address, version, last
 * heard from), which one leads and its fencing token, and the health of the store and the blob
 * store as this replica sees them. `pilot status` without an app shows it.
 */
import { access, constants } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { freeBytesSync } from '../disk/disk.js';
import type { ClusterView } from '../api/wire.js';
import type { Store } from '../store/store.js';
import type { Leadership } from './leadership.js';
import type { BlobStore } from '../artifacts/blob-port.js';

export interface ClusterDeps {
  leadership: () => Leadership;
  store: Store;
  storeInfo: { kind: 'sqlite' | 'postgres'; location: string };
  blobs: BlobStore;
  selfUrl: () => string;
  version: string;
}

/** A probe that takes longer than this counts as unhealthy (the answer must not hang with the database). */
const PROBE_MS = 2000;

async function timed(fn: () => Promise<unknown>): Promise<{ healthy: boolean; latencyMs: number; error?: string }> {
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${PROBE_MS} ms`)), PROBE_MS);
      }),
    ]);
    return { healthy: true, latencyMs: Math.round((performance.now() - t0) * 10) / 10 };
  } catch (err) {
    return { healthy: false, latencyMs: Math.round(performance.now() - t0), error: (err as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

/** The folder is writable, or (made at the first upload) the nearest folder above it that exists is. */
async function writable(path: string): Promise<void> {
  for (let p = path; ; p = dirname(p)) {
    try {
      await access(p, constants.W_OK);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || dirname(p) === p) throw err;
    }
  }
}

/** The cluster as this replica sees it. */
export async function clusterView(d: ClusterDeps): Promise<ClusterView> {
  const l = d.leadership();
  const [storeProbe, blobProbe, cluster] = await Promise.all([
    timed(() => d.store.eventBounds()),
    // A folder: writable; a registry: it answers, with these credentials.
    timed(() => (d.blobs.kind === 'fs' ? writable(d.blobs.location) : d.blobs.ping())),
    l.cluster().then(
      (c) => ({ ok: true as const, c }),
      (err: unknown) => ({ ok: false as const, error: (err as Error).message }),
    ),
  ]);
  const self = { id: l.id, url: d.selfUrl(), version: d.version, leading: l.leading(), token: l.token() ?? null };
  const store = { kind: d.storeInfo.kind, location: d.storeInfo.location, ...storeProbe };
  const free = d.blobs.kind === 'fs' ? freeBytesSync(d.blobs.location) : undefined;
  const blobs = {
    kind: d.blobs.kind === 'fs' ? ('filesystem' as const) : ('oci' as const),
    location: d.blobs.location,
    ...blobProbe,
    ...(free !== undefined ? { freeBytes: free } : {}),
  };
  const figures = { leaderChanges: l.changes, fencedWrites: l.refusedWrites };
  if (l.mode === 'single') {
    const now = Date.now();
    return {
      mode: 'single',
      self,
      leader: { id: l.id, url: self.url, token: null, acquiredAt: null, expiresAt: null, expired: false },
      replicas: [{ id: l.id, url: self.url, version: d.version, startedAt: null, lastSeenAt: now, silentMs: 0, leader: true, self: true }],
      store,
      blobs,
      ...figures,
    };
  }
  const leader = cluster.ok ? cluster.c?.leader : undefined;
  return {
    mode: 'replicated',
    self,
    leader: leader
      ? {
          id: leader.holder,
          url: leader.url,
          token: leader.token,
          acquiredAt: leader.acquiredAt,
          expiresAt: leader.expiresAt,
          expired: leader.expired,
        }
      : null,
    replicas: (cluster.ok ? (cluster.c?.replicas ?? []) : []).map((r) => ({
      id: r.id,
      url: r.url,
      version: r.version,
      startedAt: r.startedAt,
      lastSeenAt: r.lastSeenAt,
      silentMs: r.silentMs,
      leader: leader !== undefined && !leader.expired && leader.holder === r.id,
      self: r.id === l.id,
    })),
    store: cluster.ok || !store.healthy ? store : { ...store, healthy: false, error: cluster.error },
    blobs,
    ...figures,
  };
}

export function registerClusterRoutes(api: FastifyInstance, d: ClusterDeps): void {
  api.get('/api/v1/cluster', async () => clusterView(d));
}
