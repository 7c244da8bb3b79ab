/**
 * The HAProxy configuration Pilot generates from the routing table (pure: text in, text out).
 *
 *   frontend pilot ── Host (lowercased, port stripped) ─map hosts.map─► app
 *        │ no app                         ──► 404, the embedded router's body (text or JSON by Accept)
 *        │ X-Pilot-Revision: N, pins.map has "app/N" ──► backend pin<k>_<app> (that revision's servers)
 *        ▼
 *   backend app_<app>: every upstream of every revision, server weight = the revision's share
 *        │ (roundrobin, or `balance hash var(txn.key)` + consistent hashing for a sticky split)
 *        │ no usable server               ──► 502, the embedded router's body
 *        ▼
 *   servers s1..sN: fixed slots; the Runtime API fills them (addr, port, weight, state) on a rollout
 *
 * What needs a reload (structure): the set of apps, their hosts, a sticky split starting or ending,
 * more upstreams than an app's slots. Everything a rollout changes (instances, weights, revisions,
 * drains) goes through the Runtime API (runtime.ts, haproxy-router.ts). The config always carries
 * the current slot assignment, so a reload starts the new worker with what the old one served.
 */
import { bodyTooLarge, renderError, noReadyInstance, unknownHost, upstreamFailed } from '../router/error-responses.js';
import { ACME_CHALLENGE_PREFIX, TLS_CIPHERS, TLS_MIN_VERSION } from '../router/tls.js';
import type { Route, RouteHttp } from '../core/routes.js';

/** One filled server slot: an upstream, its weight (0-256), and whether it takes new requests. */
export interface Slot {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly weight: number;
  /** ready: takes traffic; drain: finishes what it has (removed from the table); maint: none. */
  readonly state: 'ready' | 'drain' | 'maint';
}

/** A backend and its slots (index k is server `s<k+1>`; undefined: an empty slot). */
export interface BackendSlots {
  readonly name: string;
  readonly slots: readonly (Slot | undefined)[];
}

/** What one app looks like in the configuration. */
export interface AppLayout {
  readonly app: string;
  readonly hosts: readonly string[];
  readonly sticky: { readonly cookie: string } | { readonly header: string } | undefined;
  /** app_<app>: the weighted mix. */
  readonly mix: BackendSlots;
  /** pin<k>_<app>: one revision each (PIN_BACKENDS of them). */
  readonly pins: readonly BackendSlots[];
  /** pilot.yaml `http:` limits (absent: the defaults section's timeouts, no body limit). */
  readonly http?: RouteHttp | undefined;
}

export interface ConfigInput {
  readonly bind: { readonly host: string; readonly port: number };
  /** Directory of the sockets and map files. */
  readonly dir: string;
  readonly apps: readonly AppLayout[];
  /** Addresses/CIDRs whose X-Forwarded-* are believed (see router/headers.ts TrustedProxies). */
  readonly trusted: readonly string[];
  /** HAProxy's threads (nbthread); its own default, one per CPU, when absent. */
  readonly threads?: number;
  /**
   * Where a line per request goes for the traffic figures (haproxy/traffic-log.ts); absent: no log.
   * `onlyTraced`: only for the apps in `traced.map` (mode `auto`: the others are counted from `show stat`).
   */
  readonly trafficLog?: { readonly port: number; readonly key: string; readonly onlyTraced?: boolean };
  /**
   * HTTPS: a second bind of the same frontend with the certificates of `crt-list.txt` (SNI picks
   * one; none: the handshake fails), the per-host redirect (`redirect.map`) and HSTS (`hsts.map`).
   */
  readonly https?: { readonly port: number };
}

/**
 * The frontend's log: a line per request to the router process (UDP to 127.0.0.1, no syslog
 * header; haproxy/traffic-log.ts parses the fields). `%b` is the backend (`app_<app>`,
 * `pin<k>_<app>`, or the frontend `pilot` when the host is unknown); `%si:%sp` is "-:-" when no
 * server answered.
 */
export function trafficLogLines(t: { readonly port: number; readonly key: string } | undefined): string[] {
  if (t === undefined) return [];
  return [`  log 127.0.0.1:${t.port} len 1024 format raw local0 info`, `  log-format "${t.key} %b %si:%sp %ST %Ta %ts"`];
}

/** How many revisions of one app can be pinned at once (active + target or variant). */
export const PIN_BACKENDS = 2;
/** Server weight per point of a revision's share: 100 % → 200 (HAProxy allows 0-256). */
export const WEIGHT_SCALE = 2;

export const mixName = (app: string): string => `app_${app}`;
export const pinName = (app: string, k: number): string => `pin${k}_${app}`;

/** Cookie and header names that go into the configuration: an HTTP token, nothing else. */
export const TOKEN_RE = /^[A-Za-z0-9!#$&'*+.^_`|~-]{1,128}$/;
/** Hosts written to hosts.map (one per line, no whitespace). */
export const MAP_HOST_RE = /^[a-z0-9._\-[\]:]{1,253}$/;

/** Per server weight for a revision of `share` % with `n` upstreams. */
export function serverWeight(share: number, n: number): number {
  if (share <= 0 || n <= 0) return 0;
  return Math.max(1, Math.min(256, Math.round((share * WEIGHT_SCALE) / n)));
}

/** Quote a text for a double-quoted HAProxy word that is a log-format string. */
export function lfQuote(text: string): string {
  let out = '';
  for (const ch of text) {
    if (ch === '\\') out += '\\\\';
    else if (ch === '"') out += '\\"';
    else if (ch === '%') out += '%%';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '$') out += '\\$';
    else if (ch === "'") out += "\\'";
    else if (ch === '#') out += '\\#';
    else out += ch;
  }
  return `"${out}"`;
}

const WANTS_JSON = '  acl WANTS_JSON req.hdr(accept) -m reg -i \\bapplication/([a-z0-9.-]+\\+)?json\\b';
const HOLE = '@@PILOT-HOST@@';

/** A `http-request return` of one of the router's own answers, JSON when Accept names JSON. */
function ownAnswer(status: number, code: string, text: string, json: string, cond: string, hole?: string): string[] {
  const fill = (s: string, conv: string): string => {
    const parts = s.split(HOLE).map(lfQuote);
    // Rejoin the quoted pieces around the hole, which is a sample fetch of the log format.
    return parts.map((p) => p.slice(1, -1)).join(hole === undefined ? '' : `%[${hole}${conv}]`);
  };
  const common = `hdr cache-control no-store hdr x-pilot-error ${code}`;
  return [
    `  http-request return status ${status} content-type "application/json; charset=utf-8" ${common} lf-string "${fill(json, ',json(utf8s)')}" if ${cond} WANTS_JSON`,
    `  http-request return status ${status} content-type "text/plain; charset=utf-8" ${common} lf-string "${fill(text, '')}" if ${cond}`,
  ];
}

/**
 * The app's limits in its backends. HAProxy 2.6 has one server-side inactivity timeout per request
 * (`timeout server`): it is the requestTimeout (time to the response headers, 504 after it) and it
 * also bounds silences in the response body. A request that asks for a stream (Accept:
 * text/event-stream) gets max(requestTimeout, idleTimeout) instead, so Server-Sent Events may stay
 * silent for the idleTimeout. maxBody: a Content-Length over it is answered 413 before the body is
 * read. A chunked body has no length to check and HAProxy keeps no running total of a streamed one:
 * for a maxBody up to CHUNKED_CHECK_MAX_BYTES (it fits in HAProxy's 16 KiB buffer beside the head)
 * a chunked request waits for maxBody + 1 bytes of its body (or its end, or CHUNKED_WAIT_MS) before
 * it is forwarded, and more than maxBody is a 413 (`connection: close`: the rest is not read).
 * Above that size, or past the wait, a chunked body is streamed whole. Content-Length requests and
 * apps without maxBody are never held.
 */
function limitLines(a: AppLayout): string[] {
  const h = a.http;
  if (h === undefined) return [];
  const out: string[] = [];
  if (h.requestTimeoutMs !== undefined) out.push(`  timeout server ${h.requestTimeoutMs}ms`);
  if (h.idleTimeoutMs !== undefined) {
    const stream = Math.max(h.idleTimeoutMs, h.requestTimeoutMs ?? DEFAULT_SERVER_TIMEOUT_MS);
    out.push(`  http-request set-timeout server ${stream}ms if { req.hdr(accept) -m sub -i text/event-stream }`);
  }
  if (h.maxBodyBytes !== undefined) {
    const e = bodyTooLarge(a.app, h.maxBodyBytes);
    const text = renderError({}, e).body;
    const json = renderError({ accept: 'application/json' }, e).body;
    out.push(...ownAnswer(413, e.error.code, text, json, `{ req.hdr(content-length) -m int gt ${h.maxBodyBytes} }`));
    if (h.maxBodyBytes <= CHUNKED_CHECK_MAX_BYTES) {
      const chunked = '{ req.hdr(transfer-encoding) -m found }';
      out.push(
        `  http-request wait-for-body time ${CHUNKED_WAIT_MS}ms at-least ${h.maxBodyBytes + 1} if ${chunked}`,
        ...ownAnswer(413, e.error.code, text, json, `${chunked} { req.body_size gt ${h.maxBodyBytes} }`),
      );
    }
  }
  return out;
}

/** TLS 1.2 suites (`ciphers`) and TLS 1.3 ones (`ciphersuites`), the embedded router's list (router/tls.ts). */
export function tlsCipherWords(): { ciphers: string; ciphersuites: string } {
  const all = TLS_CIPHERS.split(':');
  return {
    ciphers: all.filter((c) => !c.startsWith('TLS_')).join(':'),
    ciphersuites: all.filter((c) => c.startsWith('TLS_')).join(':'),
  };
}

/** The `bind` of the HTTPS port: TLS 1.2+, the modern list, ALPN http/1.1, exact SNI only (strict-sni). */
export function httpsBind(c: Pick<ConfigInput, 'bind' | 'dir'> & { https: { port: number } }): string {
  const { ciphers, ciphersuites } = tlsCipherWords();
  const host = c.bind.host.includes(':') ? `[${c.bind.host}]` : c.bind.host;
  const min = TLS_MIN_VERSION === 'TLSv1.2' ? 'TLSv1.2' : 'TLSv1.3';
  return (
    `  bind ${host}:${c.https.port} ssl crt-list ${c.dir}/crt-list.txt strict-sni alpn http/1.1 ` +
    `ssl-min-ver ${min} ciphers ${ciphers} ciphersuites ${ciphersuites}`
  );
}

/**
 * The ACME HTTP-01 answers (`acme.map`: token → key authorization, kept by the Runtime API), on
 * either port and for any Host, as the embedded router gives them; an unknown token goes on to the app.
 */
function acmeLines(dir: string): string[] {
  const prefix = ACME_CHALLENGE_PREFIX.replace(/\./g, '\\.');
  return [
    // The prefix first: the regular expression runs only on challenge paths.
    `  http-request set-var(txn.acme) url,field(4,/),map(${dir}/acme.map) if { path_beg ${ACME_CHALLENGE_PREFIX} } { url_reg ^${prefix}[A-Za-z0-9_-]+$ }`,
    '  http-request return status 200 content-type text/plain lf-string "%[var(txn.acme)]" if { var(txn.acme) -m found }',
  ];
}

/**
 * The per-host HTTPS policy, as the embedded router applies it (router/proxy.ts): plain HTTP to a
 * host in redirect.map (a redirect asked for, and a certificate served) is a 308 to https:// (never
 * an ACME challenge path); an HTTPS answer for a host in hsts.map carries Strict-Transport-Security
 * unless the app sent its own.
 */
function policyLines(dir: string, httpsPort: number): string[] {
  const port = httpsPort === 443 ? '' : `:${httpsPort}`;
  return [
    `  http-request redirect location https://%[var(txn.host)]${port}%[pathq] code 308 if !{ ssl_fc } { var(txn.host),map(${dir}/redirect.map) -m found } !{ path_beg ${ACME_CHALLENGE_PREFIX} }`,
    `  http-request set-var(txn.hsts) var(txn.host),map(${dir}/hsts.map) if { ssl_fc }`,
    // The app's own header wins (as on the embedded router).
    '  http-after-response set-header strict-transport-security max-age=%[var(txn.hsts)] if { var(txn.hsts) -m found } !{ res.hdr(strict-transport-security) -m found }',
  ];
}

/**
 * The forwarding headers, as the embedded router sets them (router/headers.ts): a client's own
 * X-Forwarded-For, Forwarded and X-Real-IP are dropped unless it is a trusted proxy, whose
 * X-Forwarded-Proto and X-Forwarded-Host are kept; X-Forwarded-For gets the client's address
 * (`option forwardfor`). Without trusted proxies (the default) the rules are plain header writes:
 * the variables and conditions of the trusted case cost ~1 µs per request (bench/haproxy.ts).
 */
export function forwardingLines(trusted: readonly string[], https: boolean): string[] {
  if (trusted.length === 0) {
    return [
      '  http-request del-header x-forwarded-for',
      '  http-request del-header forwarded',
      '  http-request del-header x-real-ip',
      ...(https
        ? [
            '  http-request set-header x-forwarded-proto https if { ssl_fc }',
            '  http-request set-header x-forwarded-proto http if !{ ssl_fc }',
          ]
        : ['  http-request set-header x-forwarded-proto http']),
      '  http-request set-header x-forwarded-host %[req.hdr(host)]',
      '  option forwardfor',
    ];
  }
  return [
    `  acl TRUSTED src ${trusted.join(' ')}`,
    '  http-request del-header x-forwarded-for unless TRUSTED',
    '  http-request del-header forwarded unless TRUSTED',
    '  http-request del-header x-real-ip unless TRUSTED',
    '  http-request set-var(txn.fproto) req.hdr(x-forwarded-proto) if TRUSTED',
    '  http-request set-var(txn.fhost) req.hdr(x-forwarded-host) if TRUSTED',
    '  http-request set-var(txn.fproto) str(https) if { ssl_fc } !{ var(txn.fproto) -m found }',
    '  http-request set-var(txn.fproto) str(http) unless { var(txn.fproto) -m found }',
    '  http-request set-var(txn.fhost) req.hdr(host) unless { var(txn.fhost) -m found }',
    '  http-request set-header x-forwarded-proto %[var(txn.fproto)]',
    '  http-request set-header x-forwarded-host %[var(txn.fhost)]',
    '  option forwardfor',
  ];
}

/** The largest maxBody whose chunked bodies HAProxy checks (they wait in its 16 KiB buffer for maxBody + 1 bytes). */
export const CHUNKED_CHECK_MAX_BYTES = 8192;
/** How long a chunked body waits for those bytes before it is forwarded unchecked (a slow sender). */
export const CHUNKED_WAIT_MS = 10_000;

/** HAProxy's `timeout server` in the defaults section: the requestTimeout of an app that sets none. */
export const DEFAULT_SERVER_TIMEOUT_MS = 60_000;

/** The 502 body per app name, kept: an error entry per app per rendering was a fifth of a 1,000-app render. */
const noReadyCache = new Map<string, { text: string; json: string }>();
function noReadyRendered(app: string): { text: string; json: string } {
  let r = noReadyCache.get(app);
  if (r === undefined) {
    if (noReadyCache.size > 50_000) noReadyCache.clear();
    r = rendered(noReadyInstance(app));
    noReadyCache.set(app, r);
  }
  return r;
}

function rendered(e: ReturnType<typeof unknownHost>): { text: string; json: string } {
  return {
    text: renderError({}, e).body,
    json: renderError({ accept: 'application/json' }, e).body,
  };
}

function serverLines(b: BackendSlots, opts: string): string[] {
  return b.slots.map((s, k) => {
    const name = `s${k + 1}`;
    if (s === undefined) return `  server ${name} 127.0.0.1:1 weight 0 disabled ${opts}`;
    const state = s.state === 'ready' ? '' : ' disabled';
    return `  server ${name} ${s.host}:${s.port} weight ${s.weight}${state} ${opts}`;
  });
}

/** hosts.map: "host app" lines. */
export function hostsMap(apps: readonly AppLayout[]): string {
  return apps.flatMap((a) => a.hosts.filter((h) => MAP_HOST_RE.test(h)).map((h) => `${h} ${a.app}\n`)).join('');
}

/** The whole configuration. */
export function renderConfig(c: ConfigInput): string {
  const nf = rendered(unknownHost(HOLE));
  const out: string[] = [
    '# generated by Pilot (src/haproxy/config.ts): edits are overwritten at the next table change',
    'global',
    `  stats socket ${c.dir}/admin.sock mode 600 level admin expose-fd listeners`,
    ...(c.threads !== undefined ? [`  nbthread ${c.threads}`] : []),
    '  tune.bufsize 16384',
    '  tune.http.maxhdr 101',
    '',
    'defaults',
    '  mode http',
    '  option http-keep-alive',
    '  timeout connect 5s',
    '  timeout client 5m',
    '  timeout http-request 30s',
    `  timeout server ${DEFAULT_SERVER_TIMEOUT_MS / 1000}s`,
    '  timeout tunnel 1h',
    '  timeout client-fin 5s',
    '  retries 1',
    '  option redispatch 1',
    '  option abortonclose',
    '',
    'frontend pilot',
    `  bind ${c.bind.host.includes(':') ? `[${c.bind.host}]` : c.bind.host}:${c.bind.port}`,
    ...trafficLogLines(c.trafficLog),
    ...(c.https ? [httpsBind({ bind: c.bind, dir: c.dir, https: c.https })] : []),
    WANTS_JSON,
    ...forwardingLines(c.trusted, c.https !== undefined),
    '  http-request set-var(txn.host) req.hdr(host,1),lower,field(1,:)',
    `  http-request set-var(txn.app) var(txn.host),map(${c.dir}/hosts.map)`,
    // Mode `auto`: a log line only for an app in traced.map (two revisions sharing its traffic; kept by the Runtime API).
    ...(c.trafficLog?.onlyTraced ? [`  http-request set-log-level silent unless { var(txn.app),map(${c.dir}/traced.map) -m found }`] : []),
    ...acmeLines(c.dir),
    ...(c.https ? policyLines(c.dir, c.https.port) : []),
    ...ownAnswer(404, 'not_found', nf.text, nf.json, '!{ var(txn.app) -m found }', 'var(txn.host)'),
    // The pin: "app/N" in pins.map names the pin backend serving revision N (kept by the Runtime API).
    // One header lookup when the header is absent (the fetch fails, nothing is set): the rest is
    // skipped on its condition.
    '  http-request set-var(txn.rev) req.hdr(x-pilot-revision),ltrim(" "),rtrim(" ")',
    '  http-request del-header x-pilot-revision if { var(txn.rev) -m found }',
    '  http-request set-var-fmt(txn.pinkey) "%[var(txn.app)]/%[var(txn.rev)]" if { var(txn.rev) -m reg ^[0-9]+$ }',
    `  http-request set-var(txn.pinbe) var(txn.pinkey),map(${c.dir}/pins.map) if { var(txn.pinkey) -m found }`,
  ];
  for (const a of c.apps) {
    if (a.sticky === undefined) continue;
    const mine = `{ var(txn.app) -m str ${a.app} } !{ var(txn.pinbe) -m found }`;
    if ('cookie' in a.sticky) {
      out.push(
        `  http-request set-var(txn.key) req.cook(${a.sticky.cookie}) if ${mine} { req.cook(${a.sticky.cookie}) -m found }`,
        `  http-request set-var(txn.newkey) uuid(4),regsub(-,,g) if ${mine} !{ var(txn.key) -m found }`,
        `  http-request set-var(txn.key) var(txn.newkey) if ${mine} { var(txn.newkey) -m found }`,
        // Secure over HTTPS, as the embedded router's stickyCookie.
        `  http-response add-header set-cookie "${a.sticky.cookie}=%[var(txn.newkey)]; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax" if { var(txn.newkey) -m found } { var(txn.app) -m str ${a.app} } !{ ssl_fc }`,
        `  http-response add-header set-cookie "${a.sticky.cookie}=%[var(txn.newkey)]; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax; Secure" if { var(txn.newkey) -m found } { var(txn.app) -m str ${a.app} } { ssl_fc }`,
      );
    } else {
      out.push(`  http-request set-var(txn.key) req.hdr(${a.sticky.header},1) if ${mine} { req.hdr(${a.sticky.header}) -m found }`);
    }
  }
  out.push('  use_backend %[var(txn.pinbe)] if { var(txn.pinbe) -m found }', '  use_backend app_%[var(txn.app)]', '');
  for (const a of c.apps) {
    const na = noReadyRendered(a.app);
    const backend = (b: BackendSlots, balance: string): void => {
      out.push(
        `backend ${b.name}`,
        `  balance ${balance}`,
        ...(balance.startsWith('hash') ? ['  hash-type consistent'] : []),
        WANTS_JSON,
        // The limits first: a body over maxBody is a 413 whether or not an instance is ready (as
        // the embedded router, which checks it before picking an upstream).
        ...limitLines(a),
        // Not in a worker that is stopping after a reload: there nbsrv() reads 0 (the backend is
        // stopped), yet the requests it still holds are served by its servers.
        ...ownAnswer(502, 'bad_gateway', na.text, na.json, '{ nbsrv() eq 0 } !{ stopping }'),
        `  errorfile 503 ${c.dir}/unavailable-${a.app}.http`,
        `  errorfile 504 ${c.dir}/timeout-${a.app}.http`,
        ...serverLines(b, ''),
        '',
      );
    };
    backend(a.mix, a.sticky === undefined ? 'roundrobin' : 'hash var(txn.key)');
    for (const p of a.pins) backend(p, 'leastconn');
  }
  return out.join('\n') + '\n';
}

/** The raw answer HAProxy sends when every server of an app's backend failed: the router's 502. */
export function unavailableFile(app: string): string {
  const e = noReadyInstance(app);
  const { type, body } = renderError({}, e);
  return (
    `HTTP/1.1 502 Bad Gateway\r\ncontent-type: ${type}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
    `cache-control: no-store\r\nx-pilot-error: ${e.error.code}\r\nconnection: close\r\n\r\n${body}`
  );
}

/** The raw answer HAProxy sends when the app did not answer within its `timeout server`: the router's 504. */
export function timeoutFile(app: string): string {
  const e = upstreamFailed(app, { code: 'UND_ERR_HEADERS_TIMEOUT' });
  const { type, body } = renderError({}, e);
  return (
    `HTTP/1.1 504 Gateway Timeout\r\ncontent-type: ${type}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
    `cache-control: no-store\r\nx-pilot-error: ${e.error.code}\r\nconnection: close\r\n\r\n${body}`
  );
}

/** What of a route makes the structure (a change of it needs a reload). */
export function structureOf(routes: readonly Route[]): string {
  return JSON.stringify(
    routes
      .map((r) => ({ app: r.app, hosts: [...r.hosts].sort(), sticky: r.sticky?.by ?? null, http: r.http ?? null }))
      .sort((a, b) => (a.app < b.app ? -1 : 1)),
  );
}
