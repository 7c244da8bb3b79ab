/**
 * The node's Node.js runtime cache: the runtime a revision pins is downloaded from the artifact
 * repository once per digest (sha256-verified), unpacked safely, checked to start on this machine
 * (`node --version`), and shared by every instance that runs on it. Apps on one node can run
 * different versions side by side: each instance gets its own runtime's bin first on PATH, then the
 * bin of the npm paired with it (npm/<digest>, fetched the same way), so `npm start` runs that npm.
 */
import type { ArtifactClient } from '../artifacts/client.js';
import type { NodeRuntimeRef } from '../core/types.js';
import { LocalRuntimeCache } from '../node-runtime/local-cache.js';
import { nodePlatform, runtimePackage } from '../node-runtime/platform.js';

export class NodeRuntimeCache {
  private readonly cache: LocalRuntimeCache;

  constructor(
    dir: string,
    private readonly client: () => ArtifactClient,
  ) {
    this.cache = new LocalRuntimeCache(dir);
  }

  /** True while the runtime is being fetched or unpacked. */
  fetching(digest: string): boolean {
    return this.cache.fetching(digest);
  }

  /**
   * The PATH folders of the pinned runtime and its npm (when the revision pairs one), fetching,
   * unpacking and checking them first if needed.
   */
  async binDirs(ref: NodeRuntimeRef): Promise<string[]> {
    const node = (
      await this.cache.ensureFromRepository(ref.digest, { pkg: runtimePackage(nodePlatform()), version: ref.version }, this.client)
    ).binDir;
    if (!ref.npm) return [node];
    const npm = await this.cache.ensureNpmFromRepository(ref.npm.digest, { version: ref.npm.version, nodeBinDir: node }, this.client);
    return [node, npm.binDir];
  }
}
