/**
 * Blob uploads to an OCI registry (distribution spec "push"), streamed: bytes are hashed and
 * counted on their way, never gathered whole.
 *
 *   monolithic:  POST /blobs/uploads/ ─► 202 Location ─► PUT Location?digest=D  (the body streamed)
 *   chunked:     POST ─► PATCH Location (Content-Range a-b, one chunk held in memory) … ─► PUT ?digest=D
 *
 * The registry commits a blob only at the PUT with `digest=`, after checking the bytes hash to it;
 * on any failure the upload session is cancelled (DELETE Location, best effort), so nothing
 * half-written is ever visible. The chunked way knows the digest before that PUT: a wrong digest is
 * refused without committing anything.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { fail } from '../core/errors.js';
import { header, type RegistryClient } from './oci-registry.js';

export interface Uploaded {
  readonly digest: string;
  readonly size: number;
  /** Bytes sent to the registry. */
  readonly sent: number;
}

interface Limits {
  readonly maxBytes?: number | undefined;
}

type Source = Readable | Iterable<Buffer> | AsyncIterable<Buffer>;

/** The chunks of `src`, without destroying it when the consumer stops early (its owner answers). */
function chunks(src: Source): AsyncIterable<Buffer> | Iterable<Buffer> {
  return src instanceof Readable ? (src.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) : src;
}

/** Hashes and counts, refusing past maxBytes. */
class Meter {
  private readonly hash = createHash('sha256');
  size = 0;
  tooLarge: Error | undefined;
  constructor(private readonly maxBytes: number | undefined) {}
  add(chunk: Buffer | string): Buffer {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    this.size += buf.length;
    if (this.maxBytes !== undefined && this.size > this.maxBytes) {
      this.tooLarge = fail.artifactTooLarge({ maxBytes: this.maxBytes }, { details: { maxBytes: this.maxBytes } });
      throw this.tooLarge;
    }
    this.hash.update(buf);
    return buf;
  }
  digest(): string {
    return `sha256:${this.hash.digest('hex')}`;
  }
}

/** Read `src` to its end, hashing it: the registry has the blob already, only the digest is checked. */
export async function hashOnly(src: Source, limits: Limits): Promise<Uploaded> {
  const m = new Meter(limits.maxBytes);
  for await (const c of chunks(src)) m.add(c as Buffer);
  return { digest: m.digest(), size: m.size, sent: 0 };
}

async function startUpload(r: RegistryClient): Promise<string> {
  const res = await r.status('start a blob upload', 'POST', r.path('blobs/uploads/'), { headers: { 'content-length': '0' }, ok: [202] });
  const loc = header(res, 'location');
  if (loc === undefined) throw fail.ociRegistryBadAnswer({ registry: r.target.display, what: 'start a blob upload', why: 'no Location' });
  return loc;
}

function withDigest(loc: string, digest: string, origin: string): string {
  const u = new URL(loc, origin);
  u.searchParams.set('digest', digest);
  return u.toString();
}

/** Cancel an upload session; its failure changes nothing (the registry purges old sessions itself). */
async function cancel(r: RegistryClient, loc: string): Promise<void> {
  await r.status('cancel a blob upload', 'DELETE', loc, { ok: [204, 200, 202, 404] }).catch(() => undefined);
}

/** One streamed PUT of the whole blob under `expected`: the registry refuses other bytes. */
export async function uploadMonolithic(r: RegistryClient, src: Source, expected: string, limits: Limits): Promise<Uploaded> {
  const loc = await startUpload(r);
  const m = new Meter(limits.maxBytes);
  let complete = false;
  let srcFailed: { error: unknown } | undefined;
  async function* body(): AsyncGenerator<Buffer> {
    try {
      for await (const c of chunks(src)) yield m.add(c as Buffer);
    } catch (e) {
      srcFailed = { error: e }; // the sender went away (or too_large): not the registry's fault
      throw e;
    }
    complete = true;
  }
  try {
    await r.status(`upload blob ${expected}`, 'PUT', withDigest(loc, expected, r.target.origin), {
      headers: { 'content-type': 'application/octet-stream' },
      body: body(),
      ok: [201],
    });
  } catch (e) {
    await cancel(r, loc);
    if (m.tooLarge !== undefined) throw m.tooLarge;
    if (srcFailed !== undefined) throw srcFailed.error;
    if (complete) {
      const digest = m.digest();
      if (digest !== expected)
        throw fail.uploadDigestMismatch({ digest, expected }, { details: { expected, actual: digest, size: m.size } });
    }
    throw e;
  }
  return { digest: m.digest(), size: m.size, sent: m.size };
}

/** PATCH chunks of about `chunkBytes`, then commit under the digest the bytes hashed to (if it is `expected`). */
export async function uploadChunked(
  r: RegistryClient,
  src: Source,
  opts: Limits & { readonly expected?: string | undefined; readonly chunkBytes: number },
): Promise<Uploaded> {
  let loc = await startUpload(r);
  const m = new Meter(opts.maxBytes);
  let batch: Buffer[] = [];
  let batchBytes = 0;
  let offset = 0;
  const flush = async (): Promise<void> => {
    const body = Buffer.concat(batch, batchBytes);
    batch = [];
    const res = await r.status('upload a blob chunk', 'PATCH', loc, {
      headers: { 'content-type': 'application/octet-stream', 'content-range': `${offset}-${offset + body.length - 1}` },
      body,
      ok: [202],
    });
    loc = header(res, 'location') ?? loc;
    offset += body.length;
    batchBytes = 0;
  };
  try {
    for await (const c of chunks(src)) {
      const buf = m.add(c as Buffer);
      batch.push(buf);
      batchBytes += buf.length;
      if (batchBytes >= opts.chunkBytes) await flush();
    }
    if (batchBytes > 0) await flush();
    const digest = m.digest();
    if (opts.expected !== undefined && digest !== opts.expected)
      throw fail.uploadDigestMismatch(
        { digest, expected: opts.expected },
        { details: { expected: opts.expected, actual: digest, size: m.size } },
      );
    await r.status(`commit blob ${digest}`, 'PUT', withDigest(loc, digest, r.target.origin), {
      headers: { 'content-length': '0' },
      ok: [201],
    });
    return { digest, size: m.size, sent: offset };
  } catch (e) {
    await cancel(r, loc);
    throw e;
  }
}
