/**
 * The control plane's side of feeding a router that runs in its own process (router-process.ts):
 * the latest routing table under a version, a long poll that answers when the version moves, and
 * the in-flight counts the router reports, which draining waits on.
 *
 * Versions are `<epoch>.<n>`: the epoch is new at every start of the control plane, so a router
 * holding the table of a previous control plane always takes the new one at its first poll.
 *
 * In flight, across processes: an upstream removed from the table at version v may still receive
 * requests until the router has applied v. So `inflight(id)` is the router's report only once that
 * report was made at version ≥ v; before that the upstream counts as busy (1), and the drain waits
 * (bounded by the reconciler's maxDrainMs).
 *
 * Several routers (the router process, one router per node: node-router.ts) each report under an
 * id of their own, and `inflight(id)` is the sum of their counts, each by the rule above. The
 * routers named in `expected` (the local router process: 'local') always count, reported or not;
 * any other router counts from its first report until it has been silent for `staleMs` (a router
 * polls at least every 20 s: one that stopped syncing is a dead node, or cut off from this control
 * plane, and must not hold drains forever).
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { routeUpstreams, type Route } from '../core/routes.js';
import type { TlsBundle } from './tls.js';

export interface FeedAnswer {
  readonly version: string;
  /** Present when the asker's version differs from the current one. */
  readonly routes?: readonly Route[];
  /** Present when the asker sent a TLS version that differs from the current one. */
  readonly tls?: { readonly version: string; readonly bundle: TlsBundle };
}

/** What a router in its own process says about itself at each sync (shown by `pilot nodes`). */
export interface RouterSelf {
  readonly port: number;
  readonly httpsPort?: number | undefined;
}

/** A router that reports to this control plane, as the API shows it. */
export interface RouterView {
  readonly id: string;
  readonly traffic?: RouterTrafficEndpoint | undefined;
  /** The table version it applied at its last sync ('' before its first table). */
  readonly version: string;
  /** Whether that is the control plane's current table. */
  readonly current: boolean;
  readonly tlsVersion?: string | undefined;
  readonly self?: RouterSelf | undefined;
  /** Wall-clock time of its last sync (ms since the epoch). */
  readonly lastSyncAt: number;
}

/** The id of the router process on the control plane's machine (router token). */
export const LOCAL_ROUTER = 'local';

/** Where the control plane reads a router's traffic figures (GET /traffic with the bearer token). */
export interface RouterTrafficEndpoint {
  readonly url: string;
  readonly token: string;
}

interface Report {
  epoch: string;
  n: number;
  inflight: Record<string, number>;
  at: number;
  traffic?: RouterTrafficEndpoint | undefined;
  version: string;
  tlsVersion?: string | undefined;
  self?: RouterSelf | undefined;
  wallAt: number;
}

/** Extra facts a router gives at a sync beside its version and in-flight counts. */
export interface ReportExtras {
  readonly traffic?: RouterTrafficEndpoint | undefined;
  /** The TLS version it applied; absent: a router that does not take certificates. */
  readonly tlsVersion?: string | undefined;
  readonly self?: RouterSelf | undefined;
}

export class TableFeed {
  readonly #epoch = randomBytes(4).toString('hex');
  #n = 0;
  #routes: readonly Route[] = [];
  #json = '[]';
  readonly #waiters = new Set<() => void>();
  /** Upstream id → the version number that removed it from the table. */
  readonly #removedAt = new Map<string, number>();
  readonly #reports = new Map<string, Report>();
  readonly #expected: ReadonlySet<string>;
  readonly #staleMs: number;
  #published = false;
  /** Certificates, policies and ACME answers: versioned apart from the table (`<epoch>.t<n>`). */
  #tlsN = 0;
  #tls: TlsBundle = { certs: [], policies: {}, challenges: {} };
  #tlsJson = '';

  constructor(o: { expected?: readonly string[]; staleMs?: number } = {}) {
    this.#expected = new Set(o.expected ?? [LOCAL_ROUTER]);
    this.#staleMs = o.staleMs ?? 60_000;
  }

  get version(): string {
    return `${this.#epoch}.${this.#n}`;
  }

  /** Whether a table was ever set (a router must not get an empty table before the first pass). */
  get published(): boolean {
    return this.#published;
  }

  /** Replace the table; routers waiting on a poll get it at once. */
  set(routes: readonly Route[]): void {
    const json = JSON.stringify(routes);
    if (this.#published && json === this.#json) return;
    const next = this.#n + 1;
    const now = new Set(routes.flatMap((r) => routeUpstreams(r).map((u) => u.id)));
    for (const r of this.#routes) for (const u of routeUpstreams(r)) if (!now.has(u.id)) this.#removedAt.set(u.id, next);
    for (const id of now) this.#removedAt.delete(id);
    if (this.#removedAt.size > 10_000) {
      for (const [id, n] of this.#removedAt) if (n < next - 1000) this.#removedAt.delete(id);
    }
    this.#n = next;
    this.#routes = routes;
    this.#json = json;
    this.#published = true;
    for (const w of [...this.#waiters]) w();
  }

  get tlsVersion(): string {
    return `${this.#epoch}.t${this.#tlsN}`;
  }

  /** Replace the certificates, policies and ACME answers; routers waiting on a poll get them at once. */
  setTls(bundle: TlsBundle): void {
    const json = JSON.stringify(bundle);
    if (json === this.#tlsJson) return;
    this.#tlsN += 1;
    this.#tls = bundle;
    this.#tlsJson = json;
    for (const w of [...this.#waiters]) w();
  }

  /**
   * Resolves once every router that counts (see `inflight`) reported the current TLS version, or
   * after `timeoutMs` (false): an ACME challenge is answered by whichever router the CA reaches, so
   * the CA is asked to validate only once they all have the answer, or the wait gave up.
   * A router that does not take certificates (no TLS version in its reports) is not waited for.
   */
  async tlsDelivered(timeoutMs: number): Promise<boolean> {
    const end = performance.now() + timeoutMs;
    const want = this.tlsVersion;
    for (;;) {
      const behind = [...this.#live()].some(([, r]) => r.tlsVersion !== undefined && r.tlsVersion !== want);
      if (!behind) return true;
      if (performance.now() >= end) return false;
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** The table when `version` is not the current one; otherwise wait up to `waitMs` for a change. */
  async poll(version: string | undefined, waitMs: number, tlsVersion?: string): Promise<FeedAnswer> {
    const tlsStale = (): boolean => tlsVersion !== undefined && tlsVersion !== this.tlsVersion && this.#tlsN > 0;
    const answer = (): FeedAnswer => ({
      version: this.version,
      ...(this.#published && version !== this.version ? { routes: this.#routes } : {}),
      ...(tlsStale() ? { tls: { version: this.tlsVersion, bundle: this.#tls } } : {}),
    });
    if ((this.#published && version !== this.version) || tlsStale()) return answer();
    if (waitMs > 0) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.#waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, waitMs);
        this.#waiters.add(done);
      });
    }
    return answer();
  }

  /**
   * What a router said it has in flight, at the table version it had applied. A version that is not
   * `<epoch>.<n>` (a router that has no table yet) still marks the router as present.
   */
  report(version: string, inflight: Record<string, number>, router = LOCAL_ROUTER, extras: ReportExtras = {}): void {
    const [epoch, n] = version.split('.');
    const known = epoch !== undefined && n !== undefined && /^\d+$/.test(n);
    this.#reports.set(router, {
      epoch: known ? epoch : '',
      n: known ? Number(n) : 0,
      inflight,
      at: performance.now(),
      traffic: extras.traffic,
      version,
      tlsVersion: extras.tlsVersion,
      self: extras.self,
      wallAt: Date.now(),
    });
  }

  /** Requests in flight to this upstream, summed over the routers, as far as each has confirmed (see the file comment). */
  inflight(id: string): number {
    let sum = 0;
    for (const router of this.#expected) if (!this.#reports.has(router)) sum += this.#count(id, undefined);
    for (const [, r] of this.#live()) sum += this.#count(id, r);
    return sum;
  }

  /** The routers that report to this control plane (the expected ones, and others heard from within `staleMs`). */
  routers(): RouterView[] {
    return [...this.#live()].map(([id, r]) => ({
      id,
      traffic: r.traffic,
      version: r.version,
      current: r.version === this.version,
      tlsVersion: r.tlsVersion,
      self: r.self,
      lastSyncAt: r.wallAt,
    }));
  }

  *#live(): Iterable<[string, Report]> {
    const now = performance.now();
    for (const [router, r] of this.#reports) {
      if (this.#expected.has(router) || now - r.at <= this.#staleMs) yield [router, r];
      else this.#reports.delete(router);
    }
  }

  #count(id: string, r: Report | undefined): number {
    const removed = this.#removedAt.get(id);
    if (removed === undefined) return r?.epoch === this.#epoch ? (r.inflight[id] ?? 0) : 0;
    if (r === undefined || r.epoch !== this.#epoch || r.n < removed) return Math.max(1, r?.inflight[id] ?? 0);
    return r.inflight[id] ?? 0;
  }

  /** Answer every held poll now (shutdown). */
  release(): void {
    for (const w of [...this.#waiters]) w();
  }
}
