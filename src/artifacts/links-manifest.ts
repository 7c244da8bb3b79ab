/**
 * Recreate the symlinks listed in an extracted tree's `.pilot-links.json`, refusing any that could
 * point or be placed outside the tree. Runs after every archive entry is written, inside the
 * private partial folder, so nothing else is creating files there at the same time.
 */
import { lstat, mkdir, readFile, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { type PilotError, fail } from '../core/errors.js';
import { errno } from '../core/errno.js';
import { LINKS_MANIFEST, linkTargetProblem, splitArchivePath, type LinkRecord, type PathLimits } from './paths.js';

/** A manifest bigger than this is not a list of symlinks. */
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

export interface LinkLimits extends PathLimits {
  readonly maxEntries: number;
}

/** Create the links listed in root's manifest, then delete the manifest; returns how many. */
export async function applyLinksManifest(root: string, limits: LinkLimits): Promise<number> {
  const file = join(root, LINKS_MANIFEST);
  const st = await lstat(file).catch((e: unknown) => {
    if (errno(e) === 'ENOENT') return undefined;
    throw e;
  });
  if (st === undefined) return 0;
  if (!st.isFile()) throw unsafe(LINKS_MANIFEST, 'the links manifest is not a regular file');
  if (st.size > MAX_MANIFEST_BYTES) throw unsafe(LINKS_MANIFEST, `the links manifest is larger than ${MAX_MANIFEST_BYTES} bytes`);
  const links = parseManifest(await readFile(file, 'utf8'), limits.maxEntries);
  await rm(file);
  for (const l of links) await createLink(root, l, limits);
  return links.length;
}

function parseManifest(text: string, maxEntries: number): LinkRecord[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw unsafe(LINKS_MANIFEST, 'the links manifest is not valid JSON');
  }
  const isRecord = (x: unknown): x is LinkRecord =>
    typeof x === 'object' && x !== null && typeof (x as LinkRecord).path === 'string' && typeof (x as LinkRecord).target === 'string';
  if (!Array.isArray(value) || !value.every(isRecord)) {
    throw unsafe(LINKS_MANIFEST, 'the links manifest must be an array of { "path": string, "target": string }');
  }
  if (value.length > maxEntries) throw unsafe(LINKS_MANIFEST, `the links manifest lists more than ${maxEntries} links`);
  return value;
}

async function createLink(root: string, l: LinkRecord, limits: LinkLimits): Promise<void> {
  const where = `${LINKS_MANIFEST}: ${l.path}`;
  const split = splitArchivePath(l.path, limits);
  if ('problem' in split) throw unsafe(where, split.problem);
  if (split.parts.length === 0) throw unsafe(where, 'a link cannot replace the archive root');
  const problem = linkTargetProblem(split.parts, l.target, limits.maxPathLength);
  if (problem !== undefined) throw unsafe(where, `${problem} (${JSON.stringify(l.target)})`);
  // Every ancestor must be a real folder. A link made earlier in this loop could otherwise stand
  // in for one, and the new link (and the target's leading "..") would land wherever it points.
  let dir = root;
  for (const part of split.parts.slice(0, -1)) {
    dir = join(dir, part);
    const st = await lstat(dir).catch((e: unknown) => {
      if (errno(e) === 'ENOENT') return undefined;
      throw e;
    });
    if (st === undefined) await mkdir(dir, { mode: 0o755 });
    else if (!st.isDirectory()) throw unsafe(where, `its parent ${JSON.stringify(part)} is a symlink or a file, not a folder`);
  }
  try {
    await symlink(l.target, join(dir, split.parts[split.parts.length - 1]!));
  } catch (e) {
    if (errno(e) === 'EEXIST') throw unsafe(where, 'something already exists at the link path');
    throw e;
  }
}

function unsafe(entry: string, reason: string): PilotError {
  return fail.unsafeArchive({ entry, reason }, { details: { entry, reason } });
}
