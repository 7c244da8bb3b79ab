/**
 * Client of the artifact repository's HTTP API. Uploads are skipped when the digest is already
 * stored; downloads are verified against the digest before they appear under their final name.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { Dispatcher } from '../http/undici.js';
import { fromBody, type PilotError, type ErrorBody, fail } from '../core/errors.js';
import { assertDigest } from '../core/names.js';
import { errno } from '../core/errno.js';
import { writeHashed } from './digest.js';

type ResponseData = Dispatcher.ResponseData;

/** undici's client, loaded with the first transfer: an idle agent does not hold it (~11 MB of RSS). */
const undici = (): Promise<typeof import('../http/undici.js')> => import('../http/undici.js');

export interface UploadMeta {
  readonly app?: string;
  readonly commit?: string;
}

export interface UploadResult {
  /** false when the repository already had the digest and no bytes were sent. */
  readonly uploaded: boolean;
  /** Bytes sent in the request body. */
  readonly bytes: number;
}

/** Connection-level failures: the server is not there (or went away), as opposed to an answer. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENOTFOUND', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET']);

/**
 * Several addresses of one repository (the control-plane replicas), tried in turn: api/failover.ts's
 * ServerChooser is one (this folder does not import api/; the shape is all it needs).
 */
export interface RepositoryAddresses {
  /** The address requests go to now. */
  readonly current: string;
  /** Run `attempt` on an address, moving to the next on a connection failure or a refusal (a 503). */
  run<T>(
    attempt: (base: string) => Promise<T>,
    o: {
      idempotent: boolean;
      unavailable?: (answer: T) => string | undefined;
      refusal?: (err: unknown) => string | undefined;
      discard?: (answer: T) => Promise<void> | void;
    },
  ): Promise<T>;
}

/** Errors made from a 503 answer: a replica that cannot serve now, whose neighbour may. */
const unavailableAnswers = new WeakSet<object>();
const refusal = (err: unknown): string | undefined =>
  typeof err === 'object' && err !== null && unavailableAnswers.has(err) ? `HTTP 503: ${(err as Error).message}` : undefined;
const unavailable = (res: ResponseData): string | undefined => (res.statusCode === 503 ? 'HTTP 503' : undefined);
const discard = (res: ResponseData): Promise<void> => res.body.dump();

export class ArtifactClient {
  private readonly addresses: RepositoryAddresses;
  private readonly token: string;

  /** `base`: the repository's (the control plane's) URL, or several replicas' (downloads and uploads fail over between them). */
  constructor(base: string | RepositoryAddresses, token: string) {
    this.addresses = typeof base === 'string' ? { current: base, run: (attempt) => attempt(base) } : base;
    this.token = token;
  }

  /** Whether the repository stores the digest. */
  async exists(digest: string): Promise<boolean> {
    assertDigest(digest);
    const res = await this.addresses.run((base) => this.call(base, 'HEAD', this.url(base, digest)), {
      idempotent: true,
      unavailable,
      discard,
    });
    await res.body.dump();
    if (res.statusCode === 200) return true;
    if (res.statusCode === 404) return false;
    if (res.statusCode >= 500) {
      // A HEAD answer has no body to say why (a registry behind the repository that is down, say):
      // the same question as a one-byte GET gets the error with its message and hint.
      const base = this.addresses.current; // the address that answered the HEAD
      const why = await this.call(base, 'GET', this.url(base, digest), { headers: { range: 'bytes=0-0' } });
      if (why.statusCode >= 400) throw await answerError(why, `HEAD ${digest}`);
      await why.body.dump();
    }
    throw statusError(res.statusCode, `HEAD ${digest}`);
  }

  /** Publish a file under its digest (checked by the server); costs one HEAD when already stored. */
  async upload(file: string, digest: string, meta: UploadMeta = {}): Promise<UploadResult> {
    assertDigest(digest);
    if (await this.exists(digest)) return { uploaded: false, bytes: 0 };
    const { size } = await stat(file);
    const query = new URLSearchParams();
    if (meta.app !== undefined) query.set('app', meta.app);
    if (meta.commit !== undefined) query.set('commit', meta.commit);
    const qs = query.size > 0 ? `?${query.toString()}` : '';
    // A PUT of content named by its digest is idempotent: another replica may take it after a failure.
    await this.addresses.run(
      async (base) => {
        const res = await this.call(base, 'PUT', this.url(base, digest) + qs, {
          headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
          body: createReadStream(file, { highWaterMark: 1024 * 1024 }),
        });
        if (res.statusCode !== 200 && res.statusCode !== 201) throw await answerError(res, `upload of ${digest}`);
        await res.body.dump();
      },
      { idempotent: true, refusal },
    );
    return { uploaded: true, bytes: size };
  }

  /**
   * Download a digest to destFile. Bytes go to a temp file beside it and are hashed on the way;
   * only a verified file is renamed into place, so destFile is either right or absent.
   */
  async download(digest: string, destFile: string): Promise<{ size: number }> {
    assertDigest(digest);
    // With several replicas, a connection lost mid-download starts over on the next one.
    return this.addresses.run((base) => this.downloadFrom(base, digest, destFile), { idempotent: true, refusal });
  }

  private async downloadFrom(base: string, digest: string, destFile: string): Promise<{ size: number }> {
    const res = await this.call(base, 'GET', this.url(base, digest));
    if (res.statusCode !== 200) throw await answerError(res, `download of ${digest}`);
    const announced = res.headers['x-pilot-digest'];
    if (announced !== undefined && announced !== digest) {
      await res.body.dump();
      throw fail.announcedDigestDiffers({ digest, announced: String(announced) });
    }
    const tmp = `${destFile}.partial-${randomBytes(6).toString('hex')}`;
    try {
      // No fsync: the name appears only after verification, which holds against a crash of this
      // process. Against a power cut the callers (the agent's release cache) must re-verify
      // anyway, since what they unpack from it is not fsynced either; fsync here cost ~40%.
      // One pass: hashed while written, in 1 MiB writev(2) batches.
      const fh = await open(tmp, 'wx');
      let got: { digest: string; size: number };
      try {
        got = await writeHashed(res.body, fh);
      } finally {
        await fh.close();
      }
      const { digest: actual, size } = got;
      if (actual !== digest) {
        // Report it: the repository re-hashes its copy and quarantines it when that is the bad one,
        // so the next publish heals it. Best effort: the mismatch is the error either way.
        await this.reportMismatch(digest, base);
        throw fail.downloadDigestMismatch({ actual, digest }, { details: { expected: digest, actual, size } });
      }
      await rename(tmp, destFile);
      return { size };
    } catch (e) {
      res.body.destroy(); // a write error leaves the rest of the answer unread: drop the connection
      await rm(tmp, { force: true });
      throw e;
    }
  }

  /** Ask the repository to re-check a digest ("ok", "missing" or "quarantined"); undefined when it cannot say. */
  async reportMismatch(digest: string, base = this.addresses.current): Promise<string | undefined> {
    try {
      const { request } = await undici();
      const res = await request(`${this.url(base, digest)}/verify`, { method: 'POST', headers: { authorization: `Bearer ${this.token}` } });
      const text = await res.body.text();
      return res.statusCode === 200 ? (JSON.parse(text) as { state: string }).state : undefined;
    } catch {
      return undefined;
    }
  }

  private url(base: string, digest: string): string {
    return `${base.replace(/\/+$/, '')}/api/v1/artifacts/${digest}`;
  }

  private async call(
    base: string,
    method: 'HEAD' | 'GET' | 'PUT',
    url: string,
    opts: { headers?: Record<string, string>; body?: Readable } = {},
  ): Promise<ResponseData> {
    try {
      const { request } = await undici();
      return await request(url, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...opts.headers },
        ...(opts.body === undefined ? {} : { body: opts.body }),
      });
    } catch (e) {
      const code = errno(e);
      if (code !== undefined && UNREACHABLE.has(code)) {
        throw fail.cannotReachArtifactRepository({ baseUrl: base.replace(/\/+$/, ''), code }, { cause: e });
      }
      throw e;
    }
  }
}

/** Rebuild the server's error answer (`{ error: {...} }`) as a PilotError. */
async function answerError(res: ResponseData, what: string): Promise<PilotError> {
  const err = await errorOfAnswer(res, what);
  if (res.statusCode === 503) unavailableAnswers.add(err);
  return err;
}

async function errorOfAnswer(res: ResponseData, what: string): Promise<PilotError> {
  const fallback = `${what} failed`;
  let body: unknown;
  try {
    body = await res.body.json();
  } catch {
    return statusError(res.statusCode, fallback);
  }
  const err = typeof body === 'object' && body !== null && 'error' in body ? (body.error as Partial<ErrorBody>) : undefined;
  return err?.code === undefined ? statusError(res.statusCode, fallback) : fromBody(err, fallback);
}

/** For answers without a body (HEAD) or not from Pilot: the closest catalogue code for the status. */
function statusError(status: number, message: string): PilotError {
  const byStatus: Record<number, typeof fail.repositoryUnauthorized> = {
    401: fail.repositoryUnauthorized,
    403: fail.repositoryForbidden,
    404: fail.repositoryNotFound,
    413: fail.repositoryTooLarge,
  };
  const make = byStatus[status] ?? (status >= 500 ? fail.repositoryUnavailable : fail.repositoryRefusedRequest);
  return make({ message, status });
}
