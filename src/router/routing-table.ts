/**
 * The routing table: which app answers which Host, and which ready instances (upstreams) of which
 * revisions (backends, weighted) serve it. The route model and its rules are core/routes.ts.
 * The control plane owns the desired table and calls `set` with the whole of it whenever anything
 * changes (level-triggered); the router never edits it. Lookups are by exact host, no wildcards.
 */
import { PilotError, fail } from '../core/errors.js';
import { isSticky } from '../core/experiment.js';
import { cleanRouteHttp, normalizeHost, type Route, type RouteUpstream } from '../core/routes.js';

export {
  admitRoutes,
  normalizeHost,
  type Backend,
  type Route,
  type RouteHttp,
  type RouteProblem,
  type RouteUpstream,
} from '../core/routes.js';

/** One ready instance of one revision of an app, reachable at host:port (a route's upstream, resolved). */
export interface Upstream extends RouteUpstream {
  readonly app: string;
  readonly revision: number;
}

/** A backend as the table holds it: its upstreams resolved (app and revision on each). */
export interface TableBackend {
  readonly revision: number;
  readonly weight: number;
  readonly upstreams: readonly Upstream[];
}

/** A route as the table holds it (frozen; still a `Route`, so it can be passed to `set` again). */
export interface TableRoute extends Route {
  readonly backends: readonly TableBackend[];
}

/** What a `set` changed. An upstream whose address changed counts as removed and added. */
export interface TableChange {
  readonly added: readonly Upstream[];
  readonly removed: readonly Upstream[];
}

export type TableListener = (change: TableChange) => void;

function sameAddress(a: Upstream, b: Upstream): boolean {
  return a.host === b.host && a.port === b.port;
}

function invalid(message: string): PilotError {
  return fail.routingTableRejected({ message });
}

/** Check one route against the rules of core/routes.ts and resolve it (throws `invalid`). */
function resolveRoute(r: Route, upstreams: Map<string, Upstream>): TableRoute {
  if (typeof r.app !== 'string' || r.app === '') throw invalid('a route has an empty app name');
  if (!Array.isArray(r.hosts) || !Array.isArray(r.backends)) throw invalid(`app "${r.app}" has no hosts or backends list`);
  const revisions = new Set<number>();
  let sum = 0;
  const backends = r.backends.map((b): TableBackend => {
    if (!Number.isInteger(b.revision) || b.revision < 1 || revisions.has(b.revision))
      throw invalid(`app "${r.app}" has a bad or repeated revision ${String(b.revision)}`);
    if (!Number.isInteger(b.weight) || b.weight < 0 || b.weight > 100)
      throw invalid(`revision ${b.revision} of app "${r.app}" has weight ${String(b.weight)}`);
    if (!Array.isArray(b.upstreams)) throw invalid(`revision ${b.revision} of app "${r.app}" has no upstreams list`);
    revisions.add(b.revision);
    sum += b.weight;
    const ups = (b.upstreams as readonly RouteUpstream[]).map((u) => {
      // A resolved upstream (from another table route) says whose it is: it must be this app's.
      const owner = (u as Partial<Upstream>).app;
      if (owner !== undefined && owner !== r.app) throw invalid(`upstream "${u.id}" belongs to app "${owner}", not "${r.app}"`);
      if (!Number.isInteger(u.port) || u.port < 1 || u.port > 65535) throw invalid(`upstream "${u.id}" has port ${u.port}`);
      if (typeof u.host !== 'string' || u.host === '') throw invalid(`upstream "${u.id}" has an empty host`);
      if (typeof u.id !== 'string' || u.id === '' || upstreams.has(u.id)) throw invalid(`upstream id "${u.id}" appears twice`);
      const resolved: Upstream = Object.freeze({ id: u.id, app: r.app, revision: b.revision, host: u.host, port: u.port });
      upstreams.set(u.id, resolved);
      return resolved;
    });
    return Object.freeze({ revision: b.revision, weight: b.weight, upstreams: Object.freeze(ups) });
  });
  if (sum !== 0 && sum !== 100) throw invalid(`the weights of app "${r.app}" sum to ${sum}, not 100`);
  const http = r.http === undefined ? undefined : cleanRouteHttp(r.http);
  if (r.http !== undefined && http === undefined) throw invalid(`app "${r.app}" has malformed http limits`);
  const route = {
    app: r.app,
    hosts: Object.freeze([...r.hosts]),
    backends: Object.freeze(backends),
    ...(http === undefined ? {} : { http: Object.freeze(http) }),
  };
  if (r.sticky === undefined) return Object.freeze(route);
  if (!isSticky(r.sticky)) throw invalid(`app "${r.app}" has a malformed sticky split`);
  return Object.freeze({ ...route, sticky: Object.freeze({ by: Object.freeze({ ...r.sticky.by }), seed: r.sticky.seed }) });
}

/** The router's view of apps, hosts and upstreams; replaced as a whole by `set`. */
export class RoutingTable {
  #byHost = new Map<string, TableRoute>();
  #upstreams = new Map<string, Upstream>();
  readonly #listeners = new Set<TableListener>();

  /**
   * Replace the whole table atomically and return what changed. Listeners (the proxy) hear about the
   * change synchronously, before `set` returns, so a removed upstream gets no new request from then on.
   * Throws `bad_request` and keeps the previous table if the new one is inconsistent.
   */
  set(routes: readonly Route[]): TableChange {
    const byHost = new Map<string, TableRoute>();
    const upstreams = new Map<string, Upstream>();
    for (const route of routes.map((r) => resolveRoute(r, upstreams))) {
      for (const raw of route.hosts) {
        const host = normalizeHost(raw);
        if (host === '') throw invalid(`app "${route.app}" has an empty host`);
        const other = byHost.get(host);
        if (other !== undefined && other !== route) {
          throw invalid(`host "${host}" is claimed by apps "${other.app}" and "${route.app}"`);
        }
        byHost.set(host, route);
      }
    }

    const removed: Upstream[] = [];
    const added: Upstream[] = [];
    for (const [id, old] of this.#upstreams) {
      const now = upstreams.get(id);
      if (now === undefined || !sameAddress(old, now)) removed.push(old);
    }
    for (const [id, now] of upstreams) {
      const old = this.#upstreams.get(id);
      if (old === undefined || !sameAddress(old, now)) added.push(now);
    }

    this.#byHost = byHost;
    this.#upstreams = upstreams;
    const change: TableChange = { added, removed };
    if (added.length > 0 || removed.length > 0) {
      for (const listener of this.#listeners) listener(change);
    }
    return change;
  }

  /** The route for a Host header value (any case, with or without port), if an app serves it. */
  lookup(hostHeader: string): TableRoute | undefined {
    return this.#byHost.get(normalizeHost(hostHeader));
  }

  /** The upstream with this instance id, if it is in the table. */
  upstream(id: string): Upstream | undefined {
    return this.#upstreams.get(id);
  }

  /** Be told of every change that adds or removes upstreams; returns the unsubscribe function. */
  subscribe(listener: TableListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
