/**
 * A/B experiments: a long-running sticky split of one app's traffic between its active revision
 * (variant a) and another revision (variant b). Pure: the user-key hash, buckets, the `--by`
 * syntax, and how the replicas are shared between the variants.
 *
 *   user key (cookie value or header value)
 *     ─► stickyBucket(seed = app/experiment id, key) ∈ 0..99      (FNV-1a + murmur3 finaliser)
 *     ─► bucketBackend: buckets mapped onto the route's backends of weight > 0 by cumulative
 *        weight in revision order (a: 40, b: 60 with a < b: buckets 0–39 → a, 40–99 → b)
 *
 * The hash is a pure function of (seed, key): the same user lands in the same bucket in every
 * router process, after any restart, whatever other apps do. The seed carries the experiment id,
 * so two experiments (of one app or of two) assign a user independently.
 */
import { fail } from './errors.js';

/** Where the user key of a sticky route comes from. */
export type StickyBy = { readonly cookie: string } | { readonly header: string };

/** A route's sticky split: what identifies a user, and the seed of the hash (one per experiment). */
export interface Sticky {
  readonly by: StickyBy;
  readonly seed: string;
}

/** The cookie the router sets when `--by` is not given. */
export const DEFAULT_STICKY_COOKIE = 'pilot_ab';
/** A year: a returning visitor keeps their variant for the life of any reasonable experiment. */
export const STICKY_COOKIE_MAX_AGE_S = 31_536_000;

/** RFC 7230 token (a header name, a cookie name), bounded. */
const TOKEN = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/;
/** Headers that mean something to the HTTP layer or to Pilot itself: not a user key. */
const RESERVED_HEADERS = new Set([
  'host',
  'cookie',
  'content-length',
  'transfer-encoding',
  'connection',
  'upgrade',
  'te',
  'trailer',
  'keep-alive',
  'expect',
  'x-pilot-revision',
]);

/** The seed of an experiment's hash: the app and the experiment's id. */
export function experimentSeed(app: string, experimentId: number): string {
  return `${app}/${experimentId}`;
}

/** 32-bit FNV-1a over the UTF-16 code units of `seed`, a NUL, then `key`, mixed by murmur3's finaliser. */
export function stickyHash(seed: string, key: string): number {
  let h = 0x811c9dc5;
  const feed = (s: string): void => {
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      h = Math.imul(h ^ (c & 0xff), 0x01000193);
      h = Math.imul(h ^ (c >>> 8), 0x01000193);
    }
  };
  feed(seed);
  h = Math.imul(h ^ 0, 0x01000193);
  feed(key);
  // fmix32: FNV alone leaves the low bits (what % 100 reads) poorly mixed for similar keys.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The bucket 0–99 of a user key in an experiment. (2^32 mod 100 = 96: the bias is below 1e-7.) */
export function stickyBucket(seed: string, key: string): number {
  return stickyHash(seed, key) % 100;
}

/**
 * Which backend (index into `backends`) a bucket belongs to: backends of weight > 0, taken in
 * revision order, own consecutive ranges of buckets as wide as their weights. -1 when no backend
 * has weight. Weights summing to less than 100 (never in an admitted route) leave the top buckets
 * to the last backend.
 */
export function bucketBackend(backends: readonly { readonly revision: number; readonly weight: number }[], bucket: number): number {
  const order = backends
    .map((b, index) => ({ index, revision: b.revision, weight: b.weight }))
    .filter((b) => b.weight > 0)
    .sort((x, y) => x.revision - y.revision);
  let upTo = 0;
  for (const b of order) {
    upTo += b.weight;
    if (bucket < upTo) return b.index;
  }
  return order.length === 0 ? -1 : order[order.length - 1]!.index;
}

/** Whether a `Sticky` from the wire or a file is well formed (`admitRoutes`). */
export function isSticky(s: unknown): s is Sticky {
  if (s === null || typeof s !== 'object') return false;
  const { by, seed } = s as { by?: unknown; seed?: unknown };
  if (typeof seed !== 'string' || seed === '' || seed.length > 200) return false;
  if (by === null || typeof by !== 'object') return false;
  const keys = Object.keys(by);
  if (keys.length !== 1) return false;
  const name = (by as Record<string, unknown>)[keys[0]!];
  if (typeof name !== 'string' || !TOKEN.test(name)) return false;
  return keys[0] === 'cookie' || (keys[0] === 'header' && !RESERVED_HEADERS.has(name.toLowerCase()));
}

/** "cookie:NAME" / "header:NAME" (the CLI's `--by`, the API's `by`), as a StickyBy; throws bad_request. */
export function parseStickyBy(text: string): StickyBy {
  const m = /^(cookie|header):(.*)$/s.exec(text);
  if (m === null) {
    throw fail.stickyByMalformed({ text }, { details: { field: 'by' } });
  }
  const name = m[2]!;
  if (!TOKEN.test(name)) {
    throw fail.stickyByNameInvalid({ name, kind: m[1]! }, { details: { field: 'by' } });
  }
  if (m[1] === 'header' && RESERVED_HEADERS.has(name.toLowerCase())) {
    throw fail.stickyByHeaderReserved({ name }, { details: { field: 'by' } });
  }
  return m[1] === 'cookie' ? { cookie: name } : { header: name };
}

/** "cookie:uid" / "header:X-User". */
export function formatStickyBy(by: StickyBy): string {
  return 'cookie' in by ? `cookie:${by.cookie}` : `header:${by.header}`;
}

/**
 * How many instances each variant keeps: the app's replicas shared in proportion to the split,
 * at least 1 each (a variant with a small share still serves its users; the pin still reaches a
 * variant at 0 %). With 0 replicas (scaled to zero) both keep none.
 */
export function variantReplicas(replicas: number, split: number): { readonly a: number; readonly b: number } {
  if (replicas <= 0) return { a: 0, b: 0 };
  const b = Math.max(1, Math.round((replicas * split) / 100));
  const a = Math.max(1, replicas - b);
  return { a, b };
}
