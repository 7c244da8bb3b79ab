/**
 * The agent's local cache GC: unpacked releases (`releases/<hex>`) and unpacked Node.js runtimes
 * (`runtimes/node/<hex>`, and the npm paired with them, `runtimes/npm/<hex>`) that no local instance uses and that were not used for a while.
 *
 * Rules (pickUnused is the pure part):
 *   - anything a local instance uses (running, starting, backing off or being removed) stays;
 *   - anything being fetched or unpacked right now stays (`busy`);
 *   - of the rest, the `keepUnusedPerApp` most recently used of each app stay (a rollback then starts
 *     without a download), and so does anything used less than `idleMs` ago;
 *   - everything else is removed.
 *
 * "Last used" is kept in `cache-gc.json` in the agent's home: each pass stamps what is in use with
 * the pass's time. A folder the file does not know (an older agent's) counts from its mtime.
 *
 * Concurrency: the agent's supervise loop runs on the same thread. Each removal re-checks "in use"
 * and "busy" and renames the folder away in the same synchronous step, so an instance assigned a
 * moment later never finds half a folder: it finds none and fetches the artifact again. The rename
 * target (`.gc-*`) is deleted afterwards, and leftovers of a crash at the next pass.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, renameSync, statSync } from 'node:fs';
import { rm, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { parseEnvDuration } from '../core/duration.js';

export type CacheKind = 'release' | 'runtime';

export interface CacheEntry {
  readonly key: string;
  /** The app that last used it, when known. */
  readonly app: string | undefined;
  readonly lastUsedMs: number;
}

export interface LocalGcPolicy {
  /** Unused entries used less than this long ago stay. Default 1 h. */
  readonly idleMs: number;
  /** Unused entries kept per app anyway, most recently used first. Default 3. */
  readonly keepUnusedPerApp: number;
}

export const DEFAULT_LOCAL_GC_POLICY: LocalGcPolicy = { idleMs: 3_600_000, keepUnusedPerApp: 3 };

/** How often and how the agent collects: PILOT_CACHE_GC_INTERVAL (10m; 0 = off), PILOT_CACHE_GC_IDLE (1h), PILOT_CACHE_GC_KEEP (3). */
export function localGcFromEnv(env: NodeJS.ProcessEnv = process.env): { intervalMs: number; policy: LocalGcPolicy } {
  const keep = env.PILOT_CACHE_GC_KEEP?.trim() ? Number(env.PILOT_CACHE_GC_KEEP) : NaN;
  return {
    intervalMs: parseEnvDuration(env.PILOT_CACHE_GC_INTERVAL) ?? 10 * 60_000,
    policy: {
      idleMs: parseEnvDuration(env.PILOT_CACHE_GC_IDLE) ?? DEFAULT_LOCAL_GC_POLICY.idleMs,
      keepUnusedPerApp: Number.isInteger(keep) && keep >= 0 ? keep : DEFAULT_LOCAL_GC_POLICY.keepUnusedPerApp,
    },
  };
}

/** Keys to remove. Pure: no clock, no I/O. */
export function pickUnused(entries: readonly CacheEntry[], inUse: ReadonlySet<string>, now: number, policy: LocalGcPolicy): string[] {
  const byApp = new Map<string, CacheEntry[]>();
  for (const e of entries) {
    if (inUse.has(e.key)) continue;
    // Per kind (release, runtime, image) and app: a runtime never takes a release's place.
    const k = `${e.key.split(':')[0]}\0${e.app ?? ''}`;
    const list = byApp.get(k);
    if (list) list.push(e);
    else byApp.set(k, [e]);
  }
  const out: string[] = [];
  for (const list of byApp.values()) {
    list.sort((a, b) => b.lastUsedMs - a.lastUsedMs || (a.key < b.key ? -1 : 1));
    list.forEach((e, i) => {
      if (i >= policy.keepUnusedPerApp && now - e.lastUsedMs >= policy.idleMs) out.push(e.key);
    });
  }
  return out.sort();
}

export interface LocalCacheGcOptions {
  /** Where "last used" is remembered. */
  readonly stateFile: string;
  readonly releasesDir: string;
  /** The runtime cache, when it is the agent's own (a cache shared with a builder is left alone). */
  readonly runtimesDir: string | undefined;
  /** What local instances use now: key (`release:<hex>` / `runtime:<hex>`) → app. */
  readonly inUse: () => ReadonlyMap<string, string>;
  /** True while the entry is being fetched or unpacked. */
  readonly busy: (kind: CacheKind, digest: string) => boolean;
  readonly policy?: LocalGcPolicy;
}

interface Remembered {
  app?: string | undefined;
  lastUsed: number;
}

export interface LocalGcResult {
  readonly removed: string[];
}

const HEX = /^[a-f0-9]{64}$/;

export class LocalCacheGc {
  private running: Promise<LocalGcResult> | undefined;

  constructor(private readonly opts: LocalCacheGcOptions) {}

  /** One pass (passes never overlap). */
  collect(now = Date.now()): Promise<LocalGcResult> {
    this.running ??= this.pass(now).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private dirs(): { kind: CacheKind; parent: string }[] {
    const out: { kind: CacheKind; parent: string }[] = [{ kind: 'release', parent: this.opts.releasesDir }];
    // npm packages paired with runtimes count as runtimes (key runtime:<hex>; digests do not collide).
    if (this.opts.runtimesDir !== undefined)
      out.push(
        { kind: 'runtime', parent: join(this.opts.runtimesDir, 'node') },
        { kind: 'runtime', parent: join(this.opts.runtimesDir, 'npm') },
      );
    return out;
  }

  private async pass(now: number): Promise<LocalGcResult> {
    const policy = this.opts.policy ?? DEFAULT_LOCAL_GC_POLICY;
    const state = this.load();
    for (const [key, app] of this.opts.inUse()) state.set(key, { app, lastUsed: now });
    const entries: CacheEntry[] = [];
    const where = new Map<string, { kind: CacheKind; parent: string; hex: string }>();
    for (const d of this.dirs()) {
      if (!existsSync(d.parent)) continue;
      for (const name of readdirSync(d.parent)) {
        if (name.startsWith('.gc-')) {
          await rm(join(d.parent, name), { recursive: true, force: true }); // left by a crash mid-removal
          continue;
        }
        if (!HEX.test(name)) continue;
        const key = `${d.kind}:${name}`;
        const known = state.get(key);
        const lastUsed = known?.lastUsed ?? safeMtime(join(d.parent, name)) ?? now;
        entries.push({ key, app: known?.app, lastUsedMs: lastUsed });
        where.set(key, { ...d, hex: name });
        if (!known) state.set(key, { lastUsed });
      }
    }
    const removed: string[] = [];
    for (const key of pickUnused(entries, new Set(this.opts.inUse().keys()), now, policy)) {
      const w = where.get(key)!;
      // Re-checked right before the rename, in one synchronous step (see the header).
      if (this.opts.inUse().has(key) || this.opts.busy(w.kind, `sha256:${w.hex}`)) continue;
      const trash = join(w.parent, `.gc-${w.hex}-${randomBytes(4).toString('hex')}`);
      try {
        renameSync(join(w.parent, w.hex), trash);
      } catch {
        continue; // gone already (another agent sharing the folder)
      }
      await rm(trash, { recursive: true, force: true });
      state.delete(key);
      removed.push(key);
    }
    for (const key of [...state.keys()]) if (!where.has(key)) state.delete(key);
    await this.save(state);
    return { removed };
  }

  private load(): Map<string, Remembered> {
    try {
      return new Map(Object.entries(JSON.parse(readFileSync(this.opts.stateFile, 'utf8')) as Record<string, Remembered>));
    } catch {
      return new Map(); // first pass, or a damaged file: fall back to folder mtimes
    }
  }

  private async save(state: Map<string, Remembered>): Promise<void> {
    const tmp = `${this.opts.stateFile}.tmp`;
    await writeFile(tmp, JSON.stringify(Object.fromEntries(state)));
    await rename(tmp, this.opts.stateFile);
  }
}

function safeMtime(p: string): number | undefined {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return undefined;
  }
}
