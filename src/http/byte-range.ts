/**
 * The `Range` request header (RFC 9110 §14), for one range of a file of known size. Several ranges
 * (multipart/byteranges) are not served: the whole file is the answer then, which the RFC allows.
 */

/** What to send: everything (200), bytes start..end inclusive (206), or nothing (416). */
export type ByteRange =
  { readonly kind: 'all' } | { readonly kind: 'part'; readonly start: number; readonly end: number } | { readonly kind: 'unsatisfiable' };

/**
 * The range a `Range` header asks of `size` bytes. A header that is absent, malformed, of another
 * unit or lists several ranges asks for everything (a server may ignore Range); a well-formed
 * single range that starts beyond the end is unsatisfiable.
 */
export function parseByteRange(header: string | undefined, size: number): ByteRange {
  if (header === undefined) return { kind: 'all' };
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (m === null) return { kind: 'all' };
  const [, a = '', b = ''] = m;
  if (a === '' && b === '') return { kind: 'all' };
  if (a.length > 15 || b.length > 15) return { kind: 'all' }; // beyond any file: not a number we trust
  if (a === '') {
    // bytes=-N: the last N bytes.
    const n = Number(b);
    if (n === 0) return { kind: 'unsatisfiable' };
    return size === 0 ? { kind: 'unsatisfiable' } : { kind: 'part', start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (b !== '' && Number(b) < start) return { kind: 'all' }; // invalid range: ignored (RFC 9110 §14.1.1)
  if (start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'part', start, end };
}

/** Whether an `If-None-Match` header names `etag` (or `*`): the client already has these bytes. */
export function matchesEtag(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(',').some((t) => {
    const v = t.trim();
    return v === '*' || v === etag || v === `W/${etag}`;
  });
}
