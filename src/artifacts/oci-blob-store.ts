/**
 * The blob store in an OCI distribution registry, so control-plane replicas share their blobs and
 * the registry's own storage (disk, S3, …) does the scaling. Each blob is an OCI artifact the way
 * ORAS stores a file:
 *
 *   tag sha256-<hex> ──► manifest (application/vnd.oci.image.manifest.v1+json)
 *                          artifactType  application/vnd.pilot.blob.v1
 *                          config        the empty descriptor (application/vnd.oci.empty.v1+json, "{}")
 *                          layers[0]     the blob: digest, size, org.opencontainers.image.title
 *                          annotations   org.opencontainers.image.created, dev.pilot.touched
 *
 * A blob is stored when its tag is: the manifest is written only after the registry has the whole
 * blob under its digest (the registry checks it), so a failed upload leaves nothing visible. `put`
 * asks the registry first (HEAD of the blob) and sends no byte it already has (the bytes offered are
 * still hashed, to refuse a wrong digest). `delete` deletes the manifest (and so the tag) through the
 * API; the registry's own `garbage-collect` frees the bytes. Whole-blob reads are hashed on the way
 * and the last chunk is held back until the digest matched: a registry answering other bytes is
 * refused (digest_mismatch) before a reader has them all.
 */
import type { Readable } from 'node:stream';
import { Transform, pipeline } from 'node:stream';
import { createHash } from 'node:crypto';
import { fail } from '../core/errors.js';
import { assertDigest } from '../core/names.js';
import type { Dispatcher } from '../http/undici.js';
import type { BlobCheck, BlobStore, OpenedBlob, PutOptions, PutResult, StoredBlob } from './blob-port.js';
import { uploadChunked, uploadMonolithic, hashOnly } from './oci-upload.js';
import { RegistryClient, header, smallText, type OciCredentials, type OciTarget } from './oci-registry.js';

export const MANIFEST_TYPE = 'application/vnd.oci.image.manifest.v1+json';
export const ARTIFACT_TYPE = 'application/vnd.pilot.blob.v1';
export const LAYER_TYPE = 'application/octet-stream';
/** The OCI empty descriptor: the config of an artifact that has none. */
export const EMPTY_CONFIG = {
  mediaType: 'application/vnd.oci.empty.v1+json',
  digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
  size: 2,
  data: 'e30=',
} as const;
const TITLE = 'org.opencontainers.image.title';
const CREATED = 'org.opencontainers.image.created';
const TOUCHED = 'dev.pilot.touched';

export interface OciBlobStoreOptions {
  readonly target: OciTarget;
  readonly credentials?: OciCredentials;
  /** The undici dispatcher (an Agent); closed by `close()`. */
  readonly dispatcher: Dispatcher;
  /**
   * Upload in PATCH chunks of this many bytes (each held in memory once) instead of one streamed
   * PUT. Always used when the digest is not known in advance. Default 8 MiB.
   */
  readonly chunkBytes?: number;
  /** Always upload in chunks (for registries or proxies that limit a request's size). */
  readonly chunked?: boolean;
}

interface ManifestView {
  readonly manifestDigest: string;
  readonly size: number;
  readonly title: string | undefined;
  readonly created: string;
  readonly touchedMs: number;
}

const tagOf = (digest: string): string => `sha256-${digest.slice('sha256:'.length)}`;

export class OciBlobStore implements BlobStore {
  readonly kind = 'oci';
  readonly location: string;
  readonly registry: RegistryClient;
  /** Bytes sent to the registry by uploads (a blob it already had costs none). */
  uploadedBytes = 0;
  private readonly opts: OciBlobStoreOptions;
  private readonly checking = new Map<string, Promise<unknown>>();

  constructor(opts: OciBlobStoreOptions) {
    this.opts = opts;
    this.location = opts.target.display;
    this.registry = new RegistryClient(opts.target, opts.credentials ?? {}, opts.dispatcher);
  }

  async close(): Promise<void> {
    await this.opts.dispatcher.close();
  }

  /** GET /v2/: reachable, and the credentials work. */
  async ping(): Promise<void> {
    await this.registry.status('a version check', 'GET', '/v2/', { ok: [200] });
  }

  async put(src: Readable, opts: PutOptions = {}): Promise<PutResult> {
    const expected = opts.expectedDigest === undefined ? undefined : assertDigest(opts.expectedDigest);
    const r = this.registry;
    const limits = { maxBytes: opts.maxBytes };
    if (expected === undefined || this.opts.chunked === true) {
      // The digest is known at the end only (or chunks were asked for): PATCH chunks, and the
      // upload is committed (PUT ?digest=) only once the bytes hashed to what was expected.
      const got = await uploadChunked(r, src, { ...limits, expected, chunkBytes: this.opts.chunkBytes ?? 8 * 1024 * 1024 });
      this.uploadedBytes += got.sent;
      return this.exclusive(got.digest, () => this.commit(got.digest, got.size, opts.name));
    }
    return this.exclusive(expected, async () => {
      const there = await r.status(`HEAD blob ${expected}`, 'HEAD', r.path(`blobs/${expected}`), { ok: [200, 404], follow: true });
      const got = there.status === 200 ? await hashOnly(src, limits) : await uploadMonolithic(r, src, expected, limits);
      if (got.digest !== expected)
        throw fail.uploadDigestMismatch({ digest: got.digest, expected }, { details: { expected, actual: got.digest, size: got.size } });
      this.uploadedBytes += got.sent;
      return this.commit(expected, got.size, opts.name);
    });
  }

  async has(digest: string): Promise<boolean> {
    return (await this.stat(digest)) !== undefined;
  }

  async stat(digest: string): Promise<{ size: number } | undefined> {
    const m = await this.manifest(assertDigest(digest));
    return m === undefined ? undefined : { size: m.size };
  }

  async modifiedAt(digest: string): Promise<number | undefined> {
    return (await this.manifest(assertDigest(digest)))?.touchedMs;
  }

  async openRead(digest: string): Promise<Readable> {
    const blob = await this.openBlob(digest);
    return blob.read(0, blob.size - 1);
  }

  async openBlob(digest: string): Promise<OpenedBlob> {
    const d = assertDigest(digest);
    const m = await this.manifest(d);
    if (m === undefined) throw fail.artifactNotFound({ digest: d });
    return { size: m.size, read: (start, end) => this.readBlob(d, m.size, start, end), close: async () => undefined };
  }

  async delete(digest: string): Promise<boolean> {
    const d = assertDigest(digest);
    const m = await this.manifest(d);
    if (m === undefined) return false;
    const r = this.registry;
    const res = await r.status(`DELETE manifest of ${d}`, 'DELETE', r.path(`manifests/${m.manifestDigest}`), { ok: [202, 200, 404] });
    return res.status !== 404;
  }

  async touch(digest: string): Promise<boolean> {
    const d = assertDigest(digest);
    // One at a time per digest: two touches must never delete the manifest the other just wrote.
    return this.exclusive(d, () => this.touchAlone(d));
  }

  /** touch, inside `exclusive` (put's commit holds it already). */
  private async touchAlone(d: string): Promise<boolean> {
    const m = await this.manifest(d);
    if (m === undefined) return false;
    const now = Date.now();
    // A new manifest under the same tag, then the old one deleted (untagged: nothing would find it).
    const written = await this.putManifest(d, m.size, m.title, m.created, now);
    if (written !== m.manifestDigest) {
      const r = this.registry;
      await r.status(`DELETE old manifest of ${d}`, 'DELETE', r.path(`manifests/${m.manifestDigest}`), { ok: [202, 200, 404] });
    }
    return true;
  }

  async list(): Promise<StoredBlob[]> {
    const tags: string[] = [];
    const r = this.registry;
    let next: string | undefined = r.path('tags/list?n=1000');
    for (let pages = 0; next !== undefined; pages++) {
      if (pages === 100_000)
        throw fail.ociRegistryBadAnswer({ registry: this.location, what: 'list tags', why: 'more than 100,000 pages' });
      const res = await r.call('list tags', 'GET', next, { ok: [200, 404] });
      if (res.statusCode === 404) {
        await res.body.dump(); // the repository does not exist yet: nothing stored
        return [];
      }
      let body: { tags?: unknown };
      try {
        body = JSON.parse((await smallText(res)) ?? '') as typeof body;
      } catch {
        throw fail.ociRegistryBadAnswer({ registry: this.location, what: 'list tags', why: 'not a JSON tag list of at most 4 MiB' });
      }
      const page = Array.isArray(body.tags) ? body.tags.filter((t): t is string => typeof t === 'string') : [];
      tags.push(...page.filter((t) => /^sha256-[a-f0-9]{64}$/.test(t)));
      next = /<([^>]+)>;\s*rel="?next"?/.exec(header(res, 'link') ?? '')?.[1];
    }
    const out: StoredBlob[] = [];
    // A few manifests at a time: the listing of a large repository should not open 1000 requests.
    for (let i = 0; i < tags.length; i += 8) {
      const views = await Promise.all(tags.slice(i, i + 8).map((t) => this.manifest(`sha256:${t.slice(7)}`)));
      views.forEach((m, j) => {
        if (m !== undefined) out.push({ digest: `sha256:${tags[i + j]!.slice(7)}`, size: m.size, mtimeMs: m.touchedMs });
      });
    }
    return out;
  }

  async verify(digest: string): Promise<boolean> {
    const d = assertDigest(digest);
    const m = await this.manifest(d);
    if (m === undefined) return false;
    return (await this.hashStored(d))?.digest === d;
  }

  /**
   * Re-read the blob; when the registry's bytes do not hash to the digest, its manifest and the
   * blob are deleted (the registry has no quarantine folder): the next upload stores it again.
   */
  async verifyOrQuarantine(digest: string): Promise<BlobCheck> {
    const d = assertDigest(digest);
    return this.exclusive(d, async (): Promise<BlobCheck> => {
      const m = await this.manifest(d);
      if (m === undefined) return { state: 'missing' };
      const h = await this.hashStored(d);
      if (h?.digest === d) return { state: 'ok', size: h.size };
      const r = this.registry;
      await r.status(`DELETE manifest of ${d}`, 'DELETE', r.path(`manifests/${m.manifestDigest}`), { ok: [202, 200, 404] });
      if (h === undefined) return { state: 'missing' }; // the manifest outlived its blob
      await r.status(`DELETE blob ${d}`, 'DELETE', r.path(`blobs/${d}`), { ok: [202, 200, 404, 405] });
      return { state: 'quarantined', actual: h.digest, size: h.size, to: `${this.location} (deleted)` };
    });
  }

  /** Write the manifest unless the tag exists (then only touch it); created says which. */
  private async commit(digest: string, size: number, name: string | undefined): Promise<PutResult> {
    if (await this.has(digest)) {
      await this.touchAlone(digest);
      return { digest, size, created: false };
    }
    await this.ensureEmptyConfig();
    const now = Date.now();
    await this.putManifest(digest, size, name, new Date(now).toISOString(), now);
    return { digest, size, created: true };
  }

  private async putManifest(digest: string, size: number, name: string | undefined, created: string, touched: number): Promise<string> {
    const manifest = {
      schemaVersion: 2,
      mediaType: MANIFEST_TYPE,
      artifactType: ARTIFACT_TYPE,
      config: EMPTY_CONFIG,
      layers: [{ mediaType: LAYER_TYPE, digest, size, annotations: { [TITLE]: name ?? `${tagOf(digest)}.blob` } }],
      annotations: { [CREATED]: created, [TOUCHED]: new Date(touched).toISOString() },
    };
    const body = Buffer.from(JSON.stringify(manifest));
    const r = this.registry;
    const res = await r.status(`PUT manifest of ${digest}`, 'PUT', r.path(`manifests/${tagOf(digest)}`), {
      headers: { 'content-type': MANIFEST_TYPE },
      body,
      ok: [201, 200],
    });
    return header(res, 'docker-content-digest') ?? `sha256:${createHash('sha256').update(body).digest('hex')}`;
  }

  /** Asked every time (a publish is rare): the registry's garbage-collect may have removed it meanwhile. */
  private async ensureEmptyConfig(): Promise<void> {
    const r = this.registry;
    const d = EMPTY_CONFIG.digest;
    const there = await r.status('HEAD the empty config', 'HEAD', r.path(`blobs/${d}`), { ok: [200, 404], follow: true });
    if (there.status === 404) await uploadMonolithic(r, [Buffer.from('{}')], d, {});
  }

  /** The blob's manifest, read through its tag; undefined when the tag does not exist. */
  private async manifest(digest: string): Promise<ManifestView | undefined> {
    const r = this.registry;
    const what = `GET manifest of ${digest}`;
    const res = await r.call(what, 'GET', r.path(`manifests/${tagOf(digest)}`), { headers: { accept: MANIFEST_TYPE }, ok: [200, 404] });
    if (res.statusCode === 404) {
      await res.body.dump();
      return undefined;
    }
    const bad = (why: string) => fail.ociRegistryBadAnswer({ registry: this.location, what, why });
    const text = await smallText(res);
    if (text === undefined) throw bad('a manifest larger than 4 MiB');
    let m: { layers?: { digest?: unknown; size?: unknown; annotations?: Record<string, string> }[]; annotations?: Record<string, string> };
    try {
      m = JSON.parse(text) as typeof m;
    } catch {
      throw bad('the manifest is not JSON');
    }
    const layer = m.layers?.[0];
    if (layer?.digest !== digest || typeof layer.size !== 'number' || !Number.isSafeInteger(layer.size) || layer.size < 0)
      throw bad(`the manifest tagged ${tagOf(digest)} does not describe that blob`);
    const created = m.annotations?.[CREATED] ?? new Date(0).toISOString();
    const touched = Date.parse(m.annotations?.[TOUCHED] ?? created);
    return {
      manifestDigest: header(res, 'docker-content-digest') ?? `sha256:${createHash('sha256').update(text).digest('hex')}`,
      size: layer.size,
      title: layer.annotations?.[TITLE],
      created,
      touchedMs: Number.isFinite(touched) ? touched : 0,
    };
  }

  /** The blob's bytes start..end; a whole-blob read is checked against the digest. */
  private async readBlob(digest: string, size: number, start: number, end: number): Promise<Readable> {
    const whole = start === 0 && end === size - 1;
    const r = this.registry;
    const res = await r.call(`GET blob ${digest}`, 'GET', r.path(`blobs/${digest}`), {
      headers: whole ? {} : { range: `bytes=${start}-${end}` },
      ok: [200, 206, 404],
      follow: true,
    });
    if (res.statusCode === 404) {
      await res.body.dump();
      throw fail.artifactNotFound({ digest });
    }
    if (!whole && res.statusCode !== 206) {
      await res.body.dump();
      throw fail.ociRegistryBadAnswer({ registry: this.location, what: `GET blob ${digest}`, why: 'a range request answered without 206' });
    }
    const checked = checkedBytes(this.location, digest, whole ? undefined : end - start + 1);
    // A cut connection or a wrong digest ends `checked` with the error; its reader sees it.
    pipeline(res.body, checked, () => undefined);
    return checked;
  }

  /** sha256 and size of the registry's bytes for a digest, or undefined when it has none. */
  private async hashStored(digest: string): Promise<{ digest: string; size: number } | undefined> {
    const r = this.registry;
    const res = await r.call(`GET blob ${digest}`, 'GET', r.path(`blobs/${digest}`), { ok: [200, 404], follow: true });
    if (res.statusCode === 404) {
      await res.body.dump();
      return undefined;
    }
    const hash = createHash('sha256');
    let n = 0;
    for await (const c of res.body) {
      hash.update(c as Buffer);
      n += (c as Buffer).length;
    }
    return { digest: `sha256:${hash.digest('hex')}`, size: n };
  }

  /** Run `fn` alone for this digest (in this process). */
  private async exclusive<T>(digest: string, fn: () => Promise<T>): Promise<T> {
    const before = this.checking.get(digest) ?? Promise.resolve();
    const mine = before.catch(() => undefined).then(fn);
    this.checking.set(digest, mine);
    try {
      return await mine;
    } finally {
      if (this.checking.get(digest) === mine) this.checking.delete(digest);
    }
  }
}

/**
 * Pass bytes through, hashing them (whole reads) or counting them (ranges). The last chunk is held
 * back until the end: a whole read whose bytes do not hash to the digest fails before its reader got
 * every byte, so nothing downstream can keep a complete wrong copy.
 */
function checkedBytes(registry: string, digest: string, rangeLength: number | undefined): Transform {
  const hash = createHash('sha256');
  let held: Buffer | undefined;
  let n = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      n += chunk.length;
      if (rangeLength === undefined) hash.update(chunk);
      const out = held;
      held = chunk;
      cb(null, out);
    },
    flush(cb) {
      if (rangeLength !== undefined) {
        if (n !== rangeLength)
          return cb(fail.ociRegistryBadAnswer({ registry, what: `GET blob ${digest}`, why: `${n} bytes for a range of ${rangeLength}` }));
        return cb(null, held);
      }
      const actual = `sha256:${hash.digest('hex')}`;
      if (actual !== digest) return cb(fail.ociRegistryWrongBytes({ registry, digest, actual }));
      cb(null, held);
    },
  });
}
