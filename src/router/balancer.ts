/**
 * Weighted choice of a backend (a revision), then least-in-flight balancing with a round-robin
 * tie-break among its upstreams. Least-in-flight keeps a slow or stuck
 * instance from collecting a queue; the rotating start point spreads requests evenly when all
 * instances are equally idle (the common case at low load), instead of always favouring the first.
 */
import { bucketBackend } from '../core/experiment.js';
import type { TableBackend, TableRoute, Upstream } from './routing-table.js';

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

/**
 * Smooth weighted round-robin (nginx's): among the candidates (index, weight > 0), add each one's
 * weight to its running score, choose the highest score (the first on a tie), take the total off
 * it. Over any run of `sum(weights)` picks each candidate is chosen exactly `weight` times, spread
 * out rather than in bursts. `scores` is the state, updated in place. Returns -1 with no candidate.
 */
export function pickSmoothWeighted(candidates: readonly { index: number; weight: number }[], scores: number[]): number {
  let best = -1;
  let total = 0;
  for (const c of candidates) {
    if (c.weight <= 0) continue;
    scores[c.index] = (scores[c.index] ?? 0) + c.weight;
    total += c.weight;
    if (best === -1 || scores[c.index]! > scores[best]!) best = c.index;
  }
  if (best !== -1) scores[best]! -= total;
  return best;
}

interface RouteState {
  /** Smooth weighted round-robin scores, by backend index. */
  readonly scores: number[];
  /** Round-robin cursor per backend index, for the least-in-flight tie-break. */
  readonly next: number[];
}

/** The revision a sticky route assigns a bucket to (undefined: no sticky route, no bucket, no weight). */
export function assignedRevision(route: TableRoute, bucket: number | undefined): number | undefined {
  if (bucket === undefined || route.sticky === undefined) return undefined;
  const i = bucketBackend(route.backends, bucket);
  return i === -1 ? undefined : route.backends[i]!.revision;
}

/**
 * Chooses an upstream of a route: first a backend (a revision) by weight, then an upstream within it
 * by least-in-flight. A weight-0 backend gets only requests pinned to its revision.
 */
export class Balancer {
  // Keyed by the route object: a new table brings new route objects, so state of apps that left
  // the table is garbage-collected with them and nothing needs pruning.
  readonly #state = new WeakMap<TableRoute, RouteState>();

  /**
   * The upstream to use for the next request of `route`, or undefined if none is left to try.
   * `pin` (a revision, from the X-Pilot-Revision header) goes to that revision's backend whatever
   * its weight when it has an upstream left to try; otherwise the pick is the usual one.
   * `bucket` (a sticky route's user bucket, router/sticky.ts) chooses the backend that owns the
   * bucket (core/experiment.ts `bucketBackend`) instead of the weighted round-robin; when that
   * backend has no upstream left to try, the weighted pick among the others is the fallback.
   */
  pick(
    route: TableRoute,
    inflight: (upstreamId: string) => number,
    exclude?: ReadonlySet<string>,
    pin?: number,
    bucket?: number,
  ): Upstream | undefined {
    const backends = route.backends;
    if (backends.length === 0) return undefined;
    let state = this.#state.get(route);
    if (state === undefined) {
      state = { scores: backends.map(() => 0), next: backends.map(() => 0) };
      this.#state.set(route, state);
    }
    const skip = exclude === undefined || exclude.size === 0 ? undefined : exclude;
    const open = (b: TableBackend): boolean => b.upstreams.length > 0 && (skip === undefined || b.upstreams.some((u) => !skip.has(u.id)));
    let chosen = pin === undefined ? -1 : backends.findIndex((b) => b.revision === pin && open(b));
    if (chosen === -1 && bucket !== undefined && route.sticky !== undefined) {
      const assigned = bucketBackend(backends, bucket);
      if (assigned !== -1 && open(backends[assigned]!)) chosen = assigned;
    }
    if (chosen === -1) {
      chosen =
        backends.length === 1
          ? backends[0]!.weight > 0 && open(backends[0]!)
            ? 0
            : -1 // the common case: no scoring needed
          : pickSmoothWeighted(
              backends.flatMap((b, index) => (open(b) ? [{ index, weight: b.weight }] : [])),
              state.scores,
            );
    }
    if (chosen === -1) return undefined;
    const ups = backends[chosen]!.upstreams;
    const i = pickLeastInflight(
      ups.length,
      (j) => inflight(ups[j]!.id),
      state.next[chosen]!,
      skip && ((j: number) => skip.has(ups[j]!.id)),
    );
    if (i === -1) return undefined;
    state.next[chosen] = (i + 1) % ups.length;
    return ups[i];
  }
}
