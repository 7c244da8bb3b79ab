/**
 * Error answers in the catalogue's shape, `{ error: { code, message, hint, retryable } }`.
 * The control plane installs its own global handler doing the same; this one lets the artifact
 * routes run standalone (tests, the throughput benchmark).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { isPilotError, PilotError, type ErrorBody } from '../core/errors.js';

/** The status and JSON body that answer an error thrown by a handler. */
export function errorAnswer(err: unknown): { status: number; body: { error: ErrorBody } } {
  const e = toPilotError(err);
  return { status: e.status, body: { error: e.toJSON() } };
}

/** Fastify error handler answering every error in the catalogue's shape. */
export function artifactErrorHandler(err: unknown, _req: FastifyRequest, reply: FastifyReply): void {
  const { status, body } = errorAnswer(err);
  if (status >= 500) reply.log.error({ err }, 'request failed');
  void reply.code(status).send(body);
}

function toPilotError(err: unknown): PilotError {
  if (isPilotError(err)) return err;
  // Fastify's own 4xx errors (unsupported content type, malformed URL, …) are the caller's doing:
  // keep their message. Anything else is ours, and its text may leak internals.
  const status = typeof err === 'object' && err !== null && 'statusCode' in err ? Number(err.statusCode) : 500;
  const message = err instanceof Error ? err.message : String(err);
  if (status === 413) return new PilotError('too_large', message);
  if (status === 404) return new PilotError('not_found', message);
  if (status >= 400 && status < 500) return new PilotError('bad_request', message);
  return new PilotError('internal', 'internal error', { cause: err });
}
