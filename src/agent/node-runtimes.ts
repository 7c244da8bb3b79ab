/**
 * The node's Node.js runtime cache: the runtime a revision pins is downloaded from the artifact
 * repository once per digest (sha256-verified), unpacked safely, checked to start on this machine
 * (`node --version`), and shared by every instance that runs on it. Apps on one node can run
 * different versions side by side: each instance gets its own runtime's bin first on PATH, then the
 * bin of the npm paired with it (npm/<digest>, fetched the same way), so `npm start` runs that npm.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ArtifactClient } from '../artifacts/client.js';
import type { NodeRuntimeRef } from '../core/types.js';
import type { LocalRuntimeCache } from '../node-runtime/local-cache.js';
import { nodePlatform, runtimePackage } from '../node-runtime/platform.js';

export class NodeRuntimeCache {
  /**
   * Loaded when an instance first pins a runtime: the cache's unpacking code (tar, semver) is
   * memory an agent that never runs a pinned runtime does not pay for.
   */
  private cache: Promise<LocalRuntimeCache> | undefined;
  private loaded: LocalRuntimeCache | undefined;
  /** Digests asked for while the cache module loads: they count as fetching (the cache GC keeps them). */
  private readonly waiting = new Map<string, number>();

  constructor(
    private readonly dir: string,
    private readonly client: () => ArtifactClient,
  ) {
    // The folders the cache uses, made at start as before (the cache's constructor makes them too).
    for (const d of ['tarballs', 'node', 'npm', 'downloads']) mkdirSync(join(dir, d), { recursive: true });
  }

  /** True while the runtime is being fetched or unpacked. */
  fetching(digest: string): boolean {
    return this.waiting.has(digest) || (this.loaded?.fetching(digest) ?? false);
  }

  private async local(digest: string): Promise<LocalRuntimeCache> {
    if (this.loaded) return this.loaded;
    this.waiting.set(digest, (this.waiting.get(digest) ?? 0) + 1);
    try {
      this.cache ??= import('../node-runtime/local-cache.js').then(({ LocalRuntimeCache }) => new LocalRuntimeCache(this.dir));
      this.loaded = await this.cache;
      return this.loaded;
    } finally {
      const n = this.waiting.get(digest)! - 1;
      if (n === 0) this.waiting.delete(digest);
      else this.waiting.set(digest, n);
    }
  }

  /**
   * The PATH folders of the pinned runtime and its npm (when the revision pairs one), fetching,
   * unpacking and checking them first if needed.
   */
  async binDirs(ref: NodeRuntimeRef): Promise<string[]> {
    const cache = await this.local(ref.digest);
    const node = (await cache.ensureFromRepository(ref.digest, { pkg: runtimePackage(nodePlatform()), version: ref.version }, this.client))
      .binDir;
    if (!ref.npm) return [node];
    const npm = await cache.ensureNpmFromRepository(ref.npm.digest, { version: ref.npm.version, nodeBinDir: node }, this.client);
    return [node, npm.binDir];
  }
}
