/**
 * Garbage collection of the artifact repository: the pure decision. Given every stored blob and
 * everything that may still need one, say which blobs go. No I/O, no clock (`now` is an argument).
 *
 * A blob is kept when any of these holds (a reason is recorded for the first that applies):
 *   - `young`:    it was stored less than `graceMs` ago (a pipeline publishes before it deploys, so a
 *                 fresh blob nothing names yet may be about to be used);
 *   - `active`:   the active revision of an app uses it (artifact, image archive or Node.js runtime);
 *   - `rollout`:  a running rollout's from- or to-revision uses it;
 *   - `recent`:   one of the app's newest `keep` revisions uses it (so `pilot rollback` keeps working);
 *   - `run`:      a queued or running run names it;
 *   - `runtime`:  it is a recorded Node.js runtime recorded less than `graceMs` ago.
 * Everything else is deleted. A recorded runtime that no kept revision uses and that is older than
 * the grace period is deleted like any other blob (its record goes with it, see control/artifact-gc.ts).
 */

export interface GcBlob {
  readonly digest: string;
  readonly size: number;
  /** Wall-clock ms when it was stored. */
  readonly createdAt: number;
  /** The app that published it, when known (for display). */
  readonly app?: string | undefined;
}

export interface GcRevision {
  readonly number: number;
  readonly artifact: string;
  readonly imageArchive?: string | undefined;
  readonly nodeRuntime?: string | undefined;
  /** The npm paired with the runtime (its tarball's digest). */
  readonly npmPackage?: string | undefined;
}

export interface GcApp {
  readonly name: string;
  readonly activeRevision: number | undefined;
  readonly revisions: readonly GcRevision[];
}

export interface GcRollout {
  readonly app: string;
  readonly fromRevision: number | undefined;
  readonly toRevision: number;
}

export interface GcInput {
  readonly blobs: readonly GcBlob[];
  readonly apps: readonly GcApp[];
  /** Rollouts in progress (status running). */
  readonly rollouts: readonly GcRollout[];
  /** Artifacts named by runs queued or running. */
  readonly runArtifacts: readonly string[];
  /** Recorded Node.js runtimes (table node_runtimes). */
  readonly nodeRuntimes: readonly { readonly digest: string; readonly createdAt: number }[];
  readonly now: number;
  readonly settings: GcSettings;
}

export interface GcSettings {
  /** Newest revisions per app whose blobs are kept. */
  readonly keep: number;
  /** Blobs (and runtime records) younger than this are kept. */
  readonly graceMs: number;
}

export type KeepReason = 'young' | 'active' | 'rollout' | 'recent' | 'run' | 'runtime';

export interface GcPlan {
  /** Blobs to delete, largest first (digest breaks ties). */
  readonly delete: readonly GcBlob[];
  /** Why each kept blob stays. */
  readonly kept: ReadonlyMap<string, KeepReason>;
  readonly freedBytes: number;
}

export const DEFAULT_GC_SETTINGS: GcSettings = { keep: 10, graceMs: 3_600_000 };
/** The largest `keep` accepted over the API: beyond it, GC would keep practically everything. */
export const MAX_GC_KEEP = 1000;

function revisionBlobs(r: GcRevision): string[] {
  const out = [r.artifact];
  if (r.imageArchive !== undefined) out.push(r.imageArchive);
  if (r.nodeRuntime !== undefined) out.push(r.nodeRuntime);
  if (r.npmPackage !== undefined) out.push(r.npmPackage);
  return out;
}

/** Decide which blobs to delete. */
export function planArtifactGc(input: GcInput): GcPlan {
  const { now, settings } = input;
  const why = new Map<string, KeepReason>();
  const mark = (digest: string, reason: KeepReason): void => {
    if (!why.has(digest)) why.set(digest, reason);
  };
  for (const b of input.blobs) if (now - b.createdAt < settings.graceMs) mark(b.digest, 'young');
  const running = new Map<string, GcRollout[]>();
  for (const r of input.rollouts) running.set(r.app, [...(running.get(r.app) ?? []), r]);
  for (const app of input.apps) {
    const byNumber = new Map(app.revisions.map((r) => [r.number, r]));
    const use = (n: number | undefined, reason: KeepReason): void => {
      const rev = n === undefined ? undefined : byNumber.get(n);
      if (rev) for (const d of revisionBlobs(rev)) mark(d, reason);
    };
    use(app.activeRevision, 'active');
    for (const r of running.get(app.name) ?? []) {
      use(r.toRevision, 'rollout');
      use(r.fromRevision, 'rollout');
    }
    const newest = [...app.revisions].sort((a, b) => b.number - a.number).slice(0, Math.max(0, settings.keep));
    for (const r of newest) use(r.number, 'recent');
  }
  for (const d of input.runArtifacts) mark(d, 'run');
  for (const rt of input.nodeRuntimes) if (now - rt.createdAt < settings.graceMs) mark(rt.digest, 'runtime');

  const del = input.blobs.filter((b) => !why.has(b.digest));
  del.sort((a, b) => b.size - a.size || (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
  const stored = new Set(input.blobs.map((b) => b.digest));
  const kept = new Map([...why].filter(([d]) => stored.has(d)));
  return { delete: del, kept, freedBytes: del.reduce((s, b) => s + b.size, 0) };
}
