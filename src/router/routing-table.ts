/**
 * The routing table: which app answers which Host, and which ready instances (upstreams) serve it.
 * The control plane owns the desired table and calls `set` with the whole of it whenever anything
 * changes (level-triggered); the router never edits it. Lookups are by exact host, no wildcards.
 */
import { PilotError } from '../core/errors.js';

/** One ready instance of an app, reachable at host:port. `id` is the instance id. */
export interface Upstream {
  readonly id: string;
  readonly app: string;
  readonly revision: number;
  readonly host: string;
  readonly port: number;
}

/** An app, the hosts it answers for (the control plane includes `<app>.localhost`), its upstreams. */
export interface Route {
  readonly app: string;
  readonly hosts: readonly string[];
  readonly upstreams: readonly Upstream[];
}

/** What a `set` changed. An upstream whose address changed counts as removed and added. */
export interface TableChange {
  readonly added: readonly Upstream[];
  readonly removed: readonly Upstream[];
}

export type TableListener = (change: TableChange) => void;

/**
 * Lowercase a Host header value and strip its port and any trailing dot:
 * "Hello.LOCALHOST:8080" → "hello.localhost", "[::1]:8080" → "[::1]", "::1" → "[::1]".
 */
export function normalizeHost(hostHeader: string): string {
  let h = hostHeader.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end === -1 ? h : h.slice(0, end + 1);
  }
  const firstColon = h.indexOf(':');
  if (firstColon !== -1) {
    // Two colons or more cannot be host:port, so it is a bare IPv6 literal (only seen in config).
    if (h.indexOf(':', firstColon + 1) !== -1) return `[${h}]`;
    h = h.slice(0, firstColon);
  }
  return h.endsWith('.') ? h.slice(0, -1) : h;
}

function sameAddress(a: Upstream, b: Upstream): boolean {
  return a.host === b.host && a.port === b.port;
}

function invalid(message: string): PilotError {
  return new PilotError('bad_request', `routing table rejected: ${message}`, {
    hint: 'This is a bug in the control plane: the table it computed is inconsistent. The previous table stays in force.',
  });
}

function freezeRoute(r: Route): Route {
  return Object.freeze({
    app: r.app,
    hosts: Object.freeze([...r.hosts]),
    upstreams: Object.freeze(r.upstreams.map((u) => Object.freeze({ ...u }))),
  });
}

/** Why (part of) an app's route was left out of the table. */
export interface RouteProblem {
  readonly app: string;
  readonly message: string;
}

/**
 * Build a consistent table one app at a time: whatever is wrong with one app's entry (a host
 * another app already holds, an empty host, a bad upstream) leaves out that host or upstream, with
 * its reason, and never the other apps. Earlier routes win a host: callers order routes by who
 * claimed first. The result always passes `RoutingTable.set`.
 */
export function admitRoutes(routes: readonly Route[]): { routes: Route[]; problems: RouteProblem[] } {
  const problems: RouteProblem[] = [];
  const owner = new Map<string, string>();
  const ids = new Set<string>();
  const seenApps = new Set<string>();
  const out: Route[] = [];
  for (const route of routes) {
    if (typeof route.app !== 'string' || route.app === '' || seenApps.has(route.app)) {
      problems.push({ app: String(route.app), message: route.app === '' ? 'a route has an empty app name' : `app "${route.app}" has two routes; the second is left out` });
      continue;
    }
    seenApps.add(route.app);
    const hosts: string[] = [];
    for (const raw of Array.isArray(route.hosts) ? route.hosts : []) {
      const host = typeof raw === 'string' ? normalizeHost(raw) : '';
      const other = owner.get(host);
      if (host === '') problems.push({ app: route.app, message: 'an empty host is left out' });
      else if (other !== undefined && other !== route.app) problems.push({ app: route.app, message: `host "${host}" belongs to app "${other}"; left out of "${route.app}"` });
      else if (other === undefined) {
        owner.set(host, route.app);
        hosts.push(host);
      }
    }
    const upstreams: Upstream[] = [];
    for (const u of Array.isArray(route.upstreams) ? route.upstreams : []) {
      const bad = u.app !== route.app ? `belongs to app "${u.app}"`
        : !Number.isInteger(u.port) || u.port < 1 || u.port > 65535 ? `has port ${u.port}`
        : typeof u.host !== 'string' || u.host === '' ? 'has an empty host'
        : ids.has(u.id) ? 'appears twice' : undefined;
      if (bad !== undefined) problems.push({ app: route.app, message: `upstream "${u.id}" ${bad}; left out` });
      else {
        ids.add(u.id);
        upstreams.push(u);
      }
    }
    out.push({ app: route.app, hosts, upstreams });
  }
  return { routes: out, problems };
}

/** The router's view of apps, hosts and upstreams; replaced as a whole by `set`. */
export class RoutingTable {
  #byHost = new Map<string, Route>();
  #upstreams = new Map<string, Upstream>();
  readonly #listeners = new Set<TableListener>();

  /**
   * Replace the whole table atomically and return what changed. Listeners (the proxy) hear about the
   * change synchronously, before `set` returns, so a removed upstream gets no new request from then on.
   * Throws `bad_request` and keeps the previous table if the new one is inconsistent.
   */
  set(routes: readonly Route[]): TableChange {
    const byHost = new Map<string, Route>();
    const upstreams = new Map<string, Upstream>();
    const frozen = routes.map(freezeRoute);
    for (const route of frozen) {
      if (route.app === '') throw invalid('a route has an empty app name');
      for (const raw of route.hosts) {
        const host = normalizeHost(raw);
        if (host === '') throw invalid(`app "${route.app}" has an empty host`);
        const other = byHost.get(host);
        if (other !== undefined && other !== route) {
          throw invalid(`host "${host}" is claimed by apps "${other.app}" and "${route.app}"`);
        }
        byHost.set(host, route);
      }
      for (const u of route.upstreams) {
        if (u.app !== route.app) throw invalid(`upstream "${u.id}" belongs to app "${u.app}", not "${route.app}"`);
        if (!Number.isInteger(u.port) || u.port < 1 || u.port > 65535) throw invalid(`upstream "${u.id}" has port ${u.port}`);
        if (u.host === '') throw invalid(`upstream "${u.id}" has an empty host`);
        if (upstreams.has(u.id)) throw invalid(`upstream id "${u.id}" appears twice`);
        upstreams.set(u.id, u);
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
  lookup(hostHeader: string): Route | undefined {
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
