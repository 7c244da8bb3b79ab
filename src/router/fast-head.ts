/**
 * The fast engine's HTTP/1.1 head parsers (fast-path.ts): strict on the request side, where anything
 * outside the common case is left to node:http (`fallback`), so that what Node refuses stays
 * refused by Node itself; tolerant of what apps send on the response side, with a clear `bad` for
 * what cannot be framed. And the scanner that finds the end of a chunked body without re-chunking it.
 * Pure functions of bytes: no I/O.
 */

/** Largest request head the fast path parses; a longer one goes to node:http (which answers 431). */
export const MAX_REQUEST_HEAD = 16 * 1024;
/** Largest response head accepted from an app (undici's default is the same order). */
export const MAX_RESPONSE_HEAD = 64 * 1024;
const MAX_HEADERS = 100;

const REQUEST_LINE = /^(GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH) (\/[\x21-\x7e]*) HTTP\/1\.1$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Field values: HTAB, SP, visible ASCII and obs-text. Any other control byte (NUL, bare CR or LF…) is not ours to judge. */
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
const DIGITS = /^\d{1,15}$/;
const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: ([^\r\n]*))?$/;
const CHUNKED_LAST = /(?:^|,)[ \t]*chunked[ \t]*$/i;

export type RequestHead =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'fallback' }
  | {
      readonly kind: 'ok';
      /** Offset of the first byte after the head's empty line. */
      readonly end: number;
      readonly method: string;
      readonly target: string;
      /** [name, value, …] as sent (names in their case, values without surrounding whitespace). */
      readonly raw: string[];
      /** Lowercased names, repeats joined as node:http joins them (the Host and Content-Length ones cannot repeat here). */
      readonly headers: Record<string, string>;
      readonly host: string;
      /** 0 when the request has no body. */
      readonly contentLength: number;
      /** `Connection: close`: the connection ends after this exchange. */
      readonly close: boolean;
    };

const INCOMPLETE = { kind: 'incomplete' } as const;
const FALLBACK = { kind: 'fallback' } as const;

/**
 * Parse one request head at the start of `buf`. `fallback` for anything outside the fast path's
 * common case: not HTTP/1.1, another method, a target not in origin form, Transfer-Encoding, Upgrade,
 * Expect, a Connection other than keep-alive / close, a repeated Host or Content-Length, a bad
 * Content-Length, bad characters, obs-fold, bare LF, a head over MAX_REQUEST_HEAD or over 100 fields.
 */
export function parseRequestHead(buf: Buffer): RequestHead {
  const at = buf.indexOf('\r\n\r\n');
  if (at === -1) return buf.length > MAX_REQUEST_HEAD ? FALLBACK : INCOMPLETE;
  if (at + 4 > MAX_REQUEST_HEAD) return FALLBACK;
  const text = buf.toString('latin1', 0, at);
  const lines = text.split('\r\n');
  const m = REQUEST_LINE.exec(lines[0]!);
  if (m === null || lines.length - 1 > MAX_HEADERS) return FALLBACK;
  const raw: string[] = [];
  const headers: Record<string, string> = Object.create(null) as Record<string, string>;
  let host: string | undefined;
  let contentLength = 0;
  let sawLength = false;
  let close = false;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) return FALLBACK;
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return FALLBACK;
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (BAD_VALUE.test(value)) return FALLBACK;
    const lower = name.toLowerCase();
    switch (lower) {
      case 'host':
        if (host !== undefined) return FALLBACK;
        host = value;
        break;
      case 'content-length':
        if (sawLength || !DIGITS.test(value)) return FALLBACK;
        sawLength = true;
        contentLength = Number(value);
        break;
      case 'transfer-encoding':
      case 'upgrade':
      case 'expect':
        return FALLBACK;
      case 'connection': {
        const v = value.toLowerCase();
        if (v === 'close') close = true;
        else if (v !== 'keep-alive') return FALLBACK;
        break;
      }
    }
    raw.push(name, value);
    const had = headers[lower];
    headers[lower] = had === undefined ? value : lower === 'cookie' ? `${had}; ${value}` : `${had}, ${value}`;
  }
  if (host === undefined) return FALLBACK;
  return { kind: 'ok', end: at + 4, method: m[1]!, target: m[2]!, raw, headers, host, contentLength, close };
}

/** How the end of a response body is found. */
export type Framing = 'none' | 'length' | 'chunked' | 'close';

export type ResponseHead =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'bad'; readonly why: string }
  | {
      readonly kind: 'ok';
      readonly end: number;
      readonly status: number;
      readonly reason: string;
      /** Lowercased names, arrays for repeats (as undici hands them over). */
      readonly headers: Record<string, string | string[]>;
      readonly framing: Framing;
      /** The body's length when `framing` is 'length'. */
      readonly length: number;
      /** The app keeps the connection open after this response. */
      readonly reusable: boolean;
    };

/** Parse one response head at `buf`'s start; `method` decides whether a body follows (HEAD: none). */
export function parseResponseHead(buf: Buffer, method: string): ResponseHead {
  const at = buf.indexOf('\r\n\r\n');
  if (at === -1) return buf.length > MAX_RESPONSE_HEAD ? { kind: 'bad', why: 'response head too large' } : INCOMPLETE;
  const lines = buf.toString('latin1', 0, at).split('\r\n');
  const m = STATUS_LINE.exec(lines[0]!);
  if (m === null) return { kind: 'bad', why: 'not an HTTP/1.x status line' };
  const status = Number(m[2]);
  const headers: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0 || !TOKEN.test(line.slice(0, colon))) return { kind: 'bad', why: 'malformed header line' };
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (BAD_VALUE.test(value)) return { kind: 'bad', why: 'control character in a header value' };
    const had = headers[name];
    headers[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value];
  }
  const conn = headers['connection'];
  const connText = (Array.isArray(conn) ? conn.join(',') : (conn ?? '')).toLowerCase();
  let reusable = m[1] === '1' ? !/\bclose\b/.test(connText) : /\bkeep-alive\b/.test(connText);
  let framing: Framing;
  let length = 0;
  const te = headers['transfer-encoding'];
  const cl = headers['content-length'];
  if (method === 'HEAD' || status < 200 || status === 204 || status === 304) {
    framing = 'none';
  } else if (te !== undefined) {
    framing = CHUNKED_LAST.test(Array.isArray(te) ? te.join(',') : te) ? 'chunked' : 'close';
    if (cl !== undefined) reusable = false; // both: Transfer-Encoding wins (RFC 9112 §6.3), and the connection is suspect
  } else if (cl !== undefined) {
    const values = Array.isArray(cl) ? cl : [cl];
    if (!values.every((v) => DIGITS.test(v) && v === values[0])) return { kind: 'bad', why: 'invalid Content-Length' };
    framing = 'length';
    length = Number(values[0]);
  } else {
    framing = 'close';
  }
  if (framing === 'close') reusable = false;
  return { kind: 'ok', end: at + 4, status, reason: m[3] ?? '', headers, framing, length, reusable };
}

const enum S {
  Size,
  Ext,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  Trailer,
  TrailerLf,
  EndLf,
}

/** Largest total of trailer bytes accepted (they go through to the client as they are). */
const MAX_TRAILERS = 16 * 1024;

/** Finds where a chunked body ends, byte by byte across buffers; the bytes themselves pass through untouched. */
export class ChunkedScanner {
  #state = S.Size;
  #size = 0;
  #digits = 0;
  #left = 0;
  #trailer = 0;

  /** The offset just after the body's last byte in `b` (from `i`), -1 if it goes on, throws on a malformed body. */
  feed(b: Buffer, i = 0): number {
    const n = b.length;
    while (i < n) {
      switch (this.#state) {
        case S.Size: {
          const c = b[i++]!;
          const v = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
          if (v >= 0) {
            if (++this.#digits > 12) throw new Error('chunk size too large');
            this.#size = this.#size * 16 + v;
          } else if (this.#digits === 0) {
            throw new Error('chunk size missing');
          } else if (c === 13) this.#state = S.SizeLf;
          else if (c === 59 || c === 32 || c === 9) this.#state = S.Ext;
          else throw new Error('bad chunk size');
          break;
        }
        case S.Ext: {
          const c = b[i++]!;
          if (c === 13) this.#state = S.SizeLf;
          else if (c === 10) throw new Error('bare LF in a chunk extension');
          break;
        }
        case S.SizeLf:
          if (b[i++] !== 10) throw new Error('chunk size line without LF');
          if (this.#size === 0) this.#state = S.TrailerStart;
          else {
            this.#left = this.#size;
            this.#state = S.Data;
          }
          this.#size = 0;
          this.#digits = 0;
          break;
        case S.Data: {
          const take = Math.min(this.#left, n - i);
          i += take;
          this.#left -= take;
          if (this.#left === 0) this.#state = S.DataCr;
          break;
        }
        case S.DataCr:
          if (b[i++] !== 13) throw new Error('chunk data longer than its size');
          this.#state = S.DataLf;
          break;
        case S.DataLf:
          if (b[i++] !== 10) throw new Error('chunk data without CRLF');
          this.#state = S.Size;
          break;
        case S.TrailerStart:
          if (b[i++] === 13) this.#state = S.EndLf;
          else this.#state = S.Trailer;
          break;
        case S.Trailer: {
          const c = b[i++]!;
          if (++this.#trailer > MAX_TRAILERS) throw new Error('trailers too large');
          if (c === 13) this.#state = S.TrailerLf;
          else if (c === 10) throw new Error('bare LF in trailers');
          break;
        }
        case S.TrailerLf:
          if (b[i++] !== 10) throw new Error('trailer line without LF');
          this.#state = S.TrailerStart;
          break;
        case S.EndLf:
          if (b[i++] !== 10) throw new Error('chunked body without final CRLF');
          return i;
      }
    }
    return -1;
  }
}
