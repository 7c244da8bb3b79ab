/**
 * Build an artifact: a deterministic gzip tarball of a folder, so the same tree always gives the
 * same digest (and an unchanged build is never uploaded twice).
 */
import { createHash } from 'node:crypto';
import { open, readdir, readlink, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Header, Pack, ReadEntry } from 'tar';
import { LINKS_MANIFEST, linkTargetProblem, type LinkRecord } from './paths.js';

export interface PackResult {
  readonly digest: string;
  readonly size: number;
  /** Regular files stored (the links manifest not counted). */
  readonly files: number;
  /** Symlinks recorded in the links manifest. */
  readonly links: number;
  /** Things left out, one sentence each, for the build log. */
  readonly warnings: string[];
}

/** npm pack uses this instant too: any fixed time works, a well-known one explains itself. */
const FIXED_MTIME = new Date('1985-10-26T08:15:00.000Z');

/**
 * node-tar writes the second name of a hard-linked file as a Link entry, which the extractor
 * refuses (and pnpm trees are full of hard links). A cache that always answers "seen elsewhere,
 * outside cwd" makes it store the content under every name instead.
 */
class NoHardLinks extends Map<`${number}:${number}`, string> {
  override get(_key: `${number}:${number}`): string {
    return '\0not-under-cwd';
  }
}

interface Tree {
  readonly skip: string;
  readonly paths: string[];
  readonly links: LinkRecord[];
  readonly warnings: string[];
  files: number;
}

/**
 * Write a gzip tarball of `dir`'s contents to outFile and return its digest. Entries are sorted,
 * paths relative, owners dropped and times fixed; `.git` is left out; symlinks are listed in
 * `.pilot-links.json` instead of stored as link entries (see README).
 */
export async function packDir(dir: string, outFile: string): Promise<PackResult> {
  const root = resolve(dir);
  // An outFile inside the tree must not pack itself while being written.
  const tree: Tree = { paths: [], links: [], warnings: [], files: 0, skip: resolve(outFile) };
  await walk(root, [], tree);
  tree.paths.sort();
  tree.links.sort((a, b) => (a.path < b.path ? -1 : 1));

  const pack = new Pack({
    cwd: root,
    gzip: true,
    portable: true,
    mtime: FIXED_MTIME,
    noDirRecurse: true,
    strict: true,
    linkCache: new NoHardLinks(),
  });
  const out = await open(outFile, 'w', 0o644);
  const hash = createHash('sha256');
  let size = 0;
  try {
    const writing = (async () => {
      for await (const chunk of pack) {
        hash.update(chunk);
        size += chunk.length;
        await out.write(chunk);
      }
    })();
    for (const p of tree.paths) pack.add(p);
    if (tree.links.length > 0) pack.add(manifestEntry(tree.links));
    pack.end();
    await writing;
  } catch (e) {
    await out.close();
    await rm(outFile, { force: true });
    throw e;
  }
  await out.close();
  return { digest: `sha256:${hash.digest('hex')}`, size, files: tree.files, links: tree.links.length, warnings: tree.warnings };
}

async function walk(root: string, dirParts: readonly string[], tree: Tree): Promise<void> {
  const entries = await readdir(join(root, ...dirParts), { withFileTypes: true });
  for (const d of entries) {
    const parts = [...dirParts, d.name];
    const rel = parts.join('/');
    if (d.name === '.git' || join(root, rel) === tree.skip) continue;
    if (dirParts.length === 0 && d.name === LINKS_MANIFEST) {
      tree.warnings.push(`${rel}: left out, the name is reserved for Pilot's links manifest`);
    } else if (d.isDirectory()) {
      tree.paths.push(rel);
      await walk(root, parts, tree);
    } else if (d.isFile()) {
      tree.paths.push(rel);
      tree.files += 1;
    } else if (d.isSymbolicLink()) {
      const target = await readlink(join(root, rel));
      const problem = linkTargetProblem(parts, target);
      if (problem === undefined) tree.links.push({ path: rel, target });
      else tree.warnings.push(`${rel}: symlink to ${JSON.stringify(target)} left out (${problem})`);
    } else {
      tree.warnings.push(`${rel}: left out, not a regular file, folder or symlink`);
    }
  }
}

/** The links manifest as an in-memory tar entry (node-tar packs ReadEntry objects as they are). */
function manifestEntry(links: readonly LinkRecord[]): ReadEntry {
  const body = Buffer.from(`${JSON.stringify(links, null, 1)}\n`);
  const entry = new ReadEntry(new Header({ path: LINKS_MANIFEST, type: 'File', mode: 0o644, size: body.length, mtime: FIXED_MTIME }));
  entry.end(body);
  return entry;
}
