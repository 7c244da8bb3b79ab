/**
 * Tables in the shape before weighted backends (Pilot ≤ the route-model change):
 *   { app, hosts, upstreams: [{ id, app, revision, host, port }] }
 * A router process outlives upgrades (`pilot up` adopts it), so both directions happen:
 * - a new router reads an old `table.json` (or an old control plane's answer): `fromLegacyRoutes`
 *   converts each old route, one backend per revision, weights split evenly (the old router
 *   balanced over all upstreams alike); an upstream naming another app is left out;
 * - an old router asks a new control plane (its sync request has no `x-pilot-routes: 2` header):
 *   the control plane answers `toLegacyRoutes`, the upstreams of the backends that carry weight.
 */
import { normalizeWeights, type Backend, type Route, type RouteUpstream } from '../core/routes.js';
import type { Upstream } from './routing-table.js';

/** The header a router sends to say it reads tables with backends (the version of the shape). */
export const ROUTES_FORMAT_HEADER = 'x-pilot-routes';
export const ROUTES_FORMAT = '2';

/** A route in the old shape, as an old router reads it. */
export interface LegacyRoute {
  readonly app: string;
  readonly hosts: readonly string[];
  readonly upstreams: readonly Upstream[];
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null;
}

/**
 * Routes in either shape → routes in the current one, and how many were converted from the old
 * shape. Anything else is passed on untouched: `admitRoutes` sorts out what is wrong with it.
 */
export function fromLegacyRoutes(routes: readonly unknown[]): { routes: Route[]; converted: number } {
  let converted = 0;
  const out = routes.map((r): Route => {
    if (!isObject(r) || Array.isArray(r.backends) || !Array.isArray(r.upstreams)) return r as unknown as Route;
    converted++;
    const byRevision = new Map<number, RouteUpstream[]>();
    for (const u of r.upstreams as unknown[]) {
      if (!isObject(u) || u.app !== r.app || typeof u.revision !== 'number') continue;
      const list = byRevision.get(u.revision) ?? [];
      list.push({ id: u.id as string, host: u.host as string, port: u.port as number });
      byRevision.set(u.revision, list);
    }
    const weights = normalizeWeights([...byRevision.keys()].map(() => 1));
    const backends: Backend[] = [...byRevision].map(([revision, upstreams], k) => ({ revision, weight: weights[k]!, upstreams }));
    return { app: r.app as string, hosts: r.hosts as string[], backends };
  });
  return { routes: out, converted };
}

/** Routes in the old shape for a router that only reads that: the upstreams of weighted backends. */
export function toLegacyRoutes(routes: readonly Route[]): LegacyRoute[] {
  return routes.map((r) => ({
    app: r.app,
    hosts: r.hosts,
    upstreams: r.backends
      .filter((b) => b.weight > 0)
      .flatMap((b) => b.upstreams.map((u) => ({ id: u.id, app: r.app, revision: b.revision, host: u.host, port: u.port }))),
  }));
}
