/**
 * Pruning devDependencies, replayed from the build cache. `npm prune --omit=dev` (pnpm prune, yarn's
 * production install) costs 0.3–2 s of package-manager start-up and tree walking on every build, for
 * a result fixed by the tree it starts from. The first prune of a cache entry is recorded in the entry
 * (`prune.json`): the tree before (paths, types, sizes, link targets), the paths it removed, the small
 * files it wrote (npm's hidden lockfile), the tree after. A later build restored from that entry whose
 * tree is exactly the recorded "before" (the build commands did not change node_modules) applies the
 * record and checks the tree is then the recorded "after"; any difference runs the real prune.
 */
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

const RECORD = 'prune.json';
const MAX_WRITTEN_BYTES = 4 * 1024 * 1024;
const MAX_WRITTEN_FILES = 200;

export interface TreeListing {
  /** relative path → `d`, `l:<target>` or `f:<size>:<mtime ms>` */
  readonly entries: Map<string, string>;
  readonly digest: string;
  readonly files: number;
  readonly bytes: number;
}

export interface PruneRecord {
  readonly format: 1;
  readonly argv: readonly string[];
  readonly before: string;
  readonly after: string;
  /** Top-most paths (relative to node_modules) the prune removed. */
  readonly removed: readonly string[];
  /** Files the prune created or rewrote: relative path → base64 content and mode. */
  readonly written: Readonly<Record<string, { readonly data: string; readonly mode: number }>>;
}

/** Every path under `dir` with its type, size and link target; the digest leaves out times (a copy keeps them, but not a rewrite). */
export async function listTree(dir: string): Promise<TreeListing> {
  const entries = new Map<string, string>();
  const hash = createHash('sha256');
  let files = 0;
  let bytes = 0;
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(path.join(dir, rel)).catch(() => [] as string[])).sort();
    for (const name of names) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const st = await lstat(path.join(dir, r));
      if (st.isSymbolicLink()) {
        const v = `l:${await readlink(path.join(dir, r))}`;
        entries.set(r, v);
        hash.update(`${r}\0${v}\n`);
      } else if (st.isDirectory()) {
        entries.set(r, 'd');
        hash.update(`${r}\0d\n`);
        await walk(r);
      } else {
        files++;
        bytes += st.size;
        entries.set(r, `f:${st.size}:${Math.round(st.mtimeMs)}`);
        hash.update(`${r}\0f:${st.size}\n`);
      }
    }
  };
  await walk('');
  return { entries, digest: hash.digest('hex'), files, bytes };
}

/** What a prune did, from the trees before and after it; undefined when it wrote too much to record. */
export async function recordPrune(
  nm: string,
  argv: readonly string[],
  before: TreeListing,
  after: TreeListing,
): Promise<PruneRecord | undefined> {
  const removed: string[] = [];
  for (const p of before.entries.keys()) {
    if (after.entries.has(p)) continue;
    const parent = p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '';
    if (parent === '' || after.entries.has(parent)) removed.push(p); // top-most only
  }
  const written: Record<string, { data: string; mode: number }> = {};
  let size = 0;
  for (const [p, v] of after.entries) {
    if (!v.startsWith('f:') || before.entries.get(p) === v) continue;
    const file = path.join(nm, p);
    const data = await readFile(file);
    size += data.length;
    if (size > MAX_WRITTEN_BYTES || Object.keys(written).length >= MAX_WRITTEN_FILES) return undefined;
    written[p] = { data: data.toString('base64'), mode: (await lstat(file)).mode & 0o777 };
  }
  // A link or folder the prune created or changed cannot be replayed from file contents.
  for (const [p, v] of after.entries) if (!v.startsWith('f:') && before.entries.get(p) !== v) return undefined;
  return { format: 1, argv: [...argv], before: before.digest, after: after.digest, removed, written };
}

/** A relative path that stays inside node_modules. */
function inside(p: string): boolean {
  return p.length > 0 && !path.isAbsolute(p) && !p.split('/').some((s) => s === '..' || s === '.' || s === '');
}

export async function readRecord(entry: string): Promise<PruneRecord | undefined> {
  try {
    const r = JSON.parse(await readFile(path.join(entry, RECORD), 'utf8')) as PruneRecord;
    if (
      r.format !== 1 ||
      !Array.isArray(r.argv) ||
      typeof r.before !== 'string' ||
      typeof r.after !== 'string' ||
      !Array.isArray(r.removed)
    )
      return undefined;
    if (!r.removed.every((p) => typeof p === 'string' && inside(p))) return undefined;
    if (typeof r.written !== 'object' || r.written === null || !Object.keys(r.written).every(inside)) return undefined;
    return r;
  } catch {
    return undefined;
  }
}

export async function saveRecord(entry: string, record: PruneRecord): Promise<void> {
  const tmp = path.join(entry, `${RECORD}.${process.pid}.tmp`);
  await writeFile(tmp, JSON.stringify(record));
  await rename(tmp, path.join(entry, RECORD));
}

/**
 * Apply `record` to node_modules if the tree is the one it was recorded on; the tree after, when it
 * is exactly the recorded result. Undefined: nothing was changed (the tree differs) or the result
 * differs (the caller runs the real prune, which finishes the job either way).
 */
export async function replayPrune(nm: string, record: PruneRecord, before: TreeListing): Promise<TreeListing | undefined> {
  if (before.digest !== record.before) return undefined;
  for (const p of record.removed) await rm(path.join(nm, p), { recursive: true, force: true });
  for (const [p, w] of Object.entries(record.written)) {
    await rm(path.join(nm, p), { recursive: true, force: true }); // never written through a link
    await writeFile(path.join(nm, p), Buffer.from(w.data, 'base64'), { mode: w.mode });
  }
  const after = await listTree(nm);
  return after.digest === record.after ? after : undefined;
}
