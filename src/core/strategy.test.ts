import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { analyse, type AnalysisFigures } from './analysis.js';
import { resolveAppConfig, validateAppConfig } from './app-config.js';
import { isPilotError } from './errors.js';
import {
  amountFor,
  canaryInstances,
  DEFAULT_ANALYSIS,
  DEFAULT_STRATEGY,
  rolloutBudgetMs,
  rolloutView,
  type AnalysisSpec,
} from './strategy.js';

/** The config error for a pilot.yaml, or undefined when it is fine. */
function configError(raw: unknown): string | undefined {
  try {
    resolveAppConfig(validateAppConfig(raw), 'web');
    return undefined;
  } catch (err) {
    assert.ok(isPilotError(err));
    assert.equal(err.code, 'invalid_config');
    return err.message;
  }
}

describe('pilot.yaml strategy', () => {
  it('defaults to blue-green (today: all at once, nothing kept)', () => {
    assert.deepEqual(resolveAppConfig({}, 'web').strategy, DEFAULT_STRATEGY);
    assert.deepEqual(resolveAppConfig({ strategy: { type: 'blue-green', keepPrevious: '10m' } }, 'web').strategy, {
      type: 'blue-green',
      keepPreviousMs: 600_000,
    });
  });

  it('resolves the issue example', () => {
    const c = resolveAppConfig(
      validateAppConfig({
        strategy: {
          type: 'canary',
          steps: [{ weight: 10, pause: '30s' }, { weight: 50, pause: '1m' }, { weight: 100 }],
          analysis: { maxErrorRate: '1%', maxP99: '500ms', maxErrorRateIncrease: '0.5%', minRequests: 50 },
        },
      }),
      'web',
    );
    assert.deepEqual(c.strategy, {
      type: 'canary',
      steps: [
        { weight: 10, pauseMs: 30_000 },
        { weight: 50, pauseMs: 60_000 },
        { weight: 100, pauseMs: 0 },
      ],
      analysis: { maxErrorRate: 0.01, maxP99Ms: 500, maxErrorRateIncrease: 0.005, minRequests: 50, windowMs: 30_000, allowIdle: false },
    });
    const r = resolveAppConfig(
      validateAppConfig({ strategy: { type: 'rolling', maxSurge: '25%', maxUnavailable: 0, minReady: '5s' } }),
      'web',
    ).strategy;
    assert.deepEqual(r, { type: 'rolling', maxSurge: { percent: 25 }, maxUnavailable: { count: 0 }, minReadyMs: 5000 });
  });

  it('names the field and what is allowed for every bad strategy', () => {
    const cases: [unknown, RegExp][] = [
      [{ type: 'recreate' }, /strategy\.type: must be/],
      [{ type: 'canary', steps: [{ weight: 10 }, { weight: 50 }] }, /strategy\.steps: the last step must have weight 100 \(got 50\)/],
      [
        { type: 'canary', steps: [{ weight: 50 }, { weight: 20 }, { weight: 100 }] },
        /strategy\.steps\[1\]\.weight: must be above the step before \(50\), got 20/,
      ],
      [{ type: 'canary', steps: [{ weight: 0 }, { weight: 100 }] }, /strategy\.steps\.0\.weight: must be integer >= 1/],
      [{ type: 'canary', steps: [{ weight: 101 }] }, /strategy\.steps\.0\.weight: must be integer >= 1 <= 100/],
      [{ type: 'canary', steps: [{ weight: 10, pause: -1 }, { weight: 100 }] }, /strategy\.steps\.0\.pause/],
      [{ type: 'canary', steps: [{ weight: 10, pause: '-5s' }, { weight: 100 }] }, /strategy\.steps\.0\.pause/],
      [{ type: 'canary', analysis: { maxErrorRate: '150%' } }, /strategy\.analysis\.maxErrorRate: a share from 0% to 100%/],
      [{ type: 'canary', analysis: { maxErrorRate: -1 } }, /strategy\.analysis\.maxErrorRate/],
      [{ type: 'canary', analysis: { window: '10m' } }, /strategy\.analysis\.window: from 1s to 5m/],
      [{ type: 'canary', analysis: { maxP99: 0 } }, /strategy\.analysis\.maxP99: above 0/],
      [{ type: 'canary', analysis: { minRequest: 5 } }, /unknown field/],
      [{ type: 'rolling', maxSurge: 0, maxUnavailable: 0 }, /not both 0/],
      [{ type: 'rolling', maxSurge: '150%' }, /strategy\.maxSurge: at most 100%/],
      [{ type: 'rolling', steps: [{ weight: 100 }] }, /strategy\.steps: only for type canary \(this one is rolling\)/],
      [{ type: 'blue-green', maxSurge: 1 }, /strategy\.maxSurge: only for type rolling/],
      [{ steps: [{ weight: 100 }] }, /strategy\.type/],
      [
        { type: 'blue-green', analysis: { maxErrorRate: '1%' } },
        /strategy\.analysis: blue-green analyses the new revision during its watch period/,
      ],
      [{ type: 'rolling', analysis: { window: '1h' } }, /strategy\.analysis\.window: from 1s to 5m/],
    ];
    for (const [strategy, re] of cases) {
      const msg = configError({ strategy });
      assert.ok(msg !== undefined, `accepted ${JSON.stringify(strategy)}`);
      assert.match(msg, re, JSON.stringify(strategy));
    }
  });

  it('amounts: surge rounds up, unavailable down; a canary step runs its share of the replicas, at least one', () => {
    assert.equal(amountFor({ percent: 25 }, 3, 'up'), 1);
    assert.equal(amountFor({ percent: 25 }, 3, 'down'), 0);
    assert.equal(amountFor({ count: 2 }, 3, 'down'), 2);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 100 }), (n, w) => {
        const k = canaryInstances(n, w);
        assert.ok(k >= 1 && k <= n);
        assert.ok(k >= (n * w) / 100);
        if (w === 100) assert.equal(k, n);
      }),
    );
  });

  it('gives a canary that waits for promote a long deploy budget, a plain deploy the old one', () => {
    const deploy = { readyTimeoutMs: 60_000, stopTimeoutMs: 10_000 };
    assert.equal(rolloutBudgetMs({ replicas: 2, deploy }), 100_000);
    const c = resolveAppConfig({ strategy: { type: 'canary', steps: [{ weight: 10 }, { weight: 100 }] } }, 'web');
    assert.ok(rolloutBudgetMs(c) > 3_600_000);
  });

  it('describes a running canary for people: step, weights, what it waits for', () => {
    const strategy = resolveAppConfig(
      { strategy: { type: 'canary', steps: [{ weight: 10, pause: '30s' }, { weight: 100 }] } },
      'web',
    ).strategy;
    const v = rolloutView(
      { strategy, startedAt: 0, progress: { step: 0, weight: 10, since: 1000, command: undefined, verdict: undefined } },
      11_000,
    );
    assert.deepEqual(
      [v.step, v.steps, v.weights, v.pauseLeftMs, v.waiting],
      [1, 2, { stable: 90, canary: 10 }, 20_000, 'the pause: 20s left'],
    );
    const waiting = rolloutView(
      {
        strategy,
        startedAt: 0,
        progress: { step: 0, weight: 10, since: 0, command: undefined, verdict: { verdict: 'wait', reason: '3 of the 50' } },
      },
      60_000,
    );
    assert.equal(waiting.waiting, 'traffic for analysis: 3 of the 50');
  });
});

describe('canary analysis', () => {
  const spec = (p: Partial<AnalysisSpec> = {}): AnalysisSpec => ({ ...DEFAULT_ANALYSIS, ...p });
  const f = (requests: number, errors = 0, p99Ms: number | null = 10): AnalysisFigures => ({ requests, errors, p99Ms });

  it('waits below minRequests, passes a clean canary', () => {
    assert.equal(analyse(spec(), f(49), f(1000)).verdict, 'wait');
    assert.match(analyse(spec(), f(49), undefined).reason, /49 of the 50 canary requests/);
    const ok = analyse(spec(), f(50), f(1000));
    assert.equal(ok.verdict, 'pass');
    assert.match(ok.reason, /error rate 0% , ?p99 10ms over 50 requests in 30s|error rate 0%, p99 10ms over 50 requests in 30s/);
  });

  it('fails early when errors alone exceed the rate over minRequests, and over the threshold after', () => {
    const early = analyse(spec({ maxErrorRate: 0.1 }), f(6, 6), undefined);
    assert.equal(early.verdict, 'fail');
    assert.match(early.reason, /6 errors in 6 requests/);
    assert.equal(analyse(spec({ maxErrorRate: 0.1 }), f(3, 2), undefined).verdict, 'wait', '2 of 50 is 4%: could still pass');
    const late = analyse(spec({ maxErrorRate: 0.01 }), f(200, 3), undefined);
    assert.equal(late.verdict, 'fail');
    assert.deepEqual(late.check, { name: 'maxErrorRate', measured: 0.015, limit: 0.01 });
    assert.match(late.reason, /error rate 1\.5% \(3 of 200 requests in 30s\) > max 1%/);
  });

  it('fails a slow canary on p99, and one much worse than stable in the same window', () => {
    const slow = analyse(spec({ maxP99Ms: 500 }), f(100, 0, 800), f(100));
    assert.equal(slow.verdict, 'fail');
    assert.match(slow.reason, /p99 800ms over 100 requests in 30s > max 500ms/);
    const worse = analyse(spec({ maxErrorRate: 0.5, maxErrorRateIncrease: 0.01 }), f(100, 5), f(1000, 10));
    assert.equal(worse.verdict, 'fail');
    assert.match(worse.reason, /4% over the stable revision's 1%/);
    // Stable with too little traffic is no basis for a comparison.
    assert.equal(analyse(spec({ maxErrorRate: 0.5, maxErrorRateIncrease: 0.01 }), f(100, 5), f(10, 0)).verdict, 'pass');
  });

  it('never passes with errors over the limit, never fails a canary within every limit (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2000 }),
        fc.nat(),
        fc.double({ min: 0, max: 0.5, noNaN: true }),
        fc.integer({ min: 0, max: 200 }),
        (requests, e, max, minRequests) => {
          const errors = requests === 0 ? 0 : e % (requests + 1);
          const v = analyse(spec({ maxErrorRate: max, minRequests }), f(requests, errors), undefined);
          const rate = requests === 0 ? 0 : errors / requests;
          if (v.verdict === 'pass') assert.ok(rate <= max && requests >= minRequests);
          if (requests >= minRequests && rate <= max) assert.equal(v.verdict, 'pass');
        },
      ),
    );
  });
});
