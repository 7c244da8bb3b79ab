/**
 * Commit statuses back to GitHub (or GitHub Enterprise): pending / success / failure on the pushed
 * commit with a link to the run. Best effort by design: a status that cannot be posted never fails
 * a run, so this module never throws; it answers `ok: false` with the reason, never with the token.
 */
import { secretMasker, sanitizeLine } from '../core/mask.js';

export type CommitState = 'pending' | 'success' | 'failure' | 'error';

export interface CommitStatusOptions {
  /** https://api.github.com (the default); GitHub Enterprise: https://HOST/api/v3. */
  readonly apiBaseUrl?: string;
  readonly token: string;
  /** `owner/repo`. */
  readonly fullName: string;
  /** Full 40-hex SHA. */
  readonly commit: string;
  readonly state: CommitState;
  /** Link shown next to the status (the run); dropped unless http(s). */
  readonly targetUrl?: string;
  /** Cut to GitHub's 140 characters, control characters removed. */
  readonly description?: string;
  /** The status's name on GitHub (default "pilot"): one per context per commit. */
  readonly context?: string;
  /** For the whole call, body included (default 10 s). */
  readonly timeoutMs?: number;
}

export interface CommitStatusResult {
  readonly ok: boolean;
  /** The HTTP status, when GitHub answered. */
  readonly status?: number;
  readonly error?: string;
}

const DEFAULT_API = 'https://api.github.com';
const DEFAULT_TIMEOUT_MS = 10_000;
const MAX_DESCRIPTION = 140; // GitHub refuses longer descriptions
const MAX_ERROR_BODY = 8192;
const NAME = /^[A-Za-z0-9_.-]{1,100}$/;
const STATES: ReadonlySet<string> = new Set<CommitState>(['pending', 'success', 'failure', 'error']);

/** POST a commit status to `{apiBaseUrl}/repos/{owner}/{repo}/statuses/{sha}`; never throws, never returns the token. */
export async function postCommitStatus(opts: CommitStatusOptions): Promise<CommitStatusResult> {
  const hide = secretMasker([opts.token]);
  try {
    const url = statusUrl(opts);
    if (typeof url !== 'string') return url;
    // A header value with a line break or a non-ASCII byte makes fetch throw a message quoting it.
    if (typeof opts.token !== 'string' || !/^[\x21-\x7e]{1,1000}$/.test(opts.token)) {
      return { ok: false, error: 'token refused: it must be 1 to 1000 visible ASCII characters' };
    }
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const body = {
      state: opts.state,
      ...(opts.targetUrl !== undefined && isHttpUrl(opts.targetUrl) ? { target_url: opts.targetUrl } : {}),
      ...(opts.description !== undefined ? { description: oneLine(opts.description, MAX_DESCRIPTION) } : {}),
      context: oneLine(opts.context ?? '', 255) || 'pilot',
    };
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${opts.token}`,
          accept: 'application/vnd.github+json',
          'x-github-api-version': '2022-11-28',
          'user-agent': 'pilot',
          'content-type': 'application/json',
        },
        body: JSON.stringify(body),
        // A redirect is reported, not followed: the token goes to the configured host and nowhere else.
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (e) {
      return { ok: false, error: hide(describeFailure(e, url, timeoutMs)) };
    }
    if (res.ok) {
      await res.body?.cancel().catch(() => undefined);
      return { ok: true, status: res.status };
    }
    const text = await readCapped(res).catch(() => '');
    return { ok: false, status: res.status, error: hide(`GitHub answered ${res.status} ${res.statusText}${explain(text, res)}`) };
  } catch (e) {
    return { ok: false, error: hide(sanitizeLine(`commit status not posted: ${String(e)}`, 300)) };
  }
}

/** The statuses URL, or the reason the inputs are refused (checked before anything is sent). */
function statusUrl(opts: CommitStatusOptions): string | CommitStatusResult {
  const parts = typeof opts.fullName === 'string' ? opts.fullName.split('/') : [];
  const [owner = '', repo = ''] = parts;
  if (parts.length !== 2 || !NAME.test(owner) || !NAME.test(repo) || [owner, repo].some((p) => p === '.' || p === '..')) {
    return {
      ok: false,
      error: `fullName ${JSON.stringify(String(opts.fullName).slice(0, 200))} refused: owner/repo expected (letters, digits, "_", ".", "-")`,
    };
  }
  if (typeof opts.commit !== 'string' || !/^[0-9a-fA-F]{40}$/.test(opts.commit)) {
    return {
      ok: false,
      error: `commit ${JSON.stringify(String(opts.commit).slice(0, 80))} refused: a full 40-character hexadecimal SHA is required`,
    };
  }
  if (!STATES.has(opts.state)) return { ok: false, error: `state ${JSON.stringify(String(opts.state).slice(0, 40))} refused` };
  const base = opts.apiBaseUrl ?? DEFAULT_API;
  const problem = apiBaseProblem(base);
  if (problem !== undefined) return { ok: false, error: `apiBaseUrl ${JSON.stringify(base.slice(0, 200))} refused: ${problem}` };
  return `${base.replace(/\/+$/, '')}/repos/${owner}/${repo}/statuses/${opts.commit.toLowerCase()}`;
}

function apiBaseProblem(base: string): string | undefined {
  let u: URL;
  try {
    u = new URL(base);
  } catch {
    return 'not a URL';
  }
  if (u.username !== '' || u.password !== '') return 'must not carry credentials';
  if (u.search !== '' || u.hash !== '') return 'must not have a query or a fragment';
  if (u.protocol === 'https:') return undefined;
  // Plain http only where nobody can listen in: a token must not cross a network in clear.
  if (u.protocol === 'http:' && isLoopback(u.hostname)) return undefined;
  return 'https is required (http only for 127.0.0.1, ::1 or localhost)';
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127(\.\d{1,3}){3}$/.test(hostname);
}

function isHttpUrl(text: string): boolean {
  try {
    const u = new URL(text);
    return u.protocol === 'https:' || u.protocol === 'http:';
  } catch {
    return false;
  }
}

/** Terminal colour sequences go, other control characters and line breaks become spaces, then the text is cut to `max` UTF-16 units, ending with "…". */
function oneLine(text: string, max: number): string {
  const flat = text
    .replace(/\x1b\[[0-?]*[ -/]*[@-~]/g, '') // build output quoted in an error message is often coloured
    .replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  if (flat.length <= max) return flat;
  let out = '';
  for (const ch of flat) {
    if (out.length + ch.length > max - 1) break; // whole code points: never half a surrogate pair
    out += ch;
  }
  return `${out}…`;
}

/** GitHub's `message` from an error answer, or the start of the body; and where a redirect pointed. */
function explain(text: string, res: Response): string {
  let msg = text;
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    if (typeof parsed.message === 'string') msg = parsed.message;
  } catch {
    // not JSON: the text itself
  }
  const location = res.status >= 300 && res.status < 400 ? res.headers.get('location') : null;
  const parts = [
    msg.trim() === '' ? '' : `: ${sanitizeLine(msg, 300)}`,
    location ? ` (redirected to ${sanitizeLine(location, 300)}, not followed)` : '',
  ];
  return parts.join('');
}

async function readCapped(res: Response): Promise<string> {
  if (res.body === null) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
    if (size >= MAX_ERROR_BODY) {
      await reader.cancel();
      break;
    }
  }
  return Buffer.concat(chunks).subarray(0, MAX_ERROR_BODY).toString('utf8');
}

function describeFailure(e: unknown, url: string, timeoutMs: number): string {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return `no answer from ${new URL(url).host} within ${timeoutMs} ms`;
  const cause = err.cause?.code ?? err.cause?.message;
  return sanitizeLine(`cannot reach ${new URL(url).host}: ${err.message}${cause ? ` (${cause})` : ''}`, 300);
}
