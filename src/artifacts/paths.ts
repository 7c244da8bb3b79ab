/**
 * Pure rules for paths inside an artifact, shared by the packer (which refuses to record what the
 * extractor would refuse) and the extractor (which trusts nothing). No I/O.
 */

/** Name of the file, at the archive root, that lists the symlinks to recreate after extraction. */
export const LINKS_MANIFEST = '.pilot-links.json';

/** One symlink recorded in the links manifest: both strings are archive-relative POSIX paths. */
export interface LinkRecord {
  readonly path: string;
  readonly target: string;
}

export interface PathLimits {
  readonly maxDepth: number;
  readonly maxPathLength: number;
}

export type PathCheck = { readonly parts: readonly string[] } | { readonly problem: string };

/**
 * Split an archive path into its components, or say why it may not be written. Empty and "."
 * components are dropped ("./a//b/" is ["a", "b"]); an empty result means the archive root.
 */
export function splitArchivePath(p: string, limits: PathLimits): PathCheck {
  if (p.includes('\0')) return { problem: 'NUL byte in path' };
  if (p.length > limits.maxPathLength) return { problem: `path longer than ${limits.maxPathLength} characters` };
  if (p.startsWith('/')) return { problem: 'absolute path' };
  const parts = p.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.includes('..')) return { problem: '".." component in path' };
  if (parts.length > limits.maxDepth) return { problem: `path deeper than ${limits.maxDepth} levels` };
  return { parts };
}

/**
 * Why a symlink at `linkParts` (already checked by splitArchivePath) may not point at `target`, or
 * undefined when it may. Allowed: a relative target made of leading ".." components followed by
 * names only, climbing no higher than the archive root.
 *
 * Why not "resolve it and check it lands inside": resolution by string is not what the kernel
 * does. In "b/../../x" where b is itself a link, ".." climbs from b's target, not from b's folder,
 * so a lexically harmless target can leave the tree. Leading ".." components are safe because they
 * climb through the link's own ancestors, which the extractor checks are real folders; names after
 * them only descend, and any link they pass through obeys this same rule.
 */
export function linkTargetProblem(linkParts: readonly string[], target: string, maxPathLength = 4096): string | undefined {
  if (target === '') return 'empty link target';
  if (target.includes('\0')) return 'NUL byte in link target';
  if (target.length > maxPathLength) return `link target longer than ${maxPathLength} characters`;
  if (target.startsWith('/')) return 'absolute link target';
  const parts = target.split('/').filter((s) => s !== '' && s !== '.');
  const ups = parts.findIndex((s) => s !== '..');
  const climb = ups === -1 ? parts.length : ups;
  if (parts.slice(climb).includes('..')) return '".." after a name in link target';
  if (climb > linkParts.length - 1) return 'link target resolves outside the tree';
  return undefined;
}
