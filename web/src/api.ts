/**
 * The dashboard's only way to the server: the public REST API (/api/v1), same origin, with the
 * session cookie (HttpOnly: this code never sees it) and the session's CSRF token (kept in memory
 * only, sent as x-pilot-csrf on every call). An answer's `{ error: { code, message, hint } }` becomes
 * an ApiError; a 401 also tells the app to show sign-in.
 */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly hint: string | undefined,
  ) {
    super(message);
  }
}

let csrf = '';
const signedOutListeners = new Set<() => void>();

/** Called when the server says the session is gone (expired, signed out elsewhere, restarted). */
export function onSignedOut(fn: () => void): () => void {
  signedOutListeners.add(fn);
  return () => signedOutListeners.delete(fn);
}

export function setCsrf(token: string): void {
  csrf = token;
}

/** Headers of every call: JSON and the CSRF proof (harmless on reads). */
export function apiHeaders(extra: Record<string, string> = {}): Record<string, string> {
  return { 'x-pilot-csrf': csrf, ...extra };
}

/** An ApiError from a failed answer (JSON error body, or whatever text came). */
export async function errorOf(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => '');
  try {
    const e = (JSON.parse(text) as { error?: { code?: string; message?: string; hint?: string } }).error;
    if (e?.message) return new ApiError(res.status, e.code ?? 'unknown', e.message, e.hint);
  } catch {
    // not JSON: a proxy's page or an empty answer
  }
  return new ApiError(
    res.status,
    'http_' + res.status,
    `${res.status} ${res.statusText}`.trim() + (text ? `: ${text.slice(0, 200)}` : ''),
    undefined,
  );
}

/** The server said 401: forget the CSRF token and show sign-in. */
export function signedOut(): void {
  csrf = '';
  for (const fn of signedOutListeners) fn();
}

/** Call the API; resolve to its JSON (undefined for 204), or reject with an ApiError. */
export async function api<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers: apiHeaders(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      ...(signal ? { signal } : {}),
    });
  } catch (err) {
    if (signal?.aborted) throw err;
    throw new ApiError(
      0,
      'unreachable',
      'the Pilot server did not answer',
      'Is `pilot up` (or `pilot server`) running? The page retries on the next action.',
    );
  }
  if (res.status === 401 && path !== '/api/v1/session') signedOut();
  if (!res.ok) throw await errorOf(res);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

/** Sign in: the token goes in a POST body, once; the server answers with a cookie and the CSRF token. */
export async function signIn(token: string): Promise<void> {
  const s = await api<{ csrf: string }>('POST', '/api/v1/session', { token });
  setCsrf(s.csrf);
}

/** Whether a session exists (reloading the page keeps it); loads its CSRF token. */
export async function resume(): Promise<boolean> {
  try {
    const s = await api<{ csrf: string }>('GET', '/api/v1/session');
    setCsrf(s.csrf);
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return false;
    throw err;
  }
}

export async function signOut(): Promise<void> {
  try {
    await api('DELETE', '/api/v1/session');
  } finally {
    signedOut();
  }
}

/**
 * A followed text stream (live logs): calls `line` for each line until aborted or the server ends
 * it; resolves when it ends, rejects with an ApiError when refused.
 */
export async function followText(path: string, line: (l: string) => void, signal: AbortSignal): Promise<void> {
  const res = await fetch(path, { credentials: 'same-origin', headers: apiHeaders(), signal });
  if (res.status === 401) signedOut();
  if (!res.ok || !res.body) throw await errorOf(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let rest = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const parts = (rest + value).split('\n');
    rest = parts.pop() ?? '';
    for (const p of parts) line(p);
  }
  if (rest) line(rest);
}
