/** Validation of identifiers that travel through URLs, file names and logs. Pure. */
import { fail } from './errors.js';

const NAME_RE = /^[a-z][a-z0-9-]{0,62}$/;
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;
const SHA_RE = /^[a-f0-9]{40}$|^[a-f0-9]{64}$/;

/** App and node names: DNS-label-like, safe as a path segment, a host label and a log field. */
export function isValidName(name: unknown): name is string {
  return typeof name === 'string' && NAME_RE.test(name) && !name.endsWith('-');
}

export function assertName(name: unknown, what = 'app name'): string {
  if (!isValidName(name)) {
    const shown = typeof name === 'string' ? JSON.stringify(name.slice(0, 80)) : String(typeof name);
    throw fail.invalidName({ what, shown });
  }
  return name;
}

export function isDigest(d: unknown): d is string {
  return typeof d === 'string' && DIGEST_RE.test(d);
}

export function assertDigest(d: unknown): string {
  if (!isDigest(d)) {
    const shown = typeof d === 'string' ? JSON.stringify(d.slice(0, 80)) : String(typeof d);
    throw fail.invalidDigest({ shown });
  }
  return d;
}

export function isCommitSha(s: unknown): s is string {
  return typeof s === 'string' && SHA_RE.test(s);
}

/**
 * A valid app name made from a package or folder name that is not one ("01-up-and-running",
 * "My_App.v2"): lowercase, every run of other characters a "-", leading digits and dashes dropped,
 * at most 63 characters. Undefined when nothing is left.
 */
export function nameFrom(raw: string): string | undefined {
  const slug = raw
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^[^a-z]+/, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return isValidName(slug) ? slug : undefined;
}
