/**
 * The autoscaler's decision: how many replicas an app with `autoscale` should have now. Pure: the
 * figures, the fleet's room and the recent recommendations come in, a count and its reason go out
 * (control/autoscaler.ts reads the figures and applies the count). Modelled on Kubernetes' HPA:
 *
 *   recommendation = ceil(load / target)            load: the app's req/s, or the sum of its
 *                    (held when within ±10 % of       instances' CPU %; an instance with no figure
 *                     the target at today's count)    counts as idle when scaling up and as at the
 *                                                     target when scaling down (never flaps on gaps)
 *        │
 *        ▼  clamp to [min, max]; remember (now, recommendation)
 *   stabilise: up to at most the LOWEST recommendation of the scale-up window (default 0: at once),
 *              down to at least the HIGHEST recommendation of the scale-down window (default 5m)
 *        │
 *        ▼  a step up at most doubles the count (or adds 4, whichever is more)
 *   cap: never more than the fleet can place (but never below what runs), never below min
 *
 * The count the autoscaler sets is the app's one replica count (core/replicas.ts, source
 * `autoscaler`): a rollout sizes its sets from it and only splits it between revisions.
 */
import { describeTarget, type AutoscaleSpec } from './autoscale-config.js';
import { formatDuration } from './duration.js';

/** The band around the target in which the count is held (HPA's default tolerance). */
export const AUTOSCALE_TOLERANCE = 0.1;

/** The metric as measured over the recent window. */
export interface AutoscaleObservation {
  /**
   * The app's load in the target's unit: rps, its requests per second (all revisions, and those no
   * instance was ready for); cpu, the sum over its instances of their CPU in % of an allowance.
   * undefined: no figures this time (router or agents silent): the count is held.
   */
  readonly load: number | undefined;
  /** Instances the load was measured over (cpu: the instances that reported a figure; rps: the count itself). */
  readonly measured: number;
  /** Why there is no load (said in the reason); default "no figures for traffic/CPU yet". */
  readonly unavailable?: string | undefined;
}

/** What the fleet can hold of this app: `replicas` in all; `reason` why not more (the scheduler's words). */
export interface AutoscaleCapacity {
  readonly replicas: number;
  readonly reason: string | undefined;
}

/** One recommendation (after min/max), kept for the stabilisation windows. */
export interface Recommendation {
  readonly at: number;
  readonly replicas: number;
}

export interface AutoscaleInput {
  readonly spec: AutoscaleSpec;
  /** The app's replica count now. */
  readonly current: number;
  readonly observation: AutoscaleObservation;
  /** undefined: not known (only needed to scale up; unbounded then). */
  readonly capacity?: AutoscaleCapacity | undefined;
  /** Earlier recommendations, oldest first (what an earlier decision returned as `history`). */
  readonly history: readonly Recommendation[];
  /** Milliseconds on a monotonic clock. */
  readonly now: number;
}

/** Which rule had the last word. */
export type AutoscaleLimit =
  'none' | 'tolerance' | 'no-data' | 'min' | 'max' | 'capacity' | 'scale-up-window' | 'scale-down-window' | 'rate';

export interface AutoscaleDecision {
  readonly replicas: number;
  /** What the load alone asks for, within [min, max]. */
  readonly recommendation: number;
  /** The load per instance at today's count, in the target's unit (null without figures). */
  readonly perInstance: number | null;
  readonly limitedBy: AutoscaleLimit;
  /** Why, in a sentence: the figure, the target, and what held or capped the count. */
  readonly reason: string;
  /** The recommendations to pass to the next decision (pruned to the longer window). */
  readonly history: readonly Recommendation[];
}

const clamp = (n: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, n));
const fmt = (v: number): string => (Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 2 : 1));
/** ceil, forgiving the float noise of a ratio that is a whole number (100/50*… = 2.0000000001). */
// Sums of per-instance figures carry float error: a ratio within 1e-6 of a whole number is that number.
const ceilish = (v: number): number => Math.ceil(v - 1e-6);

/** A step up adds at most this: double the count, or four more, whichever is larger (HPA's default policy). */
export function maxStepUp(current: number): number {
  return Math.max(2 * current, current + 4);
}

/** The count an app with `autoscale` should have now, and why. */
export function decideReplicas(input: AutoscaleInput): AutoscaleDecision {
  const { spec, observation: obs, now } = input;
  const current = Math.max(0, input.current);
  const target = spec.target.value;
  const keepFor = Math.max(spec.scaleUpWindowMs, spec.scaleDownWindowMs);
  const recent = input.history.filter((r) => now - r.at <= keepFor && r.at <= now);

  if (obs.load === undefined) {
    // No figures: hold (brought within bounds, e.g. after pilot.yaml changed them); nothing remembered.
    const replicas = clamp(current, spec.min, spec.max);
    return {
      replicas,
      recommendation: replicas,
      perInstance: null,
      limitedBy: 'no-data',
      reason: `${obs.unavailable ?? `no figures for ${spec.target.metric === 'rps' ? 'traffic' : 'CPU'} yet`}: holding ${replicas}`,
      history: recent,
    };
  }

  const base = Math.max(1, current);
  const load = Math.max(0, obs.load);
  const perInstance = load / base;
  const missing = Math.max(0, current - obs.measured);
  const upRatio = load / (target * base);
  const downLoad = load + missing * target; // a silent instance counts as at the target when scaling down
  const downRatio = downLoad / (target * base);
  let raw: number;
  let inBand = false;
  if (upRatio > 1 + AUTOSCALE_TOLERANCE) raw = ceilish(load / target);
  else if (downRatio < 1 - AUTOSCALE_TOLERANCE) raw = ceilish(downLoad / target);
  else {
    raw = current;
    inBand = true;
  }
  const recommendation = clamp(raw, spec.min, spec.max);
  const history = [...recent, { at: now, replicas: recommendation }];
  // The scale-up window holds what was recommended in the last `up` ms (none for 0: at once); the
  // scale-down window holds the last `down` ms inclusive (a count seeded at a restart counts there).
  const upTo = Math.min(recommendation, ...recent.filter((r) => now - r.at < spec.scaleUpWindowMs).map((r) => r.replicas));
  const downTo = Math.max(recommendation, ...recent.filter((r) => now - r.at <= spec.scaleDownWindowMs).map((r) => r.replicas));

  let replicas = current;
  let limitedBy: Exclude<AutoscaleLimit, 'no-data'> = inBand ? 'tolerance' : 'none';
  if (replicas < upTo) replicas = upTo;
  if (replicas > downTo) replicas = downTo;
  if (recommendation > current && replicas < recommendation) limitedBy = 'scale-up-window';
  if (recommendation < current && replicas > recommendation) limitedBy = 'scale-down-window';
  if (replicas > current && replicas > maxStepUp(current)) {
    replicas = maxStepUp(current);
    limitedBy = 'rate';
  }
  const cap = input.capacity;
  let capped = false;
  if (cap && replicas > current && replicas > cap.replicas) {
    replicas = Math.max(current, cap.replicas);
    limitedBy = 'capacity';
    capped = true;
  }
  if (replicas > spec.max) {
    replicas = spec.max;
    limitedBy = 'max';
  }
  if (replicas < spec.min) {
    replicas = spec.min;
    limitedBy = 'min';
  }
  if (!capped && !inBand && raw > spec.max && replicas === spec.max) limitedBy = 'max';
  if (!inBand && raw < spec.min && replicas === spec.min && limitedBy === 'none') limitedBy = 'min';

  const measured =
    spec.target.metric === 'rps'
      ? `${fmt(load)} req/s over ${current} instance${current === 1 ? '' : 's'} (${fmt(perInstance)} each; target ${describeTarget(spec.target)})`
      : `CPU ${fmt(perInstance)} % per instance over ${current} (target ${describeTarget(spec.target)}${missing > 0 ? `; ${missing} without a figure` : ''})`;
  const wants = `${recommendation} instance${recommendation === 1 ? '' : 's'}`;
  const why = ((): string => {
    switch (limitedBy) {
      case 'tolerance':
        return `within ${AUTOSCALE_TOLERANCE * 100} % of the target: holding ${replicas}`;
      case 'none':
        return replicas === current ? `holding ${replicas}` : `${replicas > current ? 'up' : 'down'} from ${current} to ${replicas}`;
      case 'min':
        return replicas === current ? `at min ${spec.min}` : `to min ${spec.min} (from ${current})`;
      case 'max':
        return replicas === current ? `at max ${spec.max}: load needs ${raw}` : `up from ${current} to max ${spec.max} (load needs ${raw})`;
      case 'capacity':
        return `capped at ${replicas}: the fleet can place no more${cap?.reason ? ` (${cap.reason})` : ''}`;
      case 'scale-up-window':
        return `${replicas === current ? 'holding' : `up from ${current} to`} ${replicas}: the lowest recommendation over the scale-up window (${formatDuration(spec.scaleUpWindowMs)})`;
      case 'scale-down-window':
        return `${replicas === current ? 'holding' : `down from ${current} to`} ${replicas}: the highest recommendation over the scale-down window (${formatDuration(spec.scaleDownWindowMs)})`;
      case 'rate':
        return `up from ${current} to ${replicas}: a step at most doubles the count (or adds 4)`;
    }
  })();
  return { replicas, recommendation, perInstance, limitedBy, reason: `${measured}: wants ${wants}; ${why}`, history };
}

/**
 * How a canary at `weight` % splits the app's replica count between the new revision and the
 * stable one, for the rollout planner (the count is the autoscaler's; the rollout only splits it):
 * the canary gets ceil(replicas × weight / 100), and while the weight is strictly between 0 and
 * 100 each side keeps at least one instance (so both sides of a split serve; with 1 replica that
 * means one of each, one more than the count). Pure.
 */
export function splitReplicas(replicas: number, weight: number): { readonly canary: number; readonly stable: number } {
  const n = Math.max(0, Math.floor(replicas));
  const w = Math.min(100, Math.max(0, weight));
  if (w === 0) return { canary: 0, stable: n };
  if (w === 100) return { canary: n, stable: 0 };
  if (n <= 1) return { canary: 1, stable: 1 };
  const canary = Math.min(n - 1, Math.max(1, Math.ceil((n * w) / 100 - 1e-9)));
  return { canary, stable: n - canary };
}
