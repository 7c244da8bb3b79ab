/**
 * pilot.yaml `autoscale`: its schema (part of schema/pilot.schema.json) and its resolution into an
 * AutoscaleSpec, with the checks a schema cannot say (min ≤ max, exactly one target, CPU range).
 * Pure.
 *
 *   autoscale: { min: 2, max: 10, targetRps: 50 }          # req/s per instance, from the router
 *   autoscale: { min: 1, max: 4, targetCpu: 70% }          # CPU per instance, from the agents
 *   optional:  scaleDownWindow: 5m (default)  scaleUpWindow: 0s (default)
 *
 * `replicas:` beside `autoscale:` is the starting count of a new app (it must lie in [min, max]);
 * without it the app starts at `min`.
 */
import { Type } from '@sinclair/typebox';
import { PilotError, fail } from './errors.js';
import { DURATION_PATTERN, parseDuration } from './duration.js';

/** The most replicas an app may have (pilot.yaml replicas, `pilot scale`, autoscale max). */
export const MAX_REPLICAS = 100;

const duration = (description: string) =>
  Type.Union([Type.String({ pattern: DURATION_PATTERN }), Type.Number({ minimum: 0 })], {
    description: `${description}. A duration: "30s", "5m", or a number of seconds`,
  });

export const AutoscaleSchema = Type.Object(
  {
    min: Type.Integer({ minimum: 1, maximum: MAX_REPLICAS, description: 'Fewest replicas (≥ 1)' }),
    max: Type.Integer({ minimum: 1, maximum: MAX_REPLICAS, description: 'Most replicas (≥ min, ≤ 100)' }),
    targetRps: Type.Optional(
      Type.Number({
        exclusiveMinimum: 0,
        description: "Requests per second per instance to aim for (from the router's figures)",
      }),
    ),
    targetCpu: Type.Optional(
      Type.Union([Type.String({ pattern: '^\\d+(\\.\\d+)?\\s*%$' }), Type.Number()], {
        description:
          'CPU use per instance to aim for, 1-100 %: "70%" or 70. A share of the instance\'s resources.cpu when set, else of one core (from the agents)',
      }),
    ),
    scaleDownWindow: Type.Optional(
      duration('Scale down only to the highest count recommended over this window (default 5m): load must stay low that long'),
    ),
    scaleUpWindow: Type.Optional(
      duration('Scale up only to the lowest count recommended over this window (default 0s: at once; the figures are already averaged)'),
    ),
  },
  {
    additionalProperties: false,
    description: 'Scale the replica count with load: min/max replicas and one target (targetRps or targetCpu)',
  },
);

export type AutoscaleTarget = { readonly metric: 'rps'; readonly value: number } | { readonly metric: 'cpu'; readonly value: number };

/** The resolved `autoscale`: what the decision (core/autoscale.ts) and the loop (control/autoscaler.ts) read. */
export interface AutoscaleSpec {
  readonly min: number;
  readonly max: number;
  /** rps: requests/s per instance; cpu: percent (1-100) of an instance's CPU allowance. */
  readonly target: AutoscaleTarget;
  readonly scaleUpWindowMs: number;
  readonly scaleDownWindowMs: number;
}

export interface AutoscaleInput {
  readonly min: number;
  readonly max: number;
  readonly targetRps?: number | undefined;
  readonly targetCpu?: string | number | undefined;
  readonly scaleDownWindow?: string | number | undefined;
  readonly scaleUpWindow?: string | number | undefined;
}

export const DEFAULT_SCALE_DOWN_WINDOW_MS = 5 * 60_000;
/** The longest stabilisation window (the loop keeps this much history). */
export const MAX_AUTOSCALE_WINDOW_MS = 60 * 60_000;

const invalid = (what: string, hint: string): PilotError => fail.autoscaleInvalid({ what, hint });

function windowMs(v: string | number | undefined, field: string, dflt: number): number {
  if (v === undefined) return dflt;
  const ms = parseDuration(v);
  if (ms === undefined || ms > MAX_AUTOSCALE_WINDOW_MS)
    throw invalid(`${field} ${JSON.stringify(v)} must be a duration from 0s to 1h`, `For example ${field}: 5m.`);
  return ms;
}

/** The resolved spec of a schema-valid `autoscale` (undefined: none), given pilot.yaml `replicas` if set. */
export function resolveAutoscale(input: AutoscaleInput | undefined, replicas: number | undefined): AutoscaleSpec | undefined {
  if (input === undefined) return undefined;
  const { min, max } = input;
  if (min > max) throw invalid(`min (${min}) is greater than max (${max})`, 'Set min ≤ max, e.g. { min: 2, max: 10, targetRps: 50 }.');
  const hasRps = input.targetRps !== undefined;
  const hasCpu = input.targetCpu !== undefined;
  if (hasRps === hasCpu) {
    throw invalid(
      hasRps ? 'targetRps and targetCpu are both set' : 'no target: set targetRps or targetCpu',
      'Give exactly one target: targetRps (requests per second per instance, > 0) or targetCpu (1-100 %, e.g. 70%).',
    );
  }
  let target: AutoscaleTarget;
  if (hasRps) {
    target = { metric: 'rps', value: input.targetRps! };
  } else {
    const raw = input.targetCpu!;
    const pct = typeof raw === 'number' ? raw : Number(raw.replace('%', '').trim());
    if (!Number.isFinite(pct) || pct < 1 || pct > 100)
      throw invalid(
        `targetCpu ${JSON.stringify(raw)} must be from 1 to 100 %`,
        "Write it as a percentage of one instance's CPU, e.g. targetCpu: 70%.",
      );
    target = { metric: 'cpu', value: pct };
  }
  if (replicas !== undefined && (replicas < min || replicas > max)) {
    throw invalid(
      `replicas (${replicas}) is outside min ${min} to max ${max}`,
      'With autoscale, `replicas` is only the starting count of a new app: set it within [min, max], or remove it (the app starts at min).',
    );
  }
  return {
    min,
    max,
    target,
    scaleUpWindowMs: windowMs(input.scaleUpWindow, 'scaleUpWindow', 0),
    scaleDownWindowMs: windowMs(input.scaleDownWindow, 'scaleDownWindow', DEFAULT_SCALE_DOWN_WINDOW_MS),
  };
}

/** "50 req/s" / "70 % CPU" per instance, for messages. */
export function describeTarget(t: AutoscaleTarget): string {
  return t.metric === 'rps' ? `${t.value} req/s per instance` : `${t.value} % CPU per instance`;
}
