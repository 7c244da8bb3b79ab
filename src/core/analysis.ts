/**
 * Canary analysis: the canary's traffic figures against the strategy's thresholds and against the
 * stable revision's figures over the same window. Pure.
 *
 *   fail  a threshold is exceeded (which one, the measured value, the limit, the window), or the
 *         canary's errors already exceed the allowed rate even if every request still missing to
 *         minRequests succeeded (a canary answering only 500s fails on its first few errors)
 *   wait  fewer than minRequests canary requests in the window: no verdict on too little data
 *   pass  enough requests and every check within its limit
 */
import type { AnalysisSpec } from './strategy.js';

/** What analysis reads of one revision over the window. */
export interface AnalysisFigures {
  readonly requests: number;
  /** 5xx answers. */
  readonly errors: number;
  /** null: no request had a latency. */
  readonly p99Ms: number | null;
}

export interface Verdict {
  readonly verdict: 'pass' | 'fail' | 'wait';
  /** One line: why (fail: "error rate 100% over 30s > max 1%"; wait: "12 of 50 requests"). */
  readonly reason: string;
  /** The check that failed, with what was measured. */
  readonly check?: { readonly name: string; readonly measured: number; readonly limit: number } | undefined;
}

const pct = (x: number): string => `${Number((x * 100).toFixed(2))}%`;
const secs = (ms: number): string => `${Math.round(ms / 1000)}s`;
const count = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;

export function analyse(spec: AnalysisSpec, canary: AnalysisFigures, stable: AnalysisFigures | undefined): Verdict {
  const w = secs(spec.windowMs);
  const rate = canary.requests > 0 ? canary.errors / canary.requests : 0;
  if (spec.maxErrorRate !== undefined && canary.errors > 0) {
    // Over at least minRequests: the rate cannot come back under the limit with the requests still to come.
    const floor = canary.errors / Math.max(canary.requests, spec.minRequests);
    if (floor > spec.maxErrorRate) {
      const enough = canary.requests >= spec.minRequests;
      return {
        verdict: 'fail',
        reason: enough
          ? `error rate ${pct(rate)} (${canary.errors} of ${canary.requests} requests in ${w}) > max ${pct(spec.maxErrorRate)}`
          : `${count(canary.errors, 'error')} in ${count(canary.requests, 'request')} (${w}): over max ${pct(spec.maxErrorRate)} of the ${spec.minRequests} requests analysis needs, whatever the rest`,
        check: { name: 'maxErrorRate', measured: enough ? rate : floor, limit: spec.maxErrorRate },
      };
    }
  }
  if (canary.requests < spec.minRequests) {
    return { verdict: 'wait', reason: `${canary.requests} of the ${spec.minRequests} canary requests analysis needs (${w} window)` };
  }
  if (spec.maxP99Ms !== undefined && canary.p99Ms !== null && canary.p99Ms > spec.maxP99Ms) {
    return {
      verdict: 'fail',
      reason: `p99 ${Math.round(canary.p99Ms)}ms over ${canary.requests} requests in ${w} > max ${Math.round(spec.maxP99Ms)}ms`,
      check: { name: 'maxP99', measured: canary.p99Ms, limit: spec.maxP99Ms },
    };
  }
  if (spec.maxErrorRateIncrease !== undefined && stable !== undefined && stable.requests >= spec.minRequests) {
    const base = stable.errors / stable.requests;
    if (rate - base > spec.maxErrorRateIncrease) {
      return {
        verdict: 'fail',
        reason: `error rate ${pct(rate)} is ${pct(rate - base)} over the stable revision's ${pct(base)} in ${w} > max increase ${pct(spec.maxErrorRateIncrease)}`,
        check: { name: 'maxErrorRateIncrease', measured: rate - base, limit: spec.maxErrorRateIncrease },
      };
    }
  }
  const p99 = canary.p99Ms === null ? '' : `, p99 ${Math.round(canary.p99Ms)}ms`;
  return { verdict: 'pass', reason: `error rate ${pct(rate)}${p99} over ${canary.requests} requests in ${w}` };
}
