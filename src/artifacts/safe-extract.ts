/**
 * Unpack an artifact without trusting it. node-tar only parses; every file and folder is created
 * here, by rules that admit regular files and folders with relative paths and nothing else.
 *
 *   tgz ─► gunzip (bytes counted, capped) ─► tar Parser ─► admit(entry) ─► write under partial/
 *                                                              │ refused: unsafe_archive
 *   partial/ ─► links manifest ─► folder modes ─► rename to destDir      (any error: rm partial/)
 *
 * Everything is written inside `${destDir}.partial-<random>`, which holds no symlink until the
 * links manifest is applied at the very end, so no path written can resolve outside it.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { chmod, lstat, mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { type PilotError, fail } from '../core/errors.js';
import { errno } from '../core/errno.js';
import { applyLinksManifest } from './links-manifest.js';
import { LINKS_MANIFEST, splitArchivePath } from './paths.js';

export interface ExtractLimits {
  /** Archive entries (files, folders, and refused ones) and, separately, manifest links. */
  readonly maxEntries: number;
  /** Path components in one path. */
  readonly maxDepth: number;
  /** Bytes of the decompressed tar stream actually read (headers included), not as declared. */
  readonly maxBytes: number;
  /** Characters in one path. */
  readonly maxPathLength: number;
}

export const DEFAULT_EXTRACT_LIMITS: Readonly<ExtractLimits> = {
  maxEntries: 200_000,
  maxDepth: 64,
  maxBytes: 4 * 1024 ** 3,
  maxPathLength: 4096,
};

export interface ExtractResult {
  readonly files: number;
  /** Bytes of file content written. */
  readonly bytes: number;
  /** Symlinks created from the links manifest. */
  readonly links: number;
}

const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);
const REFUSED: Readonly<Record<string, string>> = {
  SymbolicLink: 'symlink entries are not allowed (symlinks travel in .pilot-links.json)',
  Link: 'hard link entries are not allowed',
  CharacterDevice: 'device nodes are not allowed',
  BlockDevice: 'device nodes are not allowed',
  FIFO: 'fifos are not allowed',
};

/** How to treat entries an artifact may not hold. */
export interface ExtractOptions {
  /**
   * Leave symlink entries out instead of refusing the archive (nothing is created for them). For
   * third-party tarballs read for some of their files only: the official Node.js tarballs link
   * bin/npm into lib/, which Pilot does not use.
   */
  readonly skipSymlinks?: boolean;
}

type Plan = { readonly kind: 'file' | 'dir'; readonly parts: readonly string[] } | { readonly kind: 'skip' };

interface Progress {
  entries: number;
  declared: number;
  read: number;
  files: number;
  bytes: number;
  readonly dirModes: Map<string, number>;
}

/**
 * Unpack the gzip tarball `tgzFile` into `destDir`, which must not exist yet. Anything but regular
 * files and folders, any path leaving the tree, and any limit exceeded is refused with
 * unsafe_archive, and then nothing is left behind.
 */
export async function extractArtifact(
  tgzFile: string,
  destDir: string,
  limits: Partial<ExtractLimits> = {},
  opts: ExtractOptions = {},
): Promise<ExtractResult> {
  const lim: ExtractLimits = { ...DEFAULT_EXTRACT_LIMITS, ...limits };
  const dest = resolve(destDir);
  if (
    await lstat(dest).then(
      () => true,
      () => false,
    )
  ) {
    throw fail.extractTargetExists({ dest });
  }
  await mkdir(dirname(dest), { recursive: true });
  const partial = `${dest}.partial-${randomBytes(6).toString('hex')}`;
  await mkdir(partial, { mode: 0o755 });
  try {
    const p = await writeEntries(tgzFile, partial, lim, opts);
    const links = await applyLinksManifest(partial, lim);
    // Folder modes last: a read-only folder would have refused the files and links put in it.
    for (const [dir, mode] of p.dirModes) await chmod(dir, mode);
    await rename(partial, dest);
    return { files: p.files, bytes: p.bytes, links };
  } catch (e) {
    await rm(partial, { recursive: true, force: true });
    throw e;
  }
}

async function writeEntries(tgzFile: string, root: string, lim: ExtractLimits, opts: ExtractOptions): Promise<Progress> {
  const p: Progress = { entries: 0, declared: 0, read: 0, files: 0, bytes: 0, dirModes: new Map() };
  const abort = new AbortController();
  let failure: unknown;
  const stop = (e: unknown): void => {
    if (failure !== undefined) return;
    failure = e;
    abort.abort();
  };
  const unsafe = (entry: string, reason: string): PilotError => {
    const shown = entry.length > 200 ? `${entry.slice(0, 200)}…` : entry;
    return fail.unsafeArchiveEntry({ shown, reason }, { details: { entry: shown, reason, bytesRead: p.read } });
  };

  let eof = false;
  // Entries are written one at a time, in archive order: the parser hands over the next entry
  // only once this one's bytes are consumed, and `work` keeps the (async) writes in that order.
  let work = Promise.resolve();
  const writes = new SmallWrites((e, entryPath) => stop(conflictAsUnsafe(e, entryPath, unsafe)));
  const parser = new Parser({ strict: true });
  parser.on('error', (e: Error) => stop(unsafe('(archive)', `not a valid tar stream: ${e.message}`)));
  parser.on('eof', () => (eof = true));
  parser.on('meta', (meta: string) => {
    if (hidesNul(meta)) stop(unsafe('(extended header)', 'NUL byte in path'));
  });
  // Unknown entry types, and extended headers too big to read, would be skipped silently.
  parser.on('ignoredEntry', (entry: ReadEntry) => stop(unsafe(entry.path, `unsupported entry type ${entry.type}`)));
  parser.on('entry', (entry: ReadEntry) => {
    const plan = failure === undefined ? admit(entry, p, lim, opts) : ({ kind: 'skip' } as const);
    if (typeof plan === 'string') stop(unsafe(entry.path, plan));
    if (typeof plan === 'string' || plan.kind === 'skip') {
      entry.resume();
      return;
    }
    work = work
      .then(() => (failure === undefined ? writeEntry(entry, plan, root, p, abort.signal, writes) : void entry.resume()))
      .catch((e: unknown) => {
        entry.resume();
        stop(conflictAsUnsafe(e, entry.path, unsafe));
      });
  });

  const gunzip = createGunzip({ chunkSize: 64 * 1024 });
  const source = createReadStream(tgzFile, { highWaterMark: 64 * 1024 });
  // Source errors reach the loop below through gunzip; a deliberate early stop is not an error.
  pipeline(source, gunzip).catch(() => undefined);
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      p.read += chunk.length;
      if (p.read > lim.maxBytes) stop(unsafe('(archive)', `more than ${lim.maxBytes} bytes once decompressed`));
      // Past the end-of-archive marker node-tar would buffer whatever follows: stop reading.
      if (failure !== undefined || eof) break;
      if (!parser.write(chunk)) await once(parser, 'drain', { signal: abort.signal });
    }
    if (failure === undefined) {
      const ended = once(parser, 'end', { signal: abort.signal });
      parser.end();
      await ended;
    }
  } catch (e) {
    if (errno(e)?.startsWith('Z_')) stop(unsafe('(archive)', `not a valid gzip stream: ${(e as Error).message}`));
    else stop(e);
  } finally {
    source.destroy();
    gunzip.destroy();
  }
  await work;
  await writes.drain();
  if (failure !== undefined) throw failure;
  return p;
}

/** Files up to this size are read into memory whole and written beside the next ones. */
const SMALL_FILE = 256 * 1024;
const PARALLEL_WRITES = 16;

/**
 * Small files written concurrently (an artifact is mostly small files, and one at a time each
 * costs several round trips to the thread pool: about 0.6 ms a file). Names were checked before;
 * each write still opens with 'wx', so a name twice is still refused. Failures go to `fail`.
 */
class SmallWrites {
  private readonly pending = new Set<Promise<void>>();
  private readonly dirs = new Set<string>();
  constructor(private readonly fail: (e: unknown, entryPath: string) => void) {}

  /** Parent folders: each created once (entries arrive in archive order, parents first or not). */
  async parent(abs: string): Promise<void> {
    const dir = dirname(abs);
    if (this.dirs.has(dir)) return;
    await mkdir(dir, { recursive: true, mode: 0o755 });
    this.dirs.add(dir);
  }

  async add(entryPath: string, write: () => Promise<void>): Promise<void> {
    while (this.pending.size >= PARALLEL_WRITES) await Promise.race(this.pending);
    const w: Promise<void> = write()
      .catch((e: unknown) => this.fail(e, entryPath))
      .finally(() => this.pending.delete(w));
    this.pending.add(w);
  }

  async drain(): Promise<void> {
    while (this.pending.size > 0) await Promise.all(this.pending);
  }
}

/** Decide what to do with an entry, or say why it is refused. Counts it against the limits. */
function admit(entry: ReadEntry, p: Progress, lim: ExtractLimits, opts: ExtractOptions): Plan | string {
  p.entries += 1;
  if (p.entries > lim.maxEntries) return `more than ${lim.maxEntries} entries`;
  if (opts.skipSymlinks && entry.type === 'SymbolicLink') return { kind: 'skip' };
  const refused = REFUSED[entry.type];
  if (refused !== undefined) return refused;
  const isFile = FILE_TYPES.has(entry.type);
  if (!isFile && entry.type !== 'Directory') return `unsupported entry type ${entry.type}`;
  const split = splitArchivePath(entry.path, lim);
  if ('problem' in split) return split.problem;
  if (split.parts.length === 0) return isFile ? 'a file cannot replace the archive root' : { kind: 'skip' };
  if (isFile) {
    // The declared size is checked up front so a huge entry is refused before its bytes are read;
    // the decompressed stream is counted anyway, declarations are not trusted.
    p.declared += entry.size;
    if (p.declared > lim.maxBytes) return `entries declare more than ${lim.maxBytes} bytes`;
  }
  return { kind: isFile ? 'file' : 'dir', parts: split.parts };
}

async function writeEntry(
  entry: ReadEntry,
  plan: Plan,
  root: string,
  p: Progress,
  signal: AbortSignal,
  writes: SmallWrites,
): Promise<void> {
  if (plan.kind === 'skip') return;
  const abs = join(root, ...plan.parts);
  if (plan.kind === 'dir') {
    entry.resume();
    await mkdir(abs, { recursive: true, mode: 0o755 });
    p.dirModes.set(abs, dirMode(entry.mode));
    return;
  }
  await writes.parent(abs);
  const mode = fileMode(entry.mode);
  const manifest = plan.parts.length === 1 && plan.parts[0] === LINKS_MANIFEST;
  if (entry.size <= SMALL_FILE) {
    // Read whole (the parser moves on to the next entry), written beside the next ones.
    const chunks: Buffer[] = [];
    let got = 0;
    await new Promise<void>((res, rej) => {
      entry.on('data', (c: Buffer) => {
        got += c.length;
        if (got <= SMALL_FILE) chunks.push(c);
      });
      entry.once('end', res);
      entry.once('error', rej);
    });
    if (got > SMALL_FILE) throw fail.entryLongerThanDeclared({ path: plan.parts.join('/') });
    await writes.add(entry.path, async () => {
      if (signal.aborted) return;
      // 'wx': a second entry with the same name is refused, never written over the first.
      const fh = await open(abs, 'wx', mode);
      try {
        await fh.chmod(mode); // the umask may have dropped bits the archive asked for
        await fh.writeFile(Buffer.concat(chunks, got));
      } finally {
        await fh.close();
      }
    });
    if (!manifest) {
      p.files += 1;
      p.bytes += entry.size;
    }
    return;
  }
  // 'wx': a second entry with the same name is refused, never written over the first.
  const fh = await open(abs, 'wx', mode);
  const ws = fh.createWriteStream();
  const stop = (): void => void ws.destroy();
  signal.addEventListener('abort', stop, { once: true });
  try {
    await fh.chmod(mode); // the umask may have dropped bits the archive asked for
    await new Promise<void>((res, rej) => {
      ws.once('error', rej);
      ws.once('close', res);
      entry.pipe(ws);
    });
  } finally {
    signal.removeEventListener('abort', stop);
    ws.destroy();
  }
  if (signal.aborted) return;
  // The links manifest is Pilot's bookkeeping, consumed and deleted after the entries.
  if (manifest) return;
  p.files += 1;
  p.bytes += entry.size;
}

/**
 * Whether an extended header (pax records, or a GNU long name) holds a name with a NUL followed by
 * more text: node-tar cuts names at the first NUL, so the rest would be silently dropped. Other
 * pax values (xattrs) may legitimately hold binary NULs.
 */
function hidesNul(meta: string): boolean {
  if (!/^\d+ /.test(meta)) return /\0[^\0]/.test(meta);
  return meta.split('\n').some((line) => /^\d+ (path|linkpath)=/.test(line) && line.includes('\0'));
}

/** Owner keeps read/write, everyone keeps execute; setuid, setgid, sticky and group/world write go. */
function fileMode(mode: number | undefined): number {
  return ((mode ?? 0o644) & 0o755) | 0o600;
}

function dirMode(mode: number | undefined): number {
  return ((mode ?? 0o755) & 0o755) | 0o700;
}

/** Name clashes between entries (same path twice, a file where a folder is) are the archive's fault. */
function conflictAsUnsafe(e: unknown, entry: string, unsafe: (entry: string, reason: string) => PilotError): unknown {
  const code = errno(e);
  const syscall = typeof e === 'object' && e !== null && 'syscall' in e ? e.syscall : undefined;
  if (code === 'EEXIST' && syscall === 'open') return unsafe(entry, 'a file or folder of that name was already extracted');
  if (code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR') return unsafe(entry, 'the path clashes with an earlier entry');
  return e;
}
