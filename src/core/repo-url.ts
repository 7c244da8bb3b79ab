/**
 * Which repository URLs Pilot will hand to git, and which push payloads name the app's repository.
 * Only https://, ssh://, scp-like git@host:path, file:// and absolute local paths; never a
 * transport helper (`ext::`, `fd::`), never anything git could read as an option. Pure.
 */
import { fail } from './errors.js';

const SCP_LIKE = /^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!-)[A-Za-z0-9._~/-]+$/;
const UNSAFE_CHARS = /[\s\u0000-\u001f\u007f]/;

/** Why `url` is refused, or undefined when it is acceptable. */
export function repoUrlProblem(url: string): string | undefined {
  if (url.length === 0 || url.length > 2048) return 'must be 1 to 2048 characters';
  if (url.startsWith('-')) return 'must not start with "-"';
  if (UNSAFE_CHARS.test(url)) return 'must not contain spaces or control characters';
  if (url.includes('::')) return 'git transport helpers ("ext::", "fd::" …) are not allowed';
  if (url.startsWith('/')) return url.split('/').includes('..') ? 'must not contain ".."' : undefined;
  if (SCP_LIKE.test(url)) return undefined;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'must be https://…, ssh://…, git@host:path, file://… or an absolute path';
  }
  if (u.protocol === 'file:') return u.host === '' || u.host === 'localhost' ? undefined : 'file:// URLs must name a local path';
  if (u.protocol !== 'https:' && u.protocol !== 'ssh:') return `scheme ${u.protocol} is not allowed (https, ssh, file)`;
  if (u.hostname === '' || u.hostname.startsWith('-')) return 'must name a host';
  if (u.password !== '') return 'must not carry a password (use a deploy key or a credential helper)';
  return undefined;
}

export function assertRepoUrl(url: unknown): string {
  if (typeof url !== 'string') throw fail.repoNotString();
  const problem = repoUrlProblem(url);
  if (problem) throw fail.repositoryRefused({ url: url.slice(0, 200), problem });
  return url;
}

/** A comparable form: host + path, lowercased host, no scheme, user, ".git" or trailing slash. */
export function normalizeRepo(url: string): string {
  let s = url.trim();
  const scp = /^[^@/]+@([^:/]+):(.*)$/.exec(s);
  if (scp) s = `${scp[1]!.toLowerCase()}/${scp[2]}`;
  else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) {
    try {
      const u = new URL(s);
      s = u.protocol === 'file:' ? decodeURIComponent(u.pathname) : `${u.hostname.toLowerCase()}${u.pathname}`;
    } catch {
      return s;
    }
  }
  return s
    .replace(/\/+$/, '')
    .replace(/\.git$/, '')
    .replace(/\/+$/, '');
}

/** True when a push payload's repository is the app's repository (any of its URLs, or full_name). */
export function sameRepository(appRepo: string, payloadRepo: Readonly<Record<string, unknown>>): boolean {
  const want = normalizeRepo(appRepo);
  for (const key of ['clone_url', 'ssh_url', 'git_url', 'html_url', 'url', 'svn_url']) {
    const v = payloadRepo[key];
    if (typeof v === 'string' && normalizeRepo(v) === want) return true;
  }
  const full = payloadRepo['full_name'];
  return typeof full === 'string' && /^[\w.-]+\/[\w.-]+$/.test(full) && want.toLowerCase().endsWith('/' + full.toLowerCase());
}
