/**
 * The build context: the app folder as a tar stream for the Engine's build API. Entries are read
 * with lstat and never followed: a symlink goes into the tar as a symlink (the daemon resolves it
 * inside the context, never on this machine), so nothing outside the folder is ever read. Paths
 * matching `.dockerignore` (Docker's own rules, @balena/dockerignore) are left out, except the
 * Dockerfile and `.dockerignore` themselves, which the daemon needs (and drops from COPY itself).
 * The order is sorted and mtimes are zeroed: the same tree gives the same context bytes.
 */
import { lstat, readdir, readFile, realpath } from 'node:fs/promises';
import { join, posix, relative, sep } from 'node:path';
import ignoreModule from '@balena/dockerignore';
import * as tar from 'tar';
import { fail } from '../core/errors.js';

// A CommonJS module (module.exports = factory) whose types declare a default export.
const ignore = ignoreModule as unknown as typeof ignoreModule.default;

export interface ContextEntry {
  /** posix path relative to the folder. */
  readonly path: string;
  readonly kind: 'file' | 'dir' | 'symlink';
}

export interface ExtraFile {
  readonly path: string;
  readonly content: string | Buffer;
}

export interface BuildContext {
  /** The tar stream to hand to engine.buildImage. */
  readonly stream: NodeJS.ReadableStream;
  readonly entries: readonly ContextEntry[];
}

/** Where a configured Dockerfile path points, checked to stay inside the folder (no `..`, no link out). */
export async function resolveDockerfile(dir: string, path: string): Promise<string> {
  const rel = posix.normalize(path.split(sep).join('/'));
  if (rel.startsWith('/') || rel === '..' || rel.startsWith('../') || rel === '.') {
    throw fail.dockerfileOutsideApp({ path });
  }
  const abs = join(dir, rel);
  let real: string;
  try {
    real = await realpath(abs);
  } catch {
    throw fail.dockerfileMissing({ rel });
  }
  const root = await realpath(dir);
  if (relative(root, real).startsWith('..') || !(await lstat(real)).isFile()) {
    throw fail.dockerfileNotRegular({ rel });
  }
  return rel;
}

/**
 * A file of the app folder read as text, or undefined when absent. A symlink or anything but a
 * regular file is refused: Pilot never reads through a link (it could lead out of the folder).
 */
export async function readRegularFile(dir: string, name: string): Promise<string | undefined> {
  let st;
  try {
    st = await lstat(join(dir, name));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if (!st.isFile()) throw fail.notRegularFile({ name, symlink: st.isSymbolicLink() });
  return readFile(join(dir, name), 'utf8');
}

/** The folder's entries that go into the context, sorted; `.dockerignore` applied. */
export async function listContext(dir: string, opts: { keep?: readonly string[] } = {}): Promise<ContextEntry[]> {
  const rules = (await readRegularFile(dir, '.dockerignore')) ?? '';
  const ig = ignore().add(rules.split(/\r?\n/));
  // With an exception rule (`!x`), a child of an ignored folder may come back: walk into it then.
  const hasExceptions = rules.split(/\r?\n/).some((l) => l.trim().startsWith('!'));
  const keep = new Set(['.dockerignore', ...(opts.keep ?? [])]);
  const out: ContextEntry[] = [];
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(join(dir, rel))).sort();
    for (const name of names) {
      const p = rel === '' ? name : `${rel}/${name}`;
      const st = await lstat(join(dir, p));
      const kind = st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : undefined;
      if (kind === undefined) continue; // sockets, fifos, devices never go into an image
      const ignored = !keep.has(p) && ig.ignores(p);
      if (kind === 'dir') {
        if (!ignored) out.push({ path: p, kind });
        // A kept file (the Dockerfile) under an ignored folder still goes in.
        if (!ignored || hasExceptions || [...keep].some((k) => k.startsWith(`${p}/`))) await walk(p);
      } else if (!ignored) {
        out.push({ path: p, kind });
      }
    }
  };
  await walk('');
  return out;
}

/** A tar stream of the listed entries (without following links), then the extra in-memory files. */
export function packContext(dir: string, entries: readonly ContextEntry[], extra: readonly ExtraFile[] = []): NodeJS.ReadableStream {
  const pack = new tar.Pack({ cwd: dir, portable: true, noMtime: true, noDirRecurse: true, follow: false });
  const extraPaths = new Set(extra.map((e) => e.path));
  for (const e of entries) if (!extraPaths.has(e.path)) pack.add(e.path);
  for (const f of extra) {
    const body = typeof f.content === 'string' ? Buffer.from(f.content, 'utf8') : f.content;
    const entry = new tar.ReadEntry(
      new tar.Header({ path: f.path, mode: 0o644, size: body.length, type: 'File', mtime: new Date(0), uid: 0, gid: 0 }),
    );
    entry.end(body);
    pack.add(entry);
  }
  pack.end();
  return pack as unknown as NodeJS.ReadableStream;
}

/** The context of `dir` for a build with the Dockerfile at `dockerfile` (relative, inside dir). */
export async function buildContext(dir: string, opts: { dockerfile?: string; extra?: readonly ExtraFile[] } = {}): Promise<BuildContext> {
  const entries = await listContext(dir, { keep: opts.dockerfile === undefined ? [] : [opts.dockerfile] });
  return { stream: packContext(dir, entries, opts.extra), entries };
}
