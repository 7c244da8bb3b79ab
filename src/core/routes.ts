/**
 * The one route model, shared by the control plane (which computes it) and the router (which serves
 * it), and the pure decision of what the routing table should be.
 *
 *   Route { app, hosts, backends: [ { revision, weight, upstreams: [ { id, host, port } ] } ] }
 *
 * Weight rule: each weight is an integer 0–100, a revision appears at most once per route, and the
 * weights of a route's backends sum to 100, or are all 0 while no revision of the app is promoted
 * (its first rollout is still running). A backend of weight 0 gets no traffic, even when it is the
 * only one with upstreams (a rollout's target is not served before it is activated, as before
 * weights existed); only a request pinned to its revision reaches it. The router splits traffic
 * among the backends that have weight and upstreams, in proportion to their weights.
 *
 * The active revision gets 100 minus the running rollout's target weight (0 for blue/green until the
 * switch; the canary's step weight; rolling: the new revision's share of the ready instances). An
 * A/B experiment (core/experiment.ts) gives the active revision 100 − split and the variant split,
 * and makes the route sticky: a user key (a cookie or a header) hashed with the experiment's seed
 * picks the backend instead of the weighted round-robin.
 */
import { isSticky, type Sticky } from './experiment.js';

/** One ready instance: `id` is the instance id. */
export interface RouteUpstream {
  readonly id: string;
  readonly host: string;
  readonly port: number;
}

/** One revision of an app, its share of the traffic (0–100) and its ready instances. */
export interface Backend {
  readonly revision: number;
  readonly weight: number;
  readonly upstreams: readonly RouteUpstream[];
}

/**
 * An app's protocol limits (pilot.yaml `http:`), each absent for the router's default:
 * requestTimeoutMs (the app must start its answer within it, else 504; default 60 s),
 * idleTimeoutMs (longest silence inside the app's response body; default 5 min),
 * maxBodyBytes (larger request bodies get 413; default no limit).
 */
export interface RouteHttp {
  readonly requestTimeoutMs?: number | undefined;
  readonly idleTimeoutMs?: number | undefined;
  readonly maxBodyBytes?: number | undefined;
}

/** An app, the hosts it answers for (`<app>.localhost` first), and its backends. */
export interface Route {
  readonly app: string;
  readonly hosts: readonly string[];
  readonly backends: readonly Backend[];
  /** A sticky split (an A/B experiment): absent for an ordinary weighted route. */
  readonly sticky?: Sticky | undefined;
  /** Per-app protocol limits: absent for the router's defaults. */
  readonly http?: RouteHttp | undefined;
}

/** Largest values a route's limits may carry (beyond them a table entry is malformed). */
export const ROUTE_HTTP_MAX = { timeoutMs: 24 * 3_600_000, maxBodyBytes: 2 ** 50 } as const;

/** The route's limits with only well-formed fields kept (positive integers within ROUTE_HTTP_MAX); undefined when none is. */
export function cleanRouteHttp(raw: unknown): RouteHttp | undefined {
  if (raw === null || typeof raw !== 'object') return undefined;
  const r = raw as Record<string, unknown>;
  const ok = (v: unknown, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0 && v <= max;
  const out: { requestTimeoutMs?: number; idleTimeoutMs?: number; maxBodyBytes?: number } = {};
  if (ok(r.requestTimeoutMs, ROUTE_HTTP_MAX.timeoutMs)) out.requestTimeoutMs = r.requestTimeoutMs;
  if (ok(r.idleTimeoutMs, ROUTE_HTTP_MAX.timeoutMs)) out.idleTimeoutMs = r.idleTimeoutMs;
  if (ok(r.maxBodyBytes, ROUTE_HTTP_MAX.maxBodyBytes)) out.maxBodyBytes = r.maxBodyBytes;
  return Object.keys(out).length === 0 ? undefined : out;
}

/** Why (part of) an app's route was left out of the table. */
export interface RouteProblem {
  readonly app: string;
  readonly message: string;
}

/** What `desiredRoutes` reads: apps, their rollout target, instances and nodes. */
export interface RouteState {
  readonly apps: readonly {
    readonly name: string;
    readonly createdAt: number;
    readonly activeRevision: number | undefined;
    /** The hosts of the active revision's config (`<app>.localhost` is added here). */
    readonly hosts: readonly string[];
    /** The revision a rollout in progress moves to, if any. */
    readonly targetRevision: number | undefined;
    /** The share of the traffic (0–100) the rollout gives its target now (canary, rolling); absent: 0. */
    readonly targetWeight?: number | undefined;
    /** A running A/B experiment: its variant revision, the variant's share (0–100) and the sticky key. */
    readonly experiment?: { readonly revision: number; readonly split: number; readonly sticky: Sticky } | undefined;
    /** The active revision's protocol limits (pilot.yaml `http:`); absent: the router's defaults. */
    readonly http?: RouteHttp | undefined;
  }[];
  readonly instances: readonly {
    readonly id: string;
    readonly app: string;
    readonly revision: number;
    readonly desired: string;
    readonly state: string;
    readonly port: number | undefined;
    /** Where the instance listens when not on its node's address (its own network namespace). */
    readonly address: string | undefined;
    readonly nodeId: string;
    /** `release` instances run a one-off command (migrations), never traffic. Absent: `web`. */
    readonly kind?: string | undefined;
  }[];
  readonly nodes: readonly { readonly id: string; readonly address: string; readonly down: boolean }[];
}

/** The weight the active revision carries; a rollout's target carries the rest (0 today). */
export const ACTIVE_WEIGHT = 100;

/**
 * The routing table the state calls for, admitted per app (`admitRoutes`): apps oldest first, so
 * the first claimant of a host keeps it. An instance is an upstream when it is meant to run, is
 * ready, has a port, is no release instance, and its node is known and not down. Pure.
 */
export function desiredRoutes(state: RouteState): { routes: Route[]; problems: RouteProblem[] } {
  const nodes = new Map(state.nodes.map((n) => [n.id, n]));
  const byApp = new Map<string, RouteState['instances'][number][]>();
  for (const i of state.instances) {
    const list = byApp.get(i.app);
    if (list) list.push(i);
    else byApp.set(i.app, [i]);
  }
  const apps = [...state.apps].sort((a, b) => a.createdAt - b.createdAt || a.name.localeCompare(b.name));
  const candidates: Route[] = apps.map((app) => {
    const weights: [number, number][] = [];
    // A rollout ends an experiment when it starts (store); only the rollout that keeps b (`pilot
    // experiment end --keep b`) carries the split on until it activates b, so that b's users stay
    // on b and a's on a while b's instances come up (the caller passes that experiment on).
    const exp =
      app.experiment !== undefined &&
      app.activeRevision !== undefined &&
      (app.targetRevision === undefined || app.targetRevision === app.experiment.revision) &&
      app.experiment.revision !== app.activeRevision
        ? app.experiment
        : undefined;
    if (exp !== undefined) {
      weights.push([app.activeRevision!, 100 - exp.split], [exp.revision, exp.split]);
    } else {
      const moving = app.targetRevision !== undefined && app.targetRevision !== app.activeRevision;
      // A rollout's target gets its recorded share once a revision serves; the active revision the rest.
      const target = moving && app.activeRevision !== undefined ? Math.max(0, Math.min(100, Math.round(app.targetWeight ?? 0))) : 0;
      if (app.activeRevision !== undefined) weights.push([app.activeRevision, ACTIVE_WEIGHT - target]);
      if (moving) weights.push([app.targetRevision!, target]);
    }
    const backends: Backend[] = weights.map(([revision, weight]) => {
      const upstreams: RouteUpstream[] = [];
      for (const i of byApp.get(app.name) ?? []) {
        const node = nodes.get(i.nodeId);
        if (
          i.revision !== revision ||
          i.kind === 'release' ||
          node === undefined ||
          node.down ||
          i.desired !== 'run' ||
          i.state !== 'ready' ||
          i.port === undefined
        )
          continue;
        upstreams.push({ id: i.id, host: i.address ?? node.address, port: i.port });
      }
      return { revision, weight, upstreams };
    });
    const route: Route = {
      app: app.name,
      hosts: [`${app.name}.localhost`, ...app.hosts],
      backends,
      ...(app.http === undefined ? {} : { http: app.http }),
    };
    return exp === undefined ? route : { ...route, sticky: exp.sticky };
  });
  return admitRoutes(candidates);
}

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

/** Why this backend's weight or revision is unusable (undefined: fine). */
function badBackend(b: Backend, seen: ReadonlySet<number>): string | undefined {
  if (!Number.isInteger(b.revision) || b.revision < 1) return `has revision ${String(b.revision)}`;
  if (seen.has(b.revision)) return 'appears twice';
  if (!Number.isInteger(b.weight) || b.weight < 0 || b.weight > 100) return `has weight ${String(b.weight)} (weights are integers 0-100)`;
  return undefined;
}

/** Why this upstream is unusable (undefined: fine). */
function badUpstream(u: RouteUpstream, ids: ReadonlySet<string>): string | undefined {
  if (typeof u.id !== 'string' || u.id === '') return 'has no id';
  if (!Number.isInteger(u.port) || u.port < 1 || u.port > 65535) return `has port ${String(u.port)}`;
  if (typeof u.host !== 'string' || u.host === '') return 'has an empty host';
  if (ids.has(u.id)) return 'appears twice';
  return undefined;
}

/**
 * Scale weights so that they sum to 100 (largest remainder, ties to the earlier backend); all
 * zeros stay zeros. Used only to repair a route whose weights break the rule.
 */
export function normalizeWeights(weights: readonly number[]): number[] {
  const sum = weights.reduce((s, w) => s + w, 0);
  if (sum === 0) return weights.map(() => 0);
  const exact = weights.map((w) => (w * 100) / sum);
  const out = exact.map(Math.floor);
  let left = 100 - out.reduce((s, w) => s + w, 0);
  const order = exact.map((e, i) => ({ i, r: e - Math.floor(e) })).sort((a, b) => b.r - a.r || a.i - b.i);
  for (const { i } of order) {
    if (left <= 0) break;
    out[i]!++;
    left--;
  }
  return out;
}

/**
 * Build a consistent table one app at a time: whatever is wrong with one app's entry (a host
 * another app already holds, an empty host, a bad backend or upstream, weights that do not sum to
 * 100) leaves out that host, backend or upstream, or rescales the weights, with its reason, and
 * never touches the other apps. Earlier routes win a host: callers order routes by who claimed
 * first. Takes anything (a table from the wire or a file) without throwing; the result always
 * passes the router's `RoutingTable.set`.
 */
export function admitRoutes(routes: readonly Route[]): { routes: Route[]; problems: RouteProblem[] } {
  const problems: RouteProblem[] = [];
  const owner = new Map<string, string>();
  const ids = new Set<string>();
  const seenApps = new Set<string>();
  const out: Route[] = [];
  for (const route of Array.isArray(routes) ? routes : []) {
    const app: unknown = (route as Partial<Route> | null)?.app;
    if (typeof app !== 'string' || app === '' || seenApps.has(app)) {
      problems.push({
        app: String(app),
        message:
          app === '' || typeof app !== 'string' ? 'a route has an empty app name' : `app "${app}" has two routes; the second is left out`,
      });
      continue;
    }
    seenApps.add(app);
    const problem = (message: string): void => void problems.push({ app, message });
    const hosts: string[] = [];
    for (const raw of Array.isArray(route.hosts) ? route.hosts : []) {
      const host = typeof raw === 'string' ? normalizeHost(raw) : '';
      const other = owner.get(host);
      if (host === '') problem('an empty host is left out');
      else if (other !== undefined && other !== app) problem(`host "${host}" belongs to app "${other}"; left out of "${app}"`);
      else if (other === undefined) {
        owner.set(host, app);
        hosts.push(host);
      }
    }
    const backends: Backend[] = [];
    const revisions = new Set<number>();
    for (const b of Array.isArray(route.backends) ? route.backends : []) {
      const bad = b === null || typeof b !== 'object' ? 'is not an object' : badBackend(b, revisions);
      if (bad !== undefined) {
        problem(`backend of revision ${String((b as Partial<Backend> | null)?.revision)} ${bad}; left out`);
        continue;
      }
      revisions.add(b.revision);
      const upstreams: RouteUpstream[] = [];
      for (const u of Array.isArray(b.upstreams) ? b.upstreams : []) {
        const why = u === null || typeof u !== 'object' ? 'is not an object' : badUpstream(u, ids);
        if (why !== undefined) problem(`upstream "${String((u as Partial<RouteUpstream> | null)?.id)}" ${why}; left out`);
        else {
          ids.add(u.id);
          upstreams.push({ id: u.id, host: u.host, port: u.port });
        }
      }
      backends.push({ revision: b.revision, weight: b.weight, upstreams });
    }
    const sum = backends.reduce((s, b) => s + b.weight, 0);
    if (sum !== 0 && sum !== 100) {
      problem(`backend weights sum to ${sum}, not 100; scaled to 100`);
      const scaled = normalizeWeights(backends.map((b) => b.weight));
      backends.forEach((b, k) => (backends[k] = { ...b, weight: scaled[k]! }));
    }
    const rawHttp: unknown = (route as Partial<Route>).http;
    const http = cleanRouteHttp(rawHttp);
    const kept = (http ?? {}) as Record<string, unknown>;
    if (
      rawHttp !== undefined &&
      rawHttp !== null &&
      (typeof rawHttp !== 'object' || Object.entries(rawHttp).some(([k, v]) => v !== undefined && kept[k] !== v))
    )
      problem("some of its http limits are malformed; the router's defaults stand for those");
    const limits = http === undefined ? {} : { http };
    const sticky: unknown = (route as Partial<Route>).sticky;
    if (sticky === undefined || sticky === null) out.push({ app, hosts, backends, ...limits });
    else if (isSticky(sticky)) out.push({ app, hosts, backends, sticky: { by: { ...sticky.by }, seed: sticky.seed }, ...limits });
    else {
      problem('its sticky split is malformed; the route is served by weight alone');
      out.push({ app, hosts, backends, ...limits });
    }
  }
  return { routes: out, problems };
}

/** Every upstream of a route, whatever its backend's weight. */
export function routeUpstreams(route: Route): RouteUpstream[] {
  return route.backends.flatMap((b) => b.upstreams);
}
