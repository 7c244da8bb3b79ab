import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  binRange,
  emptySummary,
  figures,
  isTrafficSummary,
  LATENCY_BINS,
  latencyBin,
  mergeSummaries,
  quantileMs,
  TrafficWindow,
} from './traffic-window.js';

/** The exact nearest-rank quantile of samples (ms). */
function exact(samples: readonly number[], q: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length))) - 1]!;
}

/** What the histogram promises: within half a bin, i.e. 1/32 of the value, or 0.5 µs (+ the µs flooring). */
function assertWithinBound(estimate: number | null, truth: number, what: string): void {
  assert.notEqual(estimate, null, what);
  const bound = truth / 32 + 0.001;
  assert.ok(Math.abs(estimate! - truth) <= bound, `${what}: estimate ${estimate} ms, exact ${truth} ms, bound ±${bound}`);
}

// Latencies (ms) of several shapes: sub-millisecond, web-app-like, long tails, up to 16 minutes
// (the histogram counts beyond 71 minutes in its last bin).
const latency = fc.oneof(
  fc.double({ min: 0, max: 0.05, noNaN: true }),
  fc.double({ min: 0.05, max: 50, noNaN: true }),
  fc.integer({ min: -3, max: 5 }).chain((e) => fc.double({ min: 10 ** e, max: 10 ** (e + 1), noNaN: true })),
);

describe('traffic window: latency bins', () => {
  it('puts every value in a bin whose range holds it, at most 1/16 wide', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff_fffe }), (us) => {
        const bin = latencyBin(us);
        assert.ok(bin >= 0 && bin < LATENCY_BINS);
        const { low, width } = binRange(bin);
        assert.ok(low <= us && us < low + width, `${us} µs in bin ${bin} [${low}, ${low + width})`);
        if (us >= 32) assert.ok(width / low <= 1 / 16);
      }),
    );
  });

  it('is monotonic and uses every bin', () => {
    let last = -1;
    const seen = new Set<number>();
    for (let e = 0; e < 32; e++) {
      for (let k = 0; k < 64; k++) {
        const us = Math.min(0xffff_ffff, Math.floor(2 ** e + (k * 2 ** e) / 64));
        const bin = latencyBin(us);
        assert.ok(bin >= last);
        last = bin;
        seen.add(bin);
      }
    }
    for (let us = 0; us < 32; us++) seen.add(latencyBin(us));
    assert.equal(seen.size, LATENCY_BINS);
  });

  it('clamps hostile values: negative, NaN, beyond 71 minutes', () => {
    assert.equal(latencyBin(-5), 0);
    assert.equal(latencyBin(Number.NaN), 0);
    assert.equal(latencyBin(1e15), LATENCY_BINS - 1);
    assert.equal(latencyBin(Infinity), LATENCY_BINS - 1);
  });
});

describe('traffic window: percentiles', () => {
  it('are within the bin error bound of the exact values of random samples (property)', () => {
    fc.assert(
      fc.property(fc.array(latency, { minLength: 1, maxLength: 400 }), (samples) => {
        const w = new TrafficWindow(0);
        for (const ms of samples) w.record(5, 200, ms);
        const s = w.summary(5, 60_000);
        assert.equal(s.latency.count, samples.length);
        for (const q of [0.5, 0.9, 0.99, 1]) assertWithinBound(quantileMs(s, q), exact(samples, q), `q=${q}`);
      }),
      { numRuns: 300 },
    );
  });

  it('hold for a bimodal distribution (fast cache hits, slow misses)', () => {
    const samples: number[] = [];
    let x = 7;
    const rand = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 10_000; i++) samples.push(i % 10 === 0 ? 200 + rand() * 800 : 0.2 + rand() * 2);
    const w = new TrafficWindow(0);
    for (const ms of samples) w.record(1000, 200, ms);
    const f = figures(w.summary(1000, 10_000));
    assertWithinBound(f.latencyMs.p50, exact(samples, 0.5), 'p50');
    assertWithinBound(f.latencyMs.p90, exact(samples, 0.9), 'p90');
    assertWithinBound(f.latencyMs.p99, exact(samples, 0.99), 'p99');
    assert.ok(f.latencyMs.p99! > 200 && f.latencyMs.p50! < 3);
  });

  it('are null without latency samples (requests that never reached an instance)', () => {
    const w = new TrafficWindow(0);
    w.record(10, 502);
    const f = figures(w.summary(10, 10_000));
    assert.equal(f.requests, 1);
    assert.deepEqual(f.latencyMs, { mean: null, p50: null, p90: null, p99: null });
    assert.equal(f.errorRate, 1);
  });
});

describe('traffic window: sliding buckets', () => {
  it('counts requests by status class and derives the error rate', () => {
    const w = new TrafficWindow(0);
    for (const code of [200, 201, 204, 301, 404, 499, 500, 503, 101, 0, 999]) w.record(1_000, code, 1);
    const f = figures(w.summary(1_000, 60_000));
    assert.equal(f.requests, 11);
    assert.deepEqual(f.status, { '1xx': 1, '2xx': 3, '3xx': 1, '4xx': 2, '5xx': 2 });
    assert.equal(f.errorRate, Number((2 / 11).toFixed(4)));
  });

  it('forgets buckets older than the window asked for, and covers between N and N + one bucket', () => {
    const w = new TrafficWindow(0, { bucketMs: 10_000, maxWindowMs: 300_000 });
    w.record(5_000, 200, 1); // slot 0
    w.record(65_000, 500, 1); // slot 6
    w.record(71_000, 200, 1); // slot 7
    const last10 = w.summary(72_000, 10_000); // slots 6..7
    assert.equal(last10.requests, 2);
    assert.ok(last10.spanMs >= 10_000 && last10.spanMs <= 20_000, String(last10.spanMs));
    const last60 = w.summary(72_000, 60_000); // slots 1..7
    assert.equal(last60.requests, 2);
    const all = w.summary(72_000, 300_000);
    assert.equal(all.requests, 3);
    // Five minutes later every bucket is outside even the longest window.
    assert.equal(w.summary(72_000 + 320_000, 300_000).requests, 0);
  });

  it('reuses its ring without leaking old counts into new buckets', () => {
    const w = new TrafficWindow(0, { bucketMs: 1000, maxWindowMs: 5000 });
    for (let t = 0; t < 100_000; t += 250) w.record(t, 200, 1); // 4 per bucket, ring wraps many times
    const s = w.summary(99_999, 5000);
    assert.equal(s.requests, 4 * 6); // slots 94..99
    assert.equal(figures(w.summary(99_999, 1000)).requests, 8); // slots 98..99
  });

  it('computes req/s over the span covered, and over its own life when younger than the window', () => {
    const w = new TrafficWindow(100_000);
    for (let i = 0; i < 50; i++) w.record(100_000 + i * 100, 200, 2);
    const young = figures(w.summary(105_000, 60_000));
    assert.equal(young.spanSeconds, 5);
    assert.equal(young.rps, 10);
    const old = new TrafficWindow(0);
    for (let i = 0; i < 600; i++) old.record(60_000 + i * 100, 200, 2); // 10/s during 60..120 s
    const f = figures(old.summary(120_000, 60_000));
    assert.equal(f.requests, 600);
    assert.ok(f.rps >= 600 / 70 && f.rps <= 10, String(f.rps));
  });

  it('refuses a nonsensical shape', () => {
    assert.throws(() => new TrafficWindow(0, { bucketMs: 0 }), RangeError);
    assert.throws(() => new TrafficWindow(0, { bucketMs: 10_000, maxWindowMs: 5_000 }), RangeError);
  });
});

describe('traffic window: merge', () => {
  it("two routers' windows merge into what one window would have counted (property)", () => {
    const event = fc.record({
      t: fc.integer({ min: 0, max: 400_000 }),
      code: fc.constantFrom(200, 302, 404, 500, 503),
      ms: latency,
      router: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(event, { maxLength: 200 }), fc.integer({ min: 1, max: 300 }), (events, windowS) => {
        events.sort((x, y) => x.t - y.t);
        const a = new TrafficWindow(0);
        const b = new TrafficWindow(0);
        const both = new TrafficWindow(0);
        for (const e of events) {
          (e.router ? a : b).record(e.t, e.code, e.ms);
          both.record(e.t, e.code, e.ms);
        }
        const now = 400_001;
        const want = both.summary(now, windowS * 1000);
        const viaSummaries = mergeSummaries(a.summary(now, windowS * 1000), b.summary(now, windowS * 1000));
        assert.equal(viaSummaries.requests, want.requests);
        assert.deepEqual(viaSummaries.status, want.status);
        assert.deepEqual(viaSummaries.latency.bins, want.latency.bins);
        a.merge(b);
        const merged = a.summary(now, windowS * 1000);
        assert.equal(merged.requests, want.requests);
        assert.deepEqual(merged.latency.bins, want.latency.bins);
        assert.ok(Math.abs(merged.latency.sumMs - want.latency.sumMs) < 1e-6 * (1 + want.latency.sumMs));
      }),
      { numRuns: 200 },
    );
  });

  it("keeps the merged percentiles within the bound of the union's exact values", () => {
    const fast = Array.from({ length: 900 }, (_, i) => 1 + (i % 7) * 0.1);
    const slow = Array.from({ length: 100 }, (_, i) => 300 + i);
    const a = new TrafficWindow(0);
    const b = new TrafficWindow(0);
    for (const ms of fast) a.record(1, 200, ms);
    for (const ms of slow) b.record(1, 200, ms);
    const m = mergeSummaries(a.summary(2, 10_000), b.summary(2, 10_000));
    assertWithinBound(quantileMs(m, 0.5), exact([...fast, ...slow], 0.5), 'p50');
    assertWithinBound(quantileMs(m, 0.99), exact([...fast, ...slow], 0.99), 'p99');
    assert.deepEqual(mergeSummaries(emptySummary(), m).latency, m.latency);
  });
});

describe('traffic window: summaries from the wire', () => {
  it('accepts a summary after a JSON round trip and refuses hostile ones', () => {
    const w = new TrafficWindow(0);
    w.record(1, 200, 3);
    const s = JSON.parse(JSON.stringify(w.summary(2, 10_000))) as unknown;
    assert.ok(isTrafficSummary(s));
    const bad: unknown[] = [
      null,
      'x',
      [],
      {},
      { ...(s as object), requests: -1 },
      { ...(s as object), requests: 'many' },
      { ...(s as object), status: [1, 2, 3] },
      { ...(s as object), latency: { layout: 'other', count: 0, sumMs: 0, bins: [] } },
      { ...(s as object), latency: { layout: 'us-log2x16-v1', count: 1, sumMs: 0, bins: [[LATENCY_BINS, 1]] } },
      { ...(s as object), latency: { layout: 'us-log2x16-v1', count: 1, sumMs: 0, bins: [[0.5, 1]] } },
      { ...(s as object), spanMs: Number.NaN },
      { ...(s as object), latency: { layout: 'us-log2x16-v1', count: 1, sumMs: 0, bins: new Array(LATENCY_BINS + 1).fill([0, 1]) } },
    ];
    for (const b of bad) assert.equal(isTrafficSummary(b), false, JSON.stringify(b)?.slice(0, 120));
  });
});
