/**
 * Content-addressed blob store on the local filesystem.
 *
 *   root/tmp/<uuid>.part     bytes being received (never visible under a digest)
 *   root/sha256/<64 hex>     complete, fsynced, read-only blobs; never rewritten
 *   root/quarantine/<64 hex>.<ms>   blobs whose bytes no longer hash to their name (kept for a look)
 *
 * A blob appears under its digest only through link(2) from a complete, fsynced temp file, so a
 * crash leaves at worst a stale temp file (removed at the next start), never a partial blob.
 * link(2) fails instead of replacing an existing name, so concurrent puts of the same bytes are
 * safe: exactly one reports created=true and the first file stays in place.
 *
 * Healing: a stored blob can rot (disk error, a hand edit). Whenever "already stored" would be the
 * answer (a PUT of an existing digest, a HEAD through `verifyOrQuarantine`), the stored bytes are
 * re-hashed first; a blob that no longer matches is moved to quarantine/, so the name is free and
 * the bytes just received (or the next upload) take its place. Per digest, these checks run one
 * at a time, so a check never quarantines the good copy another one has just put in place.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, mkdir, open, readdir, rename, rm, stat, unlink, utimes, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fail } from '../core/errors.js';
import { assertDigest } from '../core/names.js';
import { errno } from '../core/errno.js';
import { writeHashed } from './digest.js';
import type { BlobCheck, BlobStore, OpenedBlob, PutOptions, PutResult, StoredBlob } from './blob-port.js';

/**
 * Temp files older than this are leftovers of a crash. Younger ones may belong to another store
 * instance on the same root that is receiving an upload right now, so they are left alone.
 */
const STALE_TEMP_MS = 15 * 60_000;

export type { BlobCheck, BlobStore, OpenedBlob, PutOptions, PutResult, StoredBlob } from './blob-port.js';

export class FsBlobStore implements BlobStore {
  readonly kind = 'fs';
  readonly root: string;
  readonly location: string;
  private starting: Promise<void> | undefined;
  private readonly checking = new Map<string, Promise<unknown>>();

  constructor(root: string) {
    this.root = root;
    this.location = root;
  }

  /** The folders exist (made on first use). */
  async ping(): Promise<void> {
    await this.start();
  }

  /** Nothing to release: every file is closed by the call that opened it. */
  async close(): Promise<void> {}

  /** The file holding a digest's bytes (it may not exist). Throws invalid_digest for a malformed digest. */
  path(digest: string): string {
    return join(this.root, 'sha256', assertDigest(digest).slice('sha256:'.length));
  }

  /**
   * Stream `src` into the store, hashing as it goes. `src` is not destroyed when put stops early
   * (too_large): the caller owns it, and over HTTP destroying the request would reset the socket
   * before the error answer is sent.
   */
  async put(src: Readable, opts: PutOptions = {}): Promise<PutResult> {
    const expected = opts.expectedDigest === undefined ? undefined : assertDigest(opts.expectedDigest);
    await this.start();
    const tmp = join(this.root, 'tmp', `${randomUUID()}.part`);
    try {
      const { digest, size } = await receive(src, tmp, opts.maxBytes);
      if (expected !== undefined && digest !== expected) {
        throw fail.uploadDigestMismatch({ digest, expected }, { details: { expected, actual: digest, size } });
      }
      let created = await linkNoReplace(tmp, this.path(digest));
      let healed: string | undefined;
      if (!created) {
        // "Already stored" only if the stored bytes still are what their name says.
        const check = await this.verifyOrQuarantine(digest);
        if (check.state !== 'ok') {
          healed = check.state === 'quarantined' ? check.to : undefined;
          created = await this.exclusive(digest, () => linkNoReplace(tmp, this.path(digest)));
        }
      }
      if (created) await fsyncDir(join(this.root, 'sha256'));
      else await this.touch(digest); // published again: young again for the GC's grace period
      return { digest, size, created, ...(healed === undefined ? {} : { healed }) };
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** Whether the blob is stored. */
  async has(digest: string): Promise<boolean> {
    return (await this.stat(digest)) !== undefined;
  }

  /** The blob's size, or undefined when it is not stored. */
  async stat(digest: string): Promise<{ size: number } | undefined> {
    const file = this.path(digest);
    await this.start();
    try {
      return { size: (await stat(file)).size };
    } catch (e) {
      if (errno(e) === 'ENOENT') return undefined;
      throw e;
    }
  }

  /** A stream of the blob's bytes; artifact_not_found when it is not stored. */
  async openRead(digest: string): Promise<Readable> {
    const { fh } = await this.openBlob(digest);
    return fh.createReadStream({ highWaterMark: READ_CHUNK });
  }

  /**
   * The blob opened for reading, with its size from the open file (so a GC delete in between
   * cannot make them disagree); artifact_not_found when it is not stored. The caller closes `fh`
   * (a stream made by `fh.createReadStream` closes it at its end).
   */
  async openBlob(digest: string): Promise<OpenedBlob & { fh: FileHandle }> {
    const file = this.path(digest);
    await this.start();
    let fh: FileHandle;
    try {
      fh = await open(file, 'r');
    } catch (e) {
      if (errno(e) === 'ENOENT') throw fail.artifactNotFound({ digest });
      throw e;
    }
    try {
      const size = (await fh.stat()).size;
      return {
        fh,
        size,
        read: async (start, end) => fh.createReadStream({ start, end, autoClose: false, highWaterMark: READ_CHUNK }),
        close: () => fh.close(),
      };
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /**
   * Remove a blob; false when it was not stored. unlink(2) takes the name away atomically: a reader
   * that already opened it keeps reading the bytes to the end (Linux frees them at the last close),
   * and an open after this gets artifact_not_found. Never call it for a blob something still needs:
   * the control plane decides that (control/artifact-gc.ts), inside its single writer.
   */
  async delete(digest: string): Promise<boolean> {
    const file = this.path(digest);
    await this.start();
    try {
      await unlink(file);
    } catch (e) {
      if (errno(e) === 'ENOENT') return false;
      throw e;
    }
    await fsyncDir(join(this.root, 'sha256'));
    return true;
  }

  /**
   * Mark the blob as just published (its mtime becomes now), so the GC's grace period starts again:
   * a publisher that found it already stored (HEAD, or a PUT of the same bytes) is about to deploy it.
   * False when it is not stored.
   */
  async touch(digest: string): Promise<boolean> {
    const file = this.path(digest);
    await this.start();
    const now = new Date();
    try {
      await utimes(file, now, now);
      return true;
    } catch (e) {
      if (errno(e) === 'ENOENT') return false;
      throw e;
    }
  }

  /** When the blob was last written or touched (wall-clock ms), or undefined when it is not stored. */
  async modifiedAt(digest: string): Promise<number | undefined> {
    const file = this.path(digest);
    await this.start();
    try {
      return (await stat(file)).mtimeMs;
    } catch (e) {
      if (errno(e) === 'ENOENT') return undefined;
      throw e;
    }
  }

  /** Every stored blob with its size and the time its file was written (wall-clock ms). */
  async list(): Promise<StoredBlob[]> {
    await this.start();
    const dir = join(this.root, 'sha256');
    const out: StoredBlob[] = [];
    for (const name of await readdir(dir)) {
      if (!/^[a-f0-9]{64}$/.test(name)) continue;
      const st = await stat(join(dir, name)).catch(() => undefined); // deleted meanwhile
      if (st?.isFile()) out.push({ digest: `sha256:${name}`, size: st.size, mtimeMs: st.mtimeMs });
    }
    return out;
  }

  /** Re-hash the blob on disk: true when it is stored and its bytes still match its name. */
  async verify(digest: string): Promise<boolean> {
    const file = this.path(digest);
    await this.start();
    return (await hashFile(file))?.digest === digest;
  }

  /**
   * Re-hash the stored blob; when its bytes no longer match its digest, move it to quarantine/ (the
   * name is free for the next upload). Used before answering "already stored" and by the scrub.
   */
  async verifyOrQuarantine(digest: string): Promise<BlobCheck> {
    const file = this.path(digest);
    await this.start();
    return this.exclusive(digest, async (): Promise<BlobCheck> => {
      const h = await hashFile(file);
      if (h === undefined) return { state: 'missing' };
      if (h.digest === digest) return { state: 'ok', size: h.size };
      const to = join(this.root, 'quarantine', `${digest.slice('sha256:'.length)}.${Date.now()}`);
      try {
        await rename(file, to);
      } catch (e) {
        if (errno(e) === 'ENOENT') return { state: 'missing' }; // deleted meanwhile (GC)
        throw e;
      }
      await fsyncDir(join(this.root, 'sha256'));
      return { state: 'quarantined', actual: h.digest, size: h.size, to };
    });
  }

  /** Run `fn` alone for this digest (in this process): checks and re-links never interleave. */
  private async exclusive<T>(digest: string, fn: () => Promise<T>): Promise<T> {
    const before = this.checking.get(digest) ?? Promise.resolve();
    const mine = before.catch(() => undefined).then(fn);
    this.checking.set(digest, mine);
    try {
      return await mine;
    } finally {
      if (this.checking.get(digest) === mine) this.checking.delete(digest);
    }
  }

  /** Create the layout and remove stale temp files, once per instance (again after a failure). */
  private start(): Promise<void> {
    this.starting ??= this.init().catch((e: unknown) => {
      this.starting = undefined;
      throw e;
    });
    return this.starting;
  }

  private async init(): Promise<void> {
    const tmpDir = join(this.root, 'tmp');
    await mkdir(join(this.root, 'sha256'), { recursive: true, mode: 0o700 });
    await mkdir(join(this.root, 'quarantine'), { recursive: true, mode: 0o700 });
    await mkdir(tmpDir, { recursive: true, mode: 0o700 });
    const now = Date.now();
    for (const name of await readdir(tmpDir)) {
      const file = join(tmpDir, name);
      const st = await stat(file).catch(() => undefined);
      if (st !== undefined && now - st.mtimeMs > STALE_TEMP_MS) await rm(file, { recursive: true, force: true });
    }
  }
}

/**
 * Write src to a new file at tmp (read-only mode, fsynced), hashing and counting on the way (one
 * pass, `writeHashed`). Write-back starts early (an fdatasync every SYNC_EVERY bytes, in the
 * background), so the closing fsync does not find the whole upload still in the page cache.
 */
async function receive(src: Readable, tmp: string, maxBytes: number | undefined): Promise<{ digest: string; size: number }> {
  const fh = await open(tmp, 'wx', 0o400); // read-only, and the owner's only ($PILOT_HOME is private)
  try {
    const got = await writeHashed(src, fh, {
      ...(maxBytes === undefined ? {} : { maxBytes }),
      tooLarge: () => fail.artifactTooLarge({ maxBytes: maxBytes ?? 0 }, { details: { maxBytes } }),
      syncEvery: SYNC_EVERY,
    });
    await fh.sync();
    return got;
  } finally {
    await fh.close();
  }
}

const SYNC_EVERY = 16 * 1024 * 1024;

/** Read size of blob streams: few reads, and large writes to the socket. */
export const READ_CHUNK = 1024 * 1024;

/** sha256 and size of a file, or undefined when it does not exist. */
async function hashFile(file: string): Promise<{ digest: string; size: number } | undefined> {
  const hash = createHash('sha256');
  let size = 0;
  try {
    for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 })) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
  } catch (e) {
    if (errno(e) === 'ENOENT') return undefined;
    throw e;
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

/** Give `tmp` the name `final` unless that name exists; true when this call created it. */
async function linkNoReplace(tmp: string, final: string): Promise<boolean> {
  try {
    await link(tmp, final);
    return true;
  } catch (e) {
    if (errno(e) === 'EEXIST') return false;
    throw e;
  }
}

/** Make a new directory entry durable: without it a power cut can forget the link just made. */
async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
