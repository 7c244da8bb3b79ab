/**
 * A digest of a folder tree: every path, its kind, mode, size and content (or link target), sorted,
 * hashed with sha256. The build cache's manifest records it; a restore compares the copy with it.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import path from 'node:path';

/** sha256 hex of a string or bytes. */
export const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

export interface TreeDigest {
  readonly digest: string;
  readonly files: number;
  readonly bytes: number;
  /** Why the tree cannot be cached (a link out of it, a socket …); empty when it can. */
  readonly problems: readonly string[];
}

/** Digest of a folder: sorted entries, each `kind path mode size-or-target content-hash`. Links must stay inside `dir`. */
export async function treeDigest(dir: string, opts: { maxFiles?: number } = {}): Promise<TreeDigest> {
  const lines: string[] = [];
  const problems: string[] = [];
  let files = 0;
  let bytes = 0;
  const queue: string[] = [''];
  const fileJobs: { rel: string; mode: number; size: number }[] = [];
  while (queue.length > 0) {
    const rel = queue.pop()!;
    for (const d of await readdir(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel === '' ? d.name : `${rel}/${d.name}`;
      const abs = path.join(dir, r);
      if (d.isDirectory()) {
        lines.push(`d\0${r}\0${(await lstat(abs)).mode & 0o7777}\n`);
        queue.push(r);
      } else if (d.isSymbolicLink()) {
        const target = await readlink(abs);
        const resolved = path.resolve(path.dirname(abs), target);
        if (path.isAbsolute(target) || (resolved !== dir && !resolved.startsWith(dir + path.sep)))
          problems.push(`${r} links outside node_modules (→ ${target})`);
        lines.push(`l\0${r}\0${target}\n`);
      } else if (d.isFile()) {
        const s = await lstat(abs);
        fileJobs.push({ rel: r, mode: s.mode & 0o7777, size: s.size });
        files++;
        bytes += s.size;
        if (opts.maxFiles !== undefined && files > opts.maxFiles)
          return { digest: '', files, bytes, problems: [`more than ${opts.maxFiles} files`] };
      } else {
        problems.push(`${r} is not a file, folder or link`);
      }
    }
  }
  // Content hashes, a few files at a time (node_modules is thousands of small files).
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < fileJobs.length) {
      const j = fileJobs[next++]!;
      lines.push(`f\0${j.rel}\0${j.mode}\0${j.size}\0${await fileSha256(path.join(dir, j.rel), j.size)}\n`);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  lines.sort();
  return { digest: `sha256:${sha256(lines.join(''))}`, files, bytes, problems };
}

/** sha256 of a file: read at once when small (most of node_modules), streamed when large. */
async function fileSha256(file: string, size: number): Promise<string> {
  if (size <= 8 * 1024 * 1024) return sha256(await readFile(file));
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}
