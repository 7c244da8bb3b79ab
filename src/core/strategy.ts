/**
 * Rollout strategies: how a deploy moves an app from its active revision to the new one. pilot.yaml
 * `strategy:` (its schema is here, used by app-config.ts) resolves into a `Strategy`; the planners in
 * core/rollout.ts follow it.
 *
 *   blue-green (the default: today's behaviour, named)  a full new set beside the old one; one switch
 *       when all of it is ready; the previous set kept `keepPrevious` (default 0) for an instant switch back
 *   rolling   old instances replaced a few at a time: at most replicas + maxSurge instances, at least
 *       replicas - maxUnavailable available (ready for minReady); traffic follows the ready instances
 *   canary    a share of the traffic (weight steps with pauses) to the new revision, analysed against
 *       thresholds and against the stable revision in the same window; rolled back on a failed check;
 *       promoted after the last step (weight 100) has been watched for its pause
 *
 * Pure: no I/O.
 */
import { Type, type Static } from '@sinclair/typebox';
import { DURATION_PATTERN, parseDuration } from './duration.js';

/** "25%" or a count. */
export type Amount = { readonly percent: number } | { readonly count: number };

export interface CanaryStep {
  /** Share of the traffic for the new revision, 1–100. */
  readonly weight: number;
  /** How long the step lasts once its instances are ready; undefined: until `pilot promote` (the last step: 0). */
  readonly pauseMs: number | undefined;
}

export interface AnalysisSpec {
  /** Highest share of 5xx answers of the canary (0–1). */
  readonly maxErrorRate: number | undefined;
  /** Highest p99 latency of the canary (ms). */
  readonly maxP99Ms: number | undefined;
  /** Highest excess of the canary's error rate over the stable revision's, same window (0–1). */
  readonly maxErrorRateIncrease: number | undefined;
  /** Fewer canary requests than this in the window: the step waits (errors can still fail it). */
  readonly minRequests: number;
  /** The window the figures cover (ms). */
  readonly windowMs: number;
  /** A step whose pause is over with fewer than minRequests passes anyway. */
  readonly allowIdle: boolean;
}

export type Strategy =
  | {
      readonly type: 'blue-green';
      readonly keepPreviousMs: number;
      /** After the switch, watch the new revision this long (previous set up, out of the table) before it is final; 0: none. */
      readonly watchMs?: number | undefined;
      /** Checked during the watch (thresholds; the stable figures are those before the switch). */
      readonly analysis?: AnalysisSpec | undefined;
    }
  | {
      readonly type: 'rolling';
      readonly maxSurge: Amount;
      readonly maxUnavailable: Amount;
      readonly minReadyMs: number;
      /** Checked while old and new serve side by side: a failed check rolls back (the old set is brought back to replicas). */
      readonly analysis?: AnalysisSpec | undefined;
    }
  | { readonly type: 'canary'; readonly steps: readonly CanaryStep[]; readonly analysis: AnalysisSpec };

export type StrategyType = Strategy['type'];

/** What a deploy does when pilot.yaml says nothing: today's behaviour. */
export const DEFAULT_STRATEGY: Strategy = { type: 'blue-green', keepPreviousMs: 0 };

export const DEFAULT_ANALYSIS: AnalysisSpec = {
  maxErrorRate: 0.01,
  maxP99Ms: undefined,
  maxErrorRateIncrease: undefined,
  minRequests: 50,
  windowMs: 30_000,
  allowIdle: false,
};

const Percent = Type.Union([Type.Number({ minimum: 0, maximum: 100 }), Type.String({ pattern: '^\\d+(\\.\\d+)?%$' })], {
  description: 'A share: "1%", "0.5%" or a number of percent',
});
const Amt = Type.Union([Type.Integer({ minimum: 0, maximum: 100 }), Type.String({ pattern: '^\\d{1,3}%$' })], {
  description: 'A number of instances, or a share of the replicas: "25%"',
});
const Dur = Type.Union([Type.String({ pattern: DURATION_PATTERN }), Type.Number({ minimum: 0 })]);
/** A duration field with what it means (docs/pilot-yaml.md shows it). */
const dur = (what: string) => Type.Union(Dur.anyOf, { description: `${what}. A duration: "30s", "5m", or a number of seconds` });

/** pilot.yaml `strategy:` */
export const StrategySchema = Type.Object(
  {
    type: Type.Union([Type.Literal('blue-green'), Type.Literal('rolling'), Type.Literal('canary')], {
      description: 'blue-green (default), rolling or canary',
    }),
    keepPrevious: Type.Optional(
      dur('blue-green: keep the previous set running (out of the routing table) this long after the switch, for an instant rollback'),
    ),
    watch: Type.Optional(dur('blue-green: a trial after the switch, the old set kept up; a crash loop or a failed analysis switches back')),
    maxSurge: Type.Optional(Amt),
    maxUnavailable: Type.Optional(Amt),
    minReady: Type.Optional(dur('rolling: how long a new instance must stay ready before it counts as available')),
    steps: Type.Optional(
      Type.Array(
        Type.Object(
          {
            weight: Type.Integer({ minimum: 1, maximum: 100, description: 'Share of the traffic for the new revision, 1-100' }),
            pause: Type.Optional(dur('How long the step lasts, analysis running; none: it waits for `pilot promote`')),
          },
          { additionalProperties: false },
        ),
        {
          minItems: 1,
          maxItems: 20,
          description: 'canary: the steps, rising and ending at 100 (default: 10 % for 1m, 50 % for 1m, 100)',
        },
      ),
    ),
    analysis: Type.Optional(
      Type.Object(
        {
          maxErrorRate: Type.Optional(Percent),
          maxP99: Type.Optional(dur("Highest p99 latency of the new revision's requests")),
          maxErrorRateIncrease: Type.Optional(Percent),
          minRequests: Type.Optional(
            Type.Integer({
              minimum: 0,
              maximum: 1_000_000,
              description: 'Fewer requests of the new revision in the window: the step waits (default 50)',
            }),
          ),
          window: Type.Optional(dur("The router's figures over this window, 1s to 5m (default 30s)")),
          allowIdle: Type.Optional(Type.Boolean({ description: 'true: a step whose pause is over passes with too few requests' })),
        },
        { additionalProperties: false, description: "Checks of the new revision's traffic figures; a failed one rolls back" },
      ),
    ),
  },
  { additionalProperties: false, description: 'How a deploy moves traffic to the new revision (default: blue-green)' },
);
export type StrategyInput = Static<typeof StrategySchema>;

/** A fraction 0–1 from "1%", "0.5%" or a number of percent. */
export function percentOf(v: string | number): number {
  const n = typeof v === 'number' ? v : Number(v.slice(0, -1));
  return n / 100;
}

function amountOf(v: string | number | undefined, dflt: Amount): Amount {
  if (v === undefined) return dflt;
  if (typeof v === 'number') return { count: v };
  return { percent: Number(v.slice(0, -1)) };
}

function durationOf(v: string | number | undefined): number | undefined {
  return v === undefined ? undefined : (parseDuration(v) ?? undefined);
}

/**
 * Resolve pilot.yaml `strategy:` (already valid against StrategySchema), or explain what is wrong:
 * returns the problems by field ("strategy.steps[1].weight: …"), empty when it is fine.
 */
export function resolveStrategy(input: StrategyInput | undefined): { strategy: Strategy } | { problems: string[] } {
  if (input === undefined) return { strategy: DEFAULT_STRATEGY };
  const problems: string[] = [];
  const only = (type: StrategyType, fields: readonly (keyof StrategyInput)[]): void => {
    for (const f of fields) {
      if (input[f] !== undefined) problems.push(`strategy.${f}: only for type ${type} (this one is ${input.type})`);
    }
  };
  if (input.type !== 'blue-green') only('blue-green', ['keepPrevious', 'watch']);
  if (input.type !== 'rolling') only('rolling', ['maxSurge', 'maxUnavailable', 'minReady']);
  if (input.type !== 'canary') only('canary', ['steps']);
  if (problems.length > 0) return { problems };

  switch (input.type) {
    case 'blue-green': {
      const watchMs = durationOf(input.watch) ?? 0;
      if (input.analysis !== undefined && watchMs === 0)
        return {
          problems: ['strategy.analysis: blue-green analyses the new revision during its watch period: set watch (e.g. watch: 1m)'],
        };
      const analysis = input.analysis === undefined && watchMs === 0 ? undefined : resolveAnalysis(input.analysis ?? {}, problems);
      if (problems.length > 0) return { problems };
      return {
        strategy: {
          type: 'blue-green',
          keepPreviousMs: durationOf(input.keepPrevious) ?? 0,
          ...(watchMs > 0 ? { watchMs, analysis } : {}),
        },
      };
    }
    case 'rolling': {
      const maxSurge = amountOf(input.maxSurge, { percent: 25 });
      const maxUnavailable = amountOf(input.maxUnavailable, { count: 0 });
      const pct = (a: Amount): number | undefined => ('percent' in a ? a.percent : undefined);
      for (const [f, a] of [
        ['maxSurge', maxSurge],
        ['maxUnavailable', maxUnavailable],
      ] as const) {
        const p = pct(a);
        if (p !== undefined && p > 100) problems.push(`strategy.${f}: at most 100% (got ${p}%)`);
      }
      const zero = (a: Amount): boolean => ('percent' in a ? a.percent === 0 : a.count === 0);
      if (zero(maxSurge) && zero(maxUnavailable))
        problems.push('strategy.maxSurge and strategy.maxUnavailable: not both 0 (nothing could ever be replaced); set maxSurge: 1');
      const analysis = input.analysis === undefined ? undefined : resolveAnalysis(input.analysis, problems);
      if (problems.length > 0) return { problems };
      return {
        strategy: {
          type: 'rolling',
          maxSurge,
          maxUnavailable,
          minReadyMs: durationOf(input.minReady) ?? 0,
          ...(analysis ? { analysis } : {}),
        },
      };
    }
    case 'canary': {
      const steps = input.steps ?? [{ weight: 10, pause: '1m' }, { weight: 50, pause: '1m' }, { weight: 100 }];
      steps.forEach((s, k) => {
        if (k > 0 && s.weight <= steps[k - 1]!.weight)
          problems.push(`strategy.steps[${k}].weight: must be above the step before (${steps[k - 1]!.weight}), got ${s.weight}`);
      });
      if (steps[steps.length - 1]!.weight !== 100)
        problems.push(`strategy.steps: the last step must have weight 100 (got ${steps[steps.length - 1]!.weight}); add {weight: 100}`);
      const analysis = resolveAnalysis(input.analysis ?? {}, problems);
      if (problems.length > 0) return { problems };
      return {
        strategy: {
          type: 'canary',
          steps: steps.map((s, k) => ({ weight: s.weight, pauseMs: durationOf(s.pause) ?? (k === steps.length - 1 ? 0 : undefined) })),
          analysis,
        },
      };
    }
  }
}

/** pilot.yaml `strategy.analysis`, its problems appended to `problems`. */
function resolveAnalysis(a: NonNullable<StrategyInput['analysis']>, problems: string[]): AnalysisSpec {
  const rate = (f: 'maxErrorRate' | 'maxErrorRateIncrease'): number | undefined => {
    const v = a[f];
    if (v === undefined) return undefined;
    const r = percentOf(v);
    if (!(r >= 0 && r <= 1)) problems.push(`strategy.analysis.${f}: a share from 0% to 100% (got ${JSON.stringify(v)})`);
    return r;
  };
  const maxErrorRate = a.maxErrorRate === undefined ? DEFAULT_ANALYSIS.maxErrorRate : rate('maxErrorRate');
  const maxErrorRateIncrease = rate('maxErrorRateIncrease');
  const windowMs = durationOf(a.window) ?? DEFAULT_ANALYSIS.windowMs;
  if (windowMs < 1000 || windowMs > 300_000) problems.push(`strategy.analysis.window: from 1s to 5m (got ${JSON.stringify(a.window)})`);
  const maxP99Ms = durationOf(a.maxP99);
  if (maxP99Ms !== undefined && maxP99Ms <= 0) problems.push(`strategy.analysis.maxP99: above 0 (got ${JSON.stringify(a.maxP99)})`);
  return {
    maxErrorRate,
    maxP99Ms,
    maxErrorRateIncrease,
    minRequests: a.minRequests ?? DEFAULT_ANALYSIS.minRequests,
    windowMs,
    allowIdle: a.allowIdle ?? false,
  };
}

/** An amount of `replicas` instances: percentages of surge round up, of unavailability down (Kubernetes). */
export function amountFor(a: Amount, replicas: number, round: 'up' | 'down'): number {
  if ('count' in a) return a.count;
  const v = (a.percent * replicas) / 100;
  return round === 'up' ? Math.ceil(v) : Math.floor(v);
}

/** How many instances of the new revision a canary step of `weight` runs: its share of the replicas, at least one. */
export function canaryInstances(replicas: number, weight: number): number {
  return Math.max(1, Math.min(replicas, Math.ceil((replicas * weight) / 100)));
}

/** "canary 10% → 50% → 100%", "rolling (surge 1, unavailable 0)", "blue-green": for status lines. */
export function describeStrategy(s: Strategy): string {
  switch (s.type) {
    case 'blue-green': {
      const extra = [
        ...(s.watchMs ? [`watched ${Math.round(s.watchMs / 1000)}s`] : []),
        ...(s.keepPreviousMs > 0 ? [`previous kept ${Math.round(s.keepPreviousMs / 1000)}s`] : []),
      ];
      return extra.length > 0 ? `blue-green (${extra.join(', ')})` : 'blue-green';
    }
    case 'rolling': {
      const a = (x: Amount): string => ('count' in x ? String(x.count) : `${x.percent}%`);
      return `rolling (surge ${a(s.maxSurge)}, unavailable ${a(s.maxUnavailable)})`;
    }
    case 'canary':
      return `canary ${s.steps.map((x) => `${x.weight}%`).join(' → ')}`;
  }
}

/** What `pilot status` shows of a running rollout. */
export interface RolloutView {
  readonly strategy: Strategy['type'];
  readonly description: string;
  /** Canary: the current step (1-based) and how many; else undefined. */
  readonly step: number | undefined;
  readonly steps: number | undefined;
  /** Shares of the traffic now. */
  readonly weights: { readonly stable: number; readonly canary: number };
  /** Canary: ms left in the current step's pause (undefined: it waits for its instances, or for `pilot promote`). */
  readonly pauseLeftMs: number | undefined;
  /** What it waits for, in words. */
  readonly waiting: string;
  readonly verdict: { readonly verdict: string; readonly reason: string } | undefined;
  readonly command: string | undefined;
}

/** The running rollout as a person reads it. `since` and `now` are wall-clock ms. Pure. */
export function rolloutView(
  r: {
    readonly strategy?: Strategy | undefined;
    readonly startedAt: number;
    readonly progress?:
      | {
          readonly step: number;
          readonly weight: number;
          readonly since: number | undefined;
          readonly command: string | undefined;
          readonly verdict: { readonly verdict: string; readonly reason: string } | undefined;
        }
      | undefined;
  },
  now: number,
): RolloutView {
  const s = r.strategy ?? DEFAULT_STRATEGY;
  const p = r.progress ?? { step: 0, weight: 0, since: undefined, command: undefined, verdict: undefined };
  const weights = { stable: 100 - p.weight, canary: p.weight };
  const base = { strategy: s.type, description: describeStrategy(s), weights, verdict: p.verdict, command: p.command };
  if (s.type !== 'canary') {
    const waiting =
      s.type === 'rolling'
        ? `${p.step} new instance(s) available, ${p.weight}% of the traffic on the new revision`
        : p.weight === 100
          ? `the watch period to end${p.verdict ? ` (analysis ${p.verdict.verdict})` : ''}`
          : 'the new revision to be ready, then one switch';
    return { ...base, step: undefined, steps: undefined, pauseLeftMs: undefined, waiting };
  }
  const idx = Math.min(p.step, s.steps.length - 1);
  const step = s.steps[idx]!;
  const since = p.since ?? r.startedAt;
  let pauseLeftMs: number | undefined;
  let waiting: string;
  if (p.weight !== step.weight) waiting = `step ${idx + 1}'s instances to be ready (then ${step.weight}% of the traffic)`;
  else if (step.pauseMs === undefined) waiting = '`pilot promote` (this step has no pause)';
  else {
    pauseLeftMs = Math.max(0, since + step.pauseMs - now);
    waiting =
      pauseLeftMs > 0
        ? `the pause: ${Math.ceil(pauseLeftMs / 1000)}s left`
        : p.verdict?.verdict === 'wait'
          ? `traffic for analysis: ${p.verdict.reason}`
          : 'analysis to pass';
  }
  return { ...base, step: idx + 1, steps: s.steps.length, pauseLeftMs, waiting };
}

/**
 * How long a deploy may wait for its rollout to end: the ready timeout, and for a stepped strategy
 * every step's pause and instances too (a step waiting for `pilot promote` adds an hour).
 */
export function rolloutBudgetMs(c: {
  readonly strategy?: Strategy | undefined;
  readonly replicas: number;
  readonly deploy: { readonly readyTimeoutMs: number; readonly stopTimeoutMs: number };
}): number {
  const s = c.strategy ?? DEFAULT_STRATEGY;
  const base = c.deploy.readyTimeoutMs + c.deploy.stopTimeoutMs + 30_000;
  switch (s.type) {
    case 'blue-green':
      return base + (s.watchMs ?? 0) + (s.analysis ? s.analysis.windowMs : 0);
    case 'rolling':
      return base + c.replicas * (c.deploy.readyTimeoutMs + s.minReadyMs);
    case 'canary':
      return base + s.steps.reduce((t, x) => t + c.deploy.readyTimeoutMs + (x.pauseMs ?? 3_600_000) + s.analysis.windowMs, 0);
  }
}
