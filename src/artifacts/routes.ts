/**
 * HTTP API of the artifact repository, under /api/v1/artifacts. Authentication is a global hook
 * of the server; these routes only validate, stream and answer.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type PilotError, fail } from '../core/errors.js';
import { diskFullError, isDiskFull } from '../disk/disk.js';
import { assertDigest, assertName, isCommitSha } from '../core/names.js';
import type { ArtifactMeta } from '../core/types.js';
import type { BlobCheck, BlobStore } from './blob-port.js';
import { sendFileRange } from '../http/send-file.js';
import { matchesEtag, parseByteRange } from '../http/byte-range.js';
import type { ArtifactMetaStore } from './meta.js';

export interface ArtifactRoutesOptions {
  readonly blobs: BlobStore;
  readonly meta: ArtifactMetaStore;
  /** Largest artifact accepted, in bytes (413 too_large beyond). */
  readonly maxBytes: number;
}

const MetaSchema = Type.Object({
  digest: Type.String(),
  size: Type.Integer(),
  app: Type.Optional(Type.String()),
  commit: Type.Optional(Type.String()),
  createdAt: Type.Integer(),
});
const DigestParams = Type.Object({ digest: Type.String() });
const VerifySchema = Type.Object({
  digest: Type.String(),
  state: Type.Union([Type.Literal('ok'), Type.Literal('missing'), Type.Literal('quarantined')]),
});
const PutQuery = Type.Object({ app: Type.Optional(Type.String()), commit: Type.Optional(Type.String()) });
const ListQuery = Type.Object({ app: Type.Optional(Type.String()) });

interface DigestRoute {
  Params: { digest: string };
}

/** Register the artifact routes on `app`, in their own encapsulated context. */
export function registerArtifactRoutes(app: FastifyInstance, opts: ArtifactRoutesOptions): void {
  void app.register(async (scope) => {
    // Hand the raw request stream to the handler: artifacts are streamed to disk, never buffered.
    // Scoped to this plugin, so no other route starts accepting octet-stream bodies.
    scope.addContentTypeParser('application/octet-stream', (_req, payload, done) => {
      done(null, payload);
    });

    scope.put<DigestRoute & { Querystring: { app?: string; commit?: string } }>(
      '/api/v1/artifacts/:digest',
      { schema: { params: DigestParams, querystring: PutQuery, response: { 200: MetaSchema, 201: MetaSchema } } },
      async (req, reply) => {
        // A refusal before the body is read (early validation error, too_large) is closed by the
        // server's lingering close (http/early-answer.ts installLingeringClose).
        return putArtifact(req, reply, opts);
      },
    );

    scope.head<DigestRoute>('/api/v1/artifacts/:digest', { schema: { params: DigestParams } }, async (req, reply) => {
      const digest = assertDigest(req.params.digest);
      // A publisher asks before uploading, and skips the upload on 200: so "stored" is said only
      // after re-hashing the bytes. A corrupt blob is quarantined and answered 404: the publisher
      // uploads it again, which heals it.
      const check = await checkBlob(req, opts.blobs, digest);
      if (check.state !== 'ok') throw notFound(digest);
      // "Stored" means it will deploy it soon: young again for the GC.
      await opts.blobs.touch(digest);
      return reply.headers(blobHeaders(digest, check.size)).code(200).send();
    });

    // An agent whose download did not hash to the digest reports it here: the repository re-checks
    // its copy and quarantines it when it is the one at fault (the next publish replaces it).
    scope.post<DigestRoute>(
      '/api/v1/artifacts/:digest/verify',
      { schema: { params: DigestParams, response: { 200: VerifySchema } } },
      async (req) => {
        const digest = assertDigest(req.params.digest);
        const check = await checkBlob(req, opts.blobs, digest);
        return { digest, state: check.state };
      },
    );

    scope.get<DigestRoute>(
      '/api/v1/artifacts/:digest',
      // The automatic HEAD twin of a GET would open the blob only to throw the bytes away.
      { exposeHeadRoute: false, schema: { params: DigestParams } },
      async (req, reply) => sendBlob(req, reply, opts.blobs, assertDigest(req.params.digest)),
    );

    scope.get<DigestRoute>(
      '/api/v1/artifacts/:digest/meta',
      { schema: { params: DigestParams, response: { 200: MetaSchema } } },
      async (req) => {
        const digest = assertDigest(req.params.digest);
        const m = opts.meta.getMeta(digest);
        if (m === undefined) throw notFound(digest);
        return m;
      },
    );

    scope.get<{ Querystring: { app?: string } }>(
      '/api/v1/artifacts',
      { schema: { querystring: ListQuery, response: { 200: Type.Object({ artifacts: Type.Array(MetaSchema) }) } } },
      async (req) => {
        const appName = req.query.app === undefined ? undefined : assertName(req.query.app);
        return { artifacts: opts.meta.listMeta(appName) };
      },
    );
  });
}

async function putArtifact(
  req: FastifyRequest<DigestRoute & { Querystring: { app?: string; commit?: string } }>,
  reply: FastifyReply,
  opts: ArtifactRoutesOptions,
): Promise<ArtifactMeta> {
  const digest = assertDigest(req.params.digest);
  const app = req.query.app === undefined ? undefined : assertName(req.query.app);
  const commit = req.query.commit;
  if (commit !== undefined && !isCommitSha(commit)) {
    throw fail.invalidCommit({ commit: String(commit).slice(0, 80) });
  }
  const declared = Number(req.headers['content-length']);
  if (declared > opts.maxBytes) throw tooLarge(opts.maxBytes, declared);
  const body = requestBody(req.body);
  // The OCI layer's title: which app and commit (an app tarball or an image archive, so no extension).
  const name = app === undefined ? undefined : `${app}-${commit?.slice(0, 12) ?? digest.slice(7, 19)}`;
  const put = await opts.blobs
    .put(body, { expectedDigest: digest, maxBytes: opts.maxBytes, ...(name === undefined ? {} : { name }) })
    .catch((e: unknown) => {
      // The upload's size is what it needs: say so next to what is free.
      if (isDiskFull(e))
        throw diskFullError(e, `cannot store artifact ${digest}`, opts.blobs.location, Number.isFinite(declared) ? declared : undefined);
      throw e;
    });
  if (put.healed !== undefined)
    req.log.warn({ digest, quarantined: put.healed }, 'stored artifact was corrupt: quarantined and replaced by the upload');
  // First upload's metadata wins: the same bytes re-published by another app keep their origin.
  let m = opts.meta.getMeta(digest);
  if (m === undefined) {
    m = { digest, size: put.size, app, commit, createdAt: Date.now() };
    opts.meta.putMeta(m);
  }
  void reply.code(put.created ? 201 : 200);
  return m;
}

function requestBody(body: unknown): Readable {
  if (body instanceof Readable) return body;
  // Fastify skips the parser for a body-less request without content type: an empty artifact.
  if (body === undefined) return Readable.from([]);
  throw fail.artifactBodyMissing();
}

/** Re-hash a stored blob (quarantining it when corrupt), logging what was found. */
async function checkBlob(req: FastifyRequest, blobs: BlobStore, digest: string): Promise<BlobCheck> {
  const check = await blobs.verifyOrQuarantine(digest);
  if (check.state === 'quarantined') {
    req.log.warn(
      { digest, actual: check.actual, size: check.size, quarantined: check.to },
      'stored artifact does not hash to its digest: quarantined (the next upload replaces it)',
    );
  }
  return check;
}

/**
 * Answer a blob's bytes straight from the file to the socket: the reply is taken over from
 * Fastify (no serialisation, no hooks, no extra stream in between) and the file is sent through two
 * reused 1 MiB buffers (`sendFileRange`: no allocation per chunk, so no GC pauses from it). One range (`Range: bytes=a-b`, 206) and `If-None-Match`
 * (304) are honoured; the ETag is the digest. The handler awaits the end of the transfer, and a
 * client that goes away mid-way ends it (the file is closed, nothing is thrown to the server).
 */
async function sendBlob(req: FastifyRequest, reply: FastifyReply, blobs: BlobStore, digest: string): Promise<void> {
  const blob = await blobs.openBlob(digest);
  const { size } = blob;
  try {
    const headers = blobHeaders(digest, size);
    const ifNoneMatch = req.headers['if-none-match'];
    if (matchesEtag(ifNoneMatch, headers.etag!)) {
      const { 'content-length': _, 'content-type': __, ...rest } = headers;
      await reply.headers(rest).code(304).send();
      return;
    }
    const range = parseByteRange(typeof req.headers.range === 'string' ? req.headers.range : undefined, size);
    if (range.kind === 'unsatisfiable') {
      await reply
        .headers({ 'content-range': `bytes */${size}`, 'accept-ranges': 'bytes' })
        .code(416)
        .send();
      return;
    }
    const start = range.kind === 'part' ? range.start : 0;
    const end = range.kind === 'part' ? range.end : size - 1;
    // A store without a local file (a registry) is asked before the status line goes out, so a
    // registry that is down is answered with its catalogue error, not a cut connection.
    const remote = blob.fh === undefined && req.method !== 'HEAD' && end >= start ? await blob.read(start, end) : undefined;
    const res = reply.raw;
    reply.hijack();
    res.writeHead(range.kind === 'part' ? 206 : 200, {
      ...headers,
      'content-length': String(end - start + 1),
      ...(range.kind === 'part' ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
    });
    if (remote === undefined && (req.method === 'HEAD' || end < start || blob.fh === undefined)) {
      res.end();
      return;
    }
    const sent = remote ? pipeline(remote, res) : sendFileRange(blob.fh!, res, start, end);
    await sent.catch((err: unknown) => {
      // The client went away (or the file came up short, or a registry sent bytes that do not hash
      // to the digest): the length said cannot be met, so the client must see a cut connection.
      // Either way this socket is done; the server goes on.
      req.log.debug({ err, digest }, 'artifact download ended early');
      res.destroy();
    });
  } finally {
    await blob.close();
  }
}

function blobHeaders(digest: string, size: number): Record<string, string> {
  return {
    'content-type': 'application/octet-stream',
    'content-length': String(size),
    'x-pilot-digest': digest,
    etag: `"${digest}"`,
    'accept-ranges': 'bytes',
    // The bytes behind a digest never change.
    'cache-control': 'public, max-age=31536000, immutable',
  };
}

function notFound(digest: string): PilotError {
  return fail.artifactNotFound({ digest });
}

function tooLarge(maxBytes: number, declared: number): PilotError {
  return fail.declaredArtifactTooLarge({ declared, maxBytes }, { details: { maxBytes } });
}
