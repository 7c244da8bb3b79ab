/**
 * Least-in-flight balancing with a round-robin tie-break. Least-in-flight keeps a slow or stuck
 * instance from collecting a queue; the rotating start point spreads requests evenly when all
 * instances are equally idle (the common case at low load), instead of always favouring the first.
 */
import type { Route, Upstream } from './routing-table.js';

/**
 * The index in [0, count) with the fewest in-flight requests, scanning from `start` so that ties go to
 * the first one at or after it (wrapping). Indexes for which `skip` is true are never chosen.
 * Returns -1 when there is nothing to choose. Pure.
 */
export function pickLeastInflight(
  count: number,
  inflightAt: (index: number) => number,
  start: number,
  skip: (index: number) => boolean = () => false,
): number {
  let best = -1;
  let bestLoad = Infinity;
  for (let k = 0; k < count; k++) {
    const i = (start + k) % count;
    if (skip(i)) continue;
    const load = inflightAt(i);
    if (load < bestLoad) {
      best = i;
      bestLoad = load;
      if (load === 0) break; // nothing beats idle; saves the scan on large routes
    }
  }
  return best;
}

/** Chooses an upstream of a route; remembers a round-robin cursor per route. */
export class Balancer {
  // Keyed by the Route object: a new table brings new Route objects, so cursors of apps that left
  // the table are garbage-collected with them and nothing needs pruning.
  readonly #cursors = new WeakMap<Route, { next: number }>();

  /** The upstream to use for the next request of `route`, or undefined if none is left to try. */
  pick(route: Route, inflight: (upstreamId: string) => number, exclude?: ReadonlySet<string>): Upstream | undefined {
    const ups = route.upstreams;
    if (ups.length === 0) return undefined;
    let cursor = this.#cursors.get(route);
    if (cursor === undefined) {
      cursor = { next: 0 };
      this.#cursors.set(route, cursor);
    }
    const skip = exclude === undefined || exclude.size === 0 ? undefined : (i: number) => exclude.has(ups[i]!.id);
    const i = pickLeastInflight(ups.length, (j) => inflight(ups[j]!.id), cursor.next, skip);
    if (i === -1) return undefined;
    cursor.next = (i + 1) % ups.length;
    return ups[i];
  }
}
