/** Artifact metadata (who published which digest, from which commit): the port and an in-memory adapter. */
import type { ArtifactMeta } from '../core/types.js';

/**
 * Where the artifact repository records metadata. Implementations must be synchronous and keyed
 * by digest; the first record for a digest wins (artifacts are immutable, so is their origin).
 */
export interface ArtifactMetaStore {
  /** Record metadata for a digest that has none yet; a second call for the same digest is ignored. */
  putMeta(m: ArtifactMeta): void;
  /** The metadata of one artifact, or undefined. */
  getMeta(digest: string): ArtifactMeta | undefined;
  /** All artifacts, or those of one app, newest first. */
  listMeta(app?: string): ArtifactMeta[];
}

/** In-memory ArtifactMetaStore for tests and benchmarks; the server uses the SQLite one. */
export class MemoryArtifactMetaStore implements ArtifactMetaStore {
  private readonly byDigest = new Map<string, ArtifactMeta>();

  putMeta(m: ArtifactMeta): void {
    if (!this.byDigest.has(m.digest)) this.byDigest.set(m.digest, { ...m });
  }

  getMeta(digest: string): ArtifactMeta | undefined {
    return this.byDigest.get(digest);
  }

  listMeta(app?: string): ArtifactMeta[] {
    const all = [...this.byDigest.values()].filter((m) => app === undefined || m.app === app);
    // Newest first; the digest breaks ties so the order is stable for equal timestamps.
    return all.sort((a, b) => b.createdAt - a.createdAt || (a.digest < b.digest ? -1 : 1));
  }
}
