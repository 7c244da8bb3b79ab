/**
 * The node's artifact cache: each artifact is downloaded once (digest-verified), unpacked safely
 * into releases/<hex>, and shared by every instance of that revision. Concurrent requests for the
 * same digest share one download.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ArtifactClient } from '../artifacts/client.js';

export class ReleaseCache {
  private readonly inflight = new Map<string, Promise<string>>();

  constructor(
    private readonly dir: string,
    private readonly client: () => ArtifactClient,
  ) {
    mkdirSync(join(dir, 'downloads'), { recursive: true });
  }

  /** The folder holding the unpacked artifact, fetching and unpacking it first if needed. */
  ensure(digest: string): Promise<string> {
    const dest = join(this.dir, digest.replace('sha256:', ''));
    if (existsSync(dest)) return Promise.resolve(dest);
    let p = this.inflight.get(digest);
    if (!p) {
      p = this.fetch(digest, dest).finally(() => this.inflight.delete(digest));
      this.inflight.set(digest, p);
    }
    return p;
  }

  /** True while the digest is being downloaded or unpacked (the cache GC leaves it alone). */
  fetching(digest: string): boolean {
    return this.inflight.has(digest);
  }

  private async fetch(digest: string, dest: string): Promise<string> {
    const file = join(this.dir, 'downloads', `${digest.replace('sha256:', '')}.tgz`);
    try {
      await this.client().download(digest, file);
      // tar loads with the first release this agent unpacks, not at start (an idle agent stays smaller).
      const { extractArtifact } = await import('../artifacts/safe-extract.js');
      await extractArtifact(file, dest);
      return dest;
    } finally {
      await rm(file, { force: true });
    }
  }
}
