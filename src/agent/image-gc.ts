/**
 * Container images this agent fetched (pulled from a registry or loaded from an archive), and their
 * removal once no local instance needs them. Only images recorded here are ever removed: base images
 * (`pilot/node:*`), images built on this machine and images another agent fetched on a shared engine
 * are never touched. The engine itself refuses to remove an image a container (of any agent) uses;
 * such an image stays recorded and is tried again at a later pass.
 *
 *   <agent home>/images/fetched.json   { "<image id>": { "app": "shop", "lastUsed": <ms> } }
 */
import { mkdirSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
import { pickUnused, DEFAULT_LOCAL_GC_POLICY, type LocalGcPolicy } from './cache-gc.js';

interface Entry {
  app?: string | undefined;
  lastUsed: number;
}

/** What the GC needs of an engine: remove an image by ID (dockerode's shape). */
export interface ImageRemover {
  getImage(id: string): { remove(opts?: object): Promise<unknown> };
}

export class FetchedImages {
  constructor(private readonly file: string) {}

  /** Record that this agent fetched (or just used) the image. */
  record(id: string, app: string | undefined, now = Date.now()): void {
    const all = this.load();
    all.set(id, { app: app ?? all.get(id)?.app, lastUsed: now });
    this.save(all);
  }

  /** Whether this agent fetched the image. */
  has(id: string): boolean {
    return this.load().has(id);
  }

  /** Stamp what is in use, then remove recorded images no local instance uses (same policy as the cache GC). */
  async collect(
    engine: ImageRemover,
    usedNow: () => ReadonlySet<string>,
    now = Date.now(),
    policy: LocalGcPolicy = DEFAULT_LOCAL_GC_POLICY,
  ): Promise<string[]> {
    const all = this.load();
    if (all.size === 0) return [];
    const inUse = usedNow();
    for (const id of inUse) {
      const e = all.get(id);
      if (e) all.set(id, { ...e, lastUsed: now });
    }
    const removed: string[] = [];
    const entries = [...all].map(([key, e]) => ({ key, app: e.app, lastUsedMs: e.lastUsed }));
    for (const id of pickUnused(entries, inUse, now, policy)) {
      if (usedNow().has(id)) continue; // assigned to an instance since the pass began
      try {
        await engine.getImage(id).remove();
        removed.push(id);
        all.delete(id);
      } catch (e) {
        const status = (e as { statusCode?: number }).statusCode;
        if (status === 404) all.delete(id); // removed by someone else: nothing to track
        // 409: a container (maybe another agent's) uses it, or it has several tags: kept, tried later.
      }
    }
    this.save(all);
    return removed;
  }

  private load(): Map<string, Entry> {
    try {
      return new Map(Object.entries(JSON.parse(readFileSync(this.file, 'utf8')) as Record<string, Entry>));
    } catch {
      return new Map();
    }
  }

  private save(all: Map<string, Entry>): void {
    mkdirSync(dirname(this.file), { recursive: true });
    writeFileSync(`${this.file}.tmp`, JSON.stringify(Object.fromEntries(all)));
    renameSync(`${this.file}.tmp`, this.file);
  }
}
