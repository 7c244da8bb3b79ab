/**
 * A client of one repository of an OCI distribution registry (the /v2/ HTTP API), for the OCI blob
 * store: requests with the registry's authentication, redirects, and every failure as a catalogue
 * error naming the registry and what was being done.
 *
 * Authentication follows the registry's 401 challenge (`WWW-Authenticate`): `Basic` sends the
 * username and password; `Bearer realm=…,service=…` fetches a token for
 * `repository:<repo>:pull,push,delete` from the realm (with the username and password when given)
 * and keeps it until it expires; a static token (PILOT_ARTIFACTS_TOKEN[_FILE]) is sent as the
 * bearer itself. A request whose body is a stream cannot be sent twice, so the store makes a
 * body-less request first (HEAD, POST of an upload) and the challenge is met there. Credentials
 * never appear in an error, a log line or an URL.
 */
import type { Readable } from 'node:stream';
import { fail } from '../core/errors.js';
import type { Dispatcher } from '../http/undici.js';

export interface OciCredentials {
  readonly username?: string;
  readonly password?: string;
  /** A bearer token sent as it is (a registry token, a personal access token). */
  readonly token?: string;
}

export interface OciTarget {
  /** http(s)://host[:port] */
  readonly origin: string;
  /** The repository name (`pilot`, `team/pilot`). */
  readonly repo: string;
  /** How it is shown: oci://host:port/repo (or oci+http://…). */
  readonly display: string;
}

type Body = string | Buffer | Buffer[] | Readable | AsyncIterable<Buffer> | null;

export interface CallOptions {
  readonly headers?: Record<string, string>;
  readonly body?: Body;
  /** Statuses that are answers (the caller reads them); anything else is an error. */
  readonly ok: readonly number[];
  /** Follow 307/302/301/303 (blob GETs may be sent to a storage back end). */
  readonly follow?: boolean;
}

const MAX_REDIRECTS = 5;

/** Connection-level failures: the registry is not there or went away. */
function connectionCode(e: unknown): string {
  const err = e as { code?: string; cause?: { code?: string }; message?: string };
  return err.code ?? err.cause?.code ?? err.message ?? String(e);
}

export class RegistryClient {
  readonly target: OciTarget;
  private readonly creds: OciCredentials;
  private readonly dispatcher: Dispatcher;
  private auth: { header: string; until: number } | undefined;

  constructor(target: OciTarget, creds: OciCredentials, dispatcher: Dispatcher) {
    this.target = target;
    this.creds = creds;
    this.dispatcher = dispatcher;
    if (creds.token !== undefined) this.auth = { header: `Bearer ${creds.token}`, until: Infinity };
  }

  /** `/v2/<repo>/<rest>` */
  path(rest: string): string {
    return `/v2/${this.target.repo}/${rest}`;
  }

  /**
   * One request. `where` is a path on the registry or an absolute URL (an upload's Location).
   * A 401 is answered once by authenticating (only when the body can be sent again); the answer's
   * status must be one of `ok`, else the registry's error is thrown.
   */
  async call(what: string, method: string, where: string, opts: CallOptions): Promise<Dispatcher.ResponseData> {
    let url = new URL(where, this.target.origin);
    const replayable = opts.body === undefined || opts.body === null || typeof opts.body === 'string' || Buffer.isBuffer(opts.body);
    let authenticated = false;
    for (let hop = 0; ;) {
      const sameOrigin = url.origin === this.target.origin;
      const headers: Record<string, string> = { ...opts.headers };
      if (sameOrigin && this.auth !== undefined && this.auth.until > Date.now()) headers.authorization = this.auth.header;
      let res: Dispatcher.ResponseData;
      try {
        res = await this.dispatcher.request({
          origin: url.origin,
          path: url.pathname + url.search,
          method: method as Dispatcher.HttpMethod,
          headers,
          body: (hop === 0 ? opts.body : undefined) as Dispatcher.DispatchOptions['body'],
          headersTimeout: 60_000,
          bodyTimeout: 120_000,
        });
      } catch (e) {
        throw fail.ociRegistryUnreachable({ registry: this.target.display, what, code: connectionCode(e) }, { cause: e });
      }
      if (res.statusCode === 401 && sameOrigin && !authenticated && replayable) {
        const challenge = header(res, 'www-authenticate');
        await res.body.dump();
        await this.authenticate(what, challenge, res.statusCode);
        authenticated = true;
        continue;
      }
      if (res.statusCode === 401 || res.statusCode === 403) {
        await res.body.dump();
        throw fail.ociRegistryAuth({ registry: this.target.display, what, status: res.statusCode });
      }
      if (opts.follow === true && [301, 302, 303, 307, 308].includes(res.statusCode) && hop < MAX_REDIRECTS) {
        const loc = header(res, 'location');
        await res.body.dump();
        if (loc === undefined) throw fail.ociRegistryBadAnswer({ registry: this.target.display, what, why: 'a redirect without Location' });
        url = new URL(loc, url);
        hop++;
        continue;
      }
      if (opts.ok.includes(res.statusCode)) return res;
      throw fail.ociRegistryRefused({ registry: this.target.display, what, status: res.statusCode, detail: await errorDetail(res) });
    }
  }

  /** A request whose answer is not needed beyond its status. */
  async status(
    what: string,
    method: string,
    where: string,
    opts: CallOptions,
  ): Promise<{ status: number; headers: Dispatcher.ResponseData['headers'] }> {
    const res = await this.call(what, method, where, opts);
    await res.body.dump();
    return { status: res.statusCode, headers: res.headers };
  }

  /** Meet a 401 challenge: Basic with the username/password, or a bearer token. */
  private async authenticate(what: string, challenge: string | undefined, status: number): Promise<void> {
    const refused = () => fail.ociRegistryAuth({ registry: this.target.display, what, status });
    const scheme = challenge?.split(' ', 1)[0]?.toLowerCase();
    const { username, password, token } = this.creds;
    if (scheme === 'basic') {
      if (username === undefined || password === undefined) throw refused();
      this.auth = { header: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`, until: Infinity };
      return;
    }
    if (scheme !== 'bearer') throw refused();
    if (token !== undefined) throw refused(); // the static token was sent and refused
    const params = parseChallenge(challenge!.slice('bearer'.length));
    if (params.realm === undefined) throw refused();
    let realm: URL;
    try {
      realm = new URL(params.realm);
    } catch {
      throw fail.ociRegistryBadAnswer({ registry: this.target.display, what, why: 'a bearer challenge without a usable realm' });
    }
    if (realm.protocol !== 'https:' && realm.protocol !== 'http:') throw refused();
    // The password goes to the realm: never in clear text off this machine, whatever the registry says.
    if (realm.protocol === 'http:' && !/^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/.test(realm.hostname))
      throw fail.ociRegistryBadAnswer({
        registry: this.target.display,
        what,
        why: `its token service ${realm.origin} is plain HTTP off this machine: credentials are not sent there`,
      });
    if (params.service !== undefined) realm.searchParams.set('service', params.service);
    realm.searchParams.set('scope', `repository:${this.target.repo}:pull,push,delete`);
    const headers: Record<string, string> = {};
    if (username !== undefined && password !== undefined)
      headers.authorization = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
    let res: Dispatcher.ResponseData;
    try {
      res = await this.dispatcher.request({ origin: realm.origin, path: realm.pathname + realm.search, method: 'GET', headers });
    } catch (e) {
      throw fail.ociRegistryUnreachable({ registry: realm.origin, what: 'a token request', code: connectionCode(e) }, { cause: e });
    }
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw refused();
    }
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown } = {};
    try {
      body = JSON.parse((await smallText(res, 64 * 1024)) ?? '{}') as typeof body;
    } catch {
      // not JSON: no token, said below
    }
    const got = typeof body.token === 'string' ? body.token : typeof body.access_token === 'string' ? body.access_token : undefined;
    if (got === undefined)
      throw fail.ociRegistryBadAnswer({ registry: realm.origin, what: 'a token request', why: 'no token in the answer' });
    // Renew a little early; 60 s is the spec's default lifetime.
    const life = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 60;
    this.auth = { header: `Bearer ${got}`, until: Date.now() + Math.max(5, life - 10) * 1000 };
  }
}

/** What a small answer (a manifest, a tag page, a token, an error) may weigh: distribution's manifest limit. */
export const SMALL_ANSWER_BYTES = 4 * 1024 * 1024;

/**
 * The text of a small answer, read up to `max` bytes; undefined past that (the rest is not read:
 * the connection is dropped). A registry cannot make the control plane buffer gigabytes.
 */
export async function smallText(res: Dispatcher.ResponseData, max = SMALL_ANSWER_BYTES): Promise<string | undefined> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of res.body) {
    n += (c as Buffer).length;
    if (n > max) {
      res.body.destroy();
      return undefined;
    }
    parts.push(c as Buffer);
  }
  return Buffer.concat(parts).toString('utf8');
}

/** One response header as a string. */
export function header(res: { headers: Dispatcher.ResponseData['headers'] }, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** `realm="…",service="…",scope="…"` → their values. */
export function parseChallenge(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/([A-Za-z_]+)\s*=\s*(?:"([^"]*)"|([^\s,]*))/g)) out[m[1]!.toLowerCase()] = m[2] ?? m[3] ?? '';
  return out;
}

/** The registry's error body (`{ errors: [{ code, message }] }`) in a few words. */
async function errorDetail(res: Dispatcher.ResponseData): Promise<string> {
  const text = ((await smallText(res, 64 * 1024).catch(() => '')) ?? '').slice(0, 2000);
  try {
    const errors = (JSON.parse(text) as { errors?: { code?: string; message?: string }[] }).errors ?? [];
    return errors
      .map((e) => [e.code, e.message].filter(Boolean).join(': '))
      .join('; ')
      .slice(0, 300);
  } catch {
    return text.replace(/\s+/g, ' ').trim().slice(0, 200);
  }
}
