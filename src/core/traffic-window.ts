/**
 * Live traffic figures of one key (an app's revision): a sliding window of fixed time buckets
 * (10 s each over 5 min by default), each counting requests, their status classes and their
 * latencies in a log-linear histogram. Recording is a few integer operations on typed arrays
 * allocated once: no per-request allocation, no sorting, no clock (time comes in as `now`, in
 * milliseconds of a monotonic clock). Queries sum the buckets of the last N seconds into a
 * `TrafficSummary` (a plain value: JSON over the wire, merged across routers) and `figures` turns
 * a summary into req/s, error rate and percentiles.
 *
 *   time ──►  … │ slot s-3 │ slot s-2 │ slot s-1 │ slot s (now, partial) │
 *                 └── a query for the last N s takes every slot from floor((now-N)/bucket) to s:
 *                     it covers between N and N + bucket milliseconds (`spanMs` says how many).
 *
 * Latency histogram (HDR-style): integer microseconds; 0-31 µs exact, then every power of two is cut
 * into 16 equal bins, up to 2^32 µs (71 min; longer is counted in the last bin). A value's bin is
 * found with clz32 and a shift. A percentile is the midpoint of the bin that holds the nearest-rank
 * sample, so it is within half a bin of the exact value: at most 1/32 (3.1 %) of it, or 0.5 µs.
 */

/** Microseconds below this are their own bin. */
const LINEAR = 32;
/** log2 of the bins per power of two. */
const SUB_BITS = 4;
const SUB = 1 << SUB_BITS;
const MAX_US = 0xffff_ffff;
/** Bins of the latency histogram. */
export const LATENCY_BINS = LINEAR + (32 - 5) * SUB;
/** Names the bin layout on the wire: a reader with another layout refuses the numbers. */
export const LATENCY_LAYOUT = 'us-log2x16-v1';

/** The histogram bin of a latency in microseconds. */
export function latencyBin(us: number): number {
  const v = us >= MAX_US ? MAX_US : us > 0 ? Math.floor(us) : 0;
  if (v < LINEAR) return v;
  const m = 31 - Math.clz32(v); // 5..31: v is in [2^m, 2^(m+1))
  return LINEAR + ((m - 5) << SUB_BITS) + ((v >>> (m - SUB_BITS)) - SUB);
}

/** The lowest value (µs) of a bin and its width (µs): the bin holds [low, low + width). */
export function binRange(bin: number): { low: number; width: number } {
  if (bin < LINEAR) return { low: bin, width: 1 };
  const m = 5 + ((bin - LINEAR) >> SUB_BITS);
  const width = 2 ** (m - SUB_BITS);
  return { low: (SUB + ((bin - LINEAR) & (SUB - 1))) * width, width };
}

/** Counts of one status class each: 1xx, 2xx, 3xx, 4xx, 5xx. */
export type StatusCounts = readonly [number, number, number, number, number];

/** What a window holds for a stretch of time: plain data (JSON on the wire), mergeable. */
export interface TrafficSummary {
  /** How much time the figures cover (ms): the window asked for, up to one bucket more, less if the key is younger. */
  readonly spanMs: number;
  readonly requests: number;
  /** Requests by status class; requests outside 100-599 are only in `requests`. */
  readonly status: StatusCounts;
  readonly latency: {
    readonly layout: string;
    /** Requests with a latency (those that reached an instance). */
    readonly count: number;
    readonly sumMs: number;
    /** Non-empty bins as [bin, count], bins ascending. */
    readonly bins: readonly (readonly [number, number])[];
  };
}

/** The figures people read. Latencies are null when no request in the window had one. */
export interface TrafficFigures {
  readonly spanSeconds: number;
  readonly requests: number;
  readonly rps: number;
  readonly status: {
    readonly '1xx': number;
    readonly '2xx': number;
    readonly '3xx': number;
    readonly '4xx': number;
    readonly '5xx': number;
  };
  /** 5xx over all requests (0 without requests). */
  readonly errorRate: number;
  readonly latencyMs: {
    readonly mean: number | null;
    readonly p50: number | null;
    readonly p90: number | null;
    readonly p99: number | null;
  };
}

export interface TrafficWindowOptions {
  /** Width of a time bucket (ms). Default 10 s. */
  readonly bucketMs?: number;
  /** The longest window a query may ask for (ms). Default 5 min. */
  readonly maxWindowMs?: number;
}

// Layout of one bucket in `#counts`: fields, then the latency bins.
const F_REQUESTS = 0;
const F_STATUS = 1; // 1..5: 1xx..5xx
const F_LATENCY_COUNT = 6;
const FIELDS = 7;
const STRIDE = FIELDS + LATENCY_BINS;

/** One key's sliding window. `now` is milliseconds (≥ 0) on a monotonic clock, never going back. */
export class TrafficWindow {
  readonly bucketMs: number;
  readonly maxWindowMs: number;
  readonly #capacity: number;
  /** Which slot (floor(now / bucketMs)) each ring entry holds; -1: none yet. */
  readonly #slots: Float64Array;
  readonly #counts: Uint32Array;
  readonly #sumMs: Float64Array;
  readonly #createdAt: number;
  #lastAt: number;

  constructor(now: number, opts: TrafficWindowOptions = {}) {
    this.bucketMs = opts.bucketMs ?? 10_000;
    this.maxWindowMs = opts.maxWindowMs ?? 300_000;
    if (!(this.bucketMs > 0) || !(this.maxWindowMs >= this.bucketMs))
      throw new RangeError('bucketMs must be > 0 and maxWindowMs ≥ bucketMs');
    // Every slot a query may touch: the window's worth of whole buckets, the partial first one, the current one.
    this.#capacity = Math.ceil(this.maxWindowMs / this.bucketMs) + 2;
    this.#slots = new Float64Array(this.#capacity).fill(-1);
    this.#counts = new Uint32Array(this.#capacity * STRIDE);
    this.#sumMs = new Float64Array(this.#capacity);
    this.#createdAt = now;
    this.#lastAt = now;
  }

  /** When a request was last recorded (or the window created), for pruning idle keys. */
  get lastAt(): number {
    return this.#lastAt;
  }

  /** Count one request: its status code and, when it reached an instance, its latency (ms). */
  record(now: number, status: number, latencyMs?: number): void {
    const base = this.#entry(now) * STRIDE;
    const counts = this.#counts;
    counts[base + F_REQUESTS]!++;
    const cls = (status / 100) | 0;
    if (cls >= 1 && cls <= 5) counts[base + F_STATUS - 1 + cls]!++;
    if (latencyMs !== undefined) {
      counts[base + F_LATENCY_COUNT]!++;
      counts[base + FIELDS + latencyBin(latencyMs * 1000)]!++;
      this.#sumMs[base / STRIDE]! += latencyMs;
    }
    this.#lastAt = now;
  }

  /** The ring entry of now's slot, cleared when it held an older slot. */
  #entry(now: number): number {
    const slot = Math.floor(now / this.bucketMs);
    const i = slot % this.#capacity;
    if (this.#slots[i] !== slot) {
      // A new bucket: the entry held a slot one ring-length ago (or nothing).
      this.#slots[i] = slot;
      this.#counts.fill(0, i * STRIDE, (i + 1) * STRIDE);
      this.#sumMs[i] = 0;
    }
    return i;
  }

  /** Everything recorded in the last `windowMs` (clamped to [bucketMs, maxWindowMs]), rounded out to whole buckets. */
  summary(now: number, windowMs: number): TrafficSummary {
    const w = Math.min(this.maxWindowMs, Math.max(this.bucketMs, windowMs));
    const current = Math.floor(now / this.bucketMs);
    const first = Math.floor(Math.max(0, now - w) / this.bucketMs);
    let requests = 0;
    let latencyCount = 0;
    let sumMs = 0;
    const status = [0, 0, 0, 0, 0];
    const bins = new Float64Array(LATENCY_BINS);
    for (let slot = first; slot <= current; slot++) {
      const i = slot % this.#capacity;
      if (this.#slots[i] !== slot) continue;
      const base = i * STRIDE;
      requests += this.#counts[base + F_REQUESTS]!;
      for (let c = 0; c < 5; c++) status[c]! += this.#counts[base + F_STATUS + c]!;
      latencyCount += this.#counts[base + F_LATENCY_COUNT]!;
      sumMs += this.#sumMs[i]!;
      for (let b = 0; b < LATENCY_BINS; b++) bins[b]! += this.#counts[base + FIELDS + b]!;
    }
    const covered = now - first * this.bucketMs;
    // A key younger than the window has only been counting since it was created.
    const spanMs = Math.max(Math.min(covered, now - this.#createdAt), Math.min(covered, 1000));
    return {
      spanMs,
      requests,
      status: status as unknown as StatusCounts,
      latency: { layout: LATENCY_LAYOUT, count: latencyCount, sumMs, bins: sparse(bins) },
    };
  }

  /** Add another window's buckets to this one (both on the same clock and bucket width): several routers, one view. */
  merge(other: TrafficWindow): void {
    if (other.bucketMs !== this.bucketMs) throw new RangeError('cannot merge windows with different bucket widths');
    for (let j = 0; j < other.#capacity; j++) {
      const slot = other.#slots[j]!;
      if (slot < 0) continue;
      const i = slot % this.#capacity;
      // This entry holds a newer slot: the other's is older than anything a query here can reach.
      if (this.#slots[i]! > slot) continue;
      if (this.#slots[i] !== slot) {
        this.#slots[i] = slot;
        this.#counts.fill(0, i * STRIDE, (i + 1) * STRIDE);
        this.#sumMs[i] = 0;
      }
      for (let k = 0; k < STRIDE; k++) this.#counts[i * STRIDE + k]! += other.#counts[j * STRIDE + k]!;
      this.#sumMs[i]! += other.#sumMs[j]!;
    }
    this.#lastAt = Math.max(this.#lastAt, other.#lastAt);
  }
}

function sparse(bins: Float64Array): [number, number][] {
  const out: [number, number][] = [];
  for (let b = 0; b < bins.length; b++) if (bins[b]! > 0) out.push([b, bins[b]!]);
  return out;
}

/** An empty summary (no traffic). */
export function emptySummary(spanMs = 0): TrafficSummary {
  return { spanMs, requests: 0, status: [0, 0, 0, 0, 0], latency: { layout: LATENCY_LAYOUT, count: 0, sumMs: 0, bins: [] } };
}

/** The sum of two summaries (two routers' views of one key); the span is the longer of the two. */
export function mergeSummaries(a: TrafficSummary, b: TrafficSummary): TrafficSummary {
  const bins = new Map<number, number>();
  for (const [bin, n] of a.latency.bins) bins.set(bin, n);
  for (const [bin, n] of b.latency.bins) bins.set(bin, (bins.get(bin) ?? 0) + n);
  return {
    spanMs: Math.max(a.spanMs, b.spanMs),
    requests: a.requests + b.requests,
    status: a.status.map((n, i) => n + b.status[i]!) as unknown as StatusCounts,
    latency: {
      layout: LATENCY_LAYOUT,
      count: a.latency.count + b.latency.count,
      sumMs: a.latency.sumMs + b.latency.sumMs,
      bins: [...bins].sort((x, y) => x[0] - y[0]),
    },
  };
}

/**
 * The latency (ms) at quantile q (0 < q ≤ 1) by the nearest-rank rule: the midpoint of the bin that
 * holds the ceil(q·n)-th smallest sample. Null without samples.
 */
export function quantileMs(s: TrafficSummary, q: number): number | null {
  const n = s.latency.count;
  if (n === 0) return null;
  const rank = Math.min(n, Math.max(1, Math.ceil(q * n)));
  let seen = 0;
  for (const [bin, count] of s.latency.bins) {
    seen += count;
    if (seen >= rank) {
      const { low, width } = binRange(bin);
      return (low + width / 2) / 1000;
    }
  }
  return null; // bins that do not add up to count: a damaged summary
}

/** req/s, counts by class, error rate and latency percentiles of a summary. */
export function figures(s: TrafficSummary): TrafficFigures {
  const seconds = s.spanMs / 1000;
  const [c1, c2, c3, c4, c5] = s.status;
  return {
    spanSeconds: round(seconds, 1),
    requests: s.requests,
    rps: seconds > 0 ? round(s.requests / seconds, 2) : 0,
    status: { '1xx': c1, '2xx': c2, '3xx': c3, '4xx': c4, '5xx': c5 },
    errorRate: s.requests > 0 ? round(c5 / s.requests, 4) : 0,
    latencyMs: {
      mean: s.latency.count > 0 ? round(s.latency.sumMs / s.latency.count, 3) : null,
      p50: roundOrNull(quantileMs(s, 0.5)),
      p90: roundOrNull(quantileMs(s, 0.9)),
      p99: roundOrNull(quantileMs(s, 0.99)),
    },
  };
}

const round = (v: number, digits: number): number => Number(v.toFixed(digits));
const roundOrNull = (v: number | null): number | null => (v === null ? null : round(v, 3));

/** Whether a value received over the wire is a summary this code can read (same bin layout, sane numbers). */
export function isTrafficSummary(x: unknown): x is TrafficSummary {
  if (typeof x !== 'object' || x === null) return false;
  const s = x as Partial<Record<keyof TrafficSummary, unknown>>;
  const count = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v) && v >= 0;
  const lat = s.latency as Partial<Record<string, unknown>> | undefined;
  return (
    count(s.spanMs) &&
    count(s.requests) &&
    Array.isArray(s.status) &&
    s.status.length === 5 &&
    s.status.every(count) &&
    typeof lat === 'object' &&
    lat !== null &&
    lat.layout === LATENCY_LAYOUT &&
    count(lat.count) &&
    count(lat.sumMs) &&
    Array.isArray(lat.bins) &&
    lat.bins.length <= LATENCY_BINS &&
    lat.bins.every(
      (p: unknown) => Array.isArray(p) && p.length === 2 && Number.isInteger(p[0]) && p[0] >= 0 && p[0] < LATENCY_BINS && count(p[1]),
    )
  );
}

/** The window a traffic query covers when none is given. */
export const DEFAULT_TRAFFIC_WINDOW_MS = 60_000;

/**
 * A traffic query's `window`: "30s", "5m", "1500ms" or a number of seconds; 1 s to 5 min.
 * Undefined or empty: the default (60 s). Returns a message instead when it is not one.
 */
export function parseTrafficWindow(raw: string | undefined): { ms: number } | { error: string } {
  const v = raw?.trim() ?? '';
  if (v === '') return { ms: DEFAULT_TRAFFIC_WINDOW_MS };
  const m = /^(\d{1,7}(?:\.\d{1,3})?)(ms|s|m)?$/.exec(v);
  if (m === null) return { error: `window "${v.slice(0, 40)}" is not a duration` };
  const ms = Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm']);
  if (ms < 1000 || ms > 300_000) return { error: `window "${v}" is outside 1s to 5m` };
  return { ms };
}
