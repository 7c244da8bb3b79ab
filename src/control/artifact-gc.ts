/**
 * Garbage collection of the artifact repository, applied: read the state, ask the pure planner
 * (core/artifact-gc.ts), delete what it says. The whole pass runs inside the reconciler's
 * `serial()` queue, the single writer: a deploy or a rollback checks that its blobs exist inside
 * that queue too, so a blob can never be deleted between that check and the revision (or rollout)
 * being committed.
 *
 *   POST /api/v1/artifacts/gc  { dryRun?, keep? }  →  { deleted: [{digest,size,app?}], freedBytes, kept, dryRun }
 *
 * `startArtifactGcTimer` runs the same pass every PILOT_GC_INTERVAL in `pilot up` / `pilot server`.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { BlobStore } from '../artifacts/blob-port.js';
import { DEFAULT_GC_SETTINGS, MAX_GC_KEEP, planArtifactGc, type GcApp, type GcBlob, type GcSettings } from '../core/artifact-gc.js';
import { parseEnvDuration } from '../core/duration.js';
import { fail } from '../core/errors.js';
import type { Store } from '../store/store.js';
import type { Reconciler } from './reconciler.js';

export interface ArtifactGcDeps {
  store: Store;
  blobs: BlobStore;
  reconciler: Pick<Reconciler, 'serial'>;
  /**
   * Asked before each deletion: with several replicas, whether this one still holds the leader
   * lease by its own clock (a leader paused past its lease deletes nothing on a stale plan).
   */
  mayDelete?: () => boolean;
}

export interface GcResult {
  readonly deleted: { digest: string; size: number; app?: string }[];
  readonly freedBytes: number;
  /** Blobs left in the repository. */
  readonly kept: number;
  readonly dryRun: boolean;
}

/** Runs looked at for artifacts they may still deploy (queued or running ones are few). */
const RUNS_SCANNED = 5000;

/** One GC pass (inside the single writer); with dryRun, nothing is deleted. */
export function collectArtifacts(deps: ArtifactGcDeps, opts: { dryRun: boolean; settings: GcSettings; now?: number }): Promise<GcResult> {
  const { store, blobs } = deps;
  return deps.reconciler.serial(async () => {
    const now = opts.now ?? Date.now();
    const meta = new Map(store.listArtifactMeta().map((m) => [m.digest, m]));
    const stored: GcBlob[] = (await blobs.list()).map((b) => {
      const m = meta.get(b.digest);
      // The later of the two (the safer age): blobs without a row (runtimes) have only the file's.
      return { digest: b.digest, size: b.size, createdAt: Math.max(m?.createdAt ?? 0, b.mtimeMs), app: m?.app };
    });
    const apps: GcApp[] = await Promise.all(
      (await store.listApps()).map(async (a) => ({
        name: a.name,
        activeRevision: a.activeRevision,
        revisions: (await store.listRevisions(a.name)).map((r) => ({
          number: r.number,
          artifact: r.artifact,
          imageArchive: r.image?.archive,
          nodeRuntime: r.nodeRuntime?.digest,
          npmPackage: r.nodeRuntime?.npm?.digest,
        })),
      })),
    );
    const rollouts: { app: string; fromRevision: number | undefined; toRevision: number }[] = (
      await Promise.all(apps.map((a) => store.activeRollout(a.name)))
    ).flatMap((r) => (r ? [r] : []));
    // A running A/B experiment uses both its revisions like a rollout does: their blobs are kept.
    for (const e of await Promise.all(apps.map((a) => store.activeExperiment(a.name))))
      if (e) rollouts.push({ app: e.app, fromRevision: e.control, toRevision: e.variant });
    const runArtifacts = (await store.listRuns({ limit: RUNS_SCANNED }))
      .filter((r) => (r.status === 'queued' || r.status === 'running') && r.artifact !== undefined)
      .map((r) => r.artifact!);
    const nodeRuntimes = (await store.listNodeRuntimes()).map((r) => ({ digest: r.digest, createdAt: r.createdAt }));
    const plan = planArtifactGc({ blobs: stored, apps, rollouts, runArtifacts, nodeRuntimes, now, settings: opts.settings });
    const deleted: GcResult['deleted'] = [];
    let freedBytes = 0;
    for (const b of plan.delete) {
      if (!opts.dryRun) {
        // Asked for (HEAD) or published again since the listing: a deploy of it may be on its way.
        const touched = await blobs.modifiedAt(b.digest);
        if (touched !== undefined && now - touched < opts.settings.graceMs && touched > b.createdAt) continue;
        if (deps.mayDelete !== undefined && !deps.mayDelete()) break; // no longer the leader: the plan may be stale
        if (!(await blobs.delete(b.digest))) continue; // gone already (another store on the same root)
        store.forgetBlob(b.digest);
      }
      deleted.push({ digest: b.digest, size: b.size, ...(b.app !== undefined ? { app: b.app } : {}) });
      freedBytes += b.size;
    }
    return { deleted, freedBytes, kept: stored.length - deleted.length, dryRun: opts.dryRun };
  });
}

/** keep from the API: a whole number from 0 to MAX_GC_KEEP. */
function parseKeep(v: unknown, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_GC_KEEP) {
    throw fail.invalidGcKeep({ maxGcKeep: MAX_GC_KEEP, v });
  }
  return v;
}

/** How often the control plane collects: PILOT_GC_INTERVAL (default 1 h; 0 = off). */
export function gcIntervalFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  return parseEnvDuration(env.PILOT_GC_INTERVAL) ?? 3_600_000;
}

/** GC settings from the environment: PILOT_GC_GRACE ("1h", "0", seconds), PILOT_GC_KEEP. */
export function gcSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): GcSettings {
  const grace = parseEnvDuration(env.PILOT_GC_GRACE);
  const keep = env.PILOT_GC_KEEP?.trim() ? Number(env.PILOT_GC_KEEP) : undefined;
  return {
    graceMs: grace ?? DEFAULT_GC_SETTINGS.graceMs,
    keep: keep !== undefined && Number.isInteger(keep) && keep >= 0 && keep <= MAX_GC_KEEP ? keep : DEFAULT_GC_SETTINGS.keep,
  };
}

export function registerArtifactGcRoutes(app: FastifyInstance, deps: ArtifactGcDeps & { settings: () => GcSettings }): void {
  app.post<{ Body: unknown }>('/api/v1/artifacts/gc', async (req) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    if (typeof body !== 'object' || Array.isArray(body)) throw fail.gcBodyNotObject();
    for (const k of Object.keys(body)) {
      if (k !== 'dryRun' && k !== 'keep') throw fail.gcUnknownField({ k: k.slice(0, 40) });
    }
    if (body.dryRun !== undefined && typeof body.dryRun !== 'boolean') throw fail.gcInvalidDryRun();
    const base = deps.settings();
    const settings = { ...base, keep: parseKeep(body.keep, base.keep) };
    return collectArtifacts(deps, { dryRun: body.dryRun === true, settings });
  });
}

/** Collect every `intervalMs` (0 = never), logging what was freed; returns the stop function. */
export function startArtifactGcTimer(deps: ArtifactGcDeps, log: Logger, intervalMs: number, settings: () => GcSettings): () => void {
  if (intervalMs <= 0) return () => undefined;
  const t = setInterval(() => {
    collectArtifacts(deps, { dryRun: false, settings: settings() })
      .then((r) => {
        if (r.deleted.length > 0)
          log.info({ deleted: r.deleted.length, freedBytes: r.freedBytes, kept: r.kept }, 'artifact GC freed space');
      })
      .catch((err: unknown) => log.error({ err }, 'artifact GC failed'));
  }, intervalMs);
  t.unref();
  return () => clearInterval(t);
}

/** The blobs a revision needs from the artifact repository (an image pushed to a registry needs none). */
export function revisionBlobDigests(r: {
  artifact: string;
  config: { runtime: string };
  image?: { archive?: string | undefined } | undefined;
  nodeRuntime?: { digest: string; npm?: { digest: string } | undefined } | undefined;
}): string[] {
  const out: string[] = [];
  if (r.config.runtime === 'process' || r.image?.archive !== undefined) out.push(r.image?.archive ?? r.artifact);
  if (r.nodeRuntime) out.push(r.nodeRuntime.digest);
  if (r.nodeRuntime?.npm) out.push(r.nodeRuntime.npm.digest);
  return out;
}

/**
 * Call inside `serial()` before committing a revision or a rollout to it: the GC runs there too,
 * so what is checked here cannot be deleted before the commit. `collected` says so for a rollback.
 */
export async function assertBlobsPresent(blobs: BlobStore, digests: readonly string[], what: string, collected: boolean): Promise<void> {
  for (const d of digests) {
    if (await blobs.has(d)) continue;
    throw collected ? fail.artifactCollected({ what, d }) : fail.artifactMissingFor({ what, d });
  }
}
