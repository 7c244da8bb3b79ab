/** The one place where errors become HTTP answers: `{ error: { code, message, hint, retryable } }`. */
import type { FastifyError, FastifyInstance } from 'fastify';
import { CATALOGUE, type PilotError, isPilotError, fail } from '../core/errors.js';
import { diskFullError, isDiskFull } from '../disk/disk.js';
import { errno } from '../core/errno.js';

export function toPilotError(err: unknown, diskPath = '$PILOT_HOME'): PilotError {
  if (isPilotError(err)) return err;
  // A full disk is the operator's to fix, not a bug: 507 with what is full (control/disk.ts).
  if (isDiskFull(err)) return diskFullError(err, errno(err) === 'SQLITE_FULL' ? 'cannot write the database' : 'cannot write', diskPath);
  const fe = err as Partial<FastifyError> & { validation?: unknown };
  if (fe.validation) {
    // Which field broke which rule, so a client (the CLI) can name its own flag for it. Ajv's
    // errors carry the rule's parameters, never the value sent (a secret stays out of the answer).
    const where = (fe as { validationContext?: string }).validationContext;
    const fields = (fe.validation as { instancePath?: string; keyword?: string; params?: Record<string, unknown>; message?: string }[]).map(
      (v) => ({
        field: v.instancePath || (typeof v.params?.missingProperty === 'string' ? `/${v.params.missingProperty}` : ''),
        rule: v.keyword,
        ...(v.params && typeof v.params.limit === 'number' ? { limit: v.params.limit } : {}),
        message: v.message,
      }),
    );
    return fail.invalidRequest({ message: fe.message ?? 'validation failed' }, { details: { validation: { in: where, fields } } });
  }
  if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return fail.requestBodyTooLarge();
  if (fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return fail.unsupportedContentType({ message: fe.message ?? '' });
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return fail.requestRefused({ message: fe.message });
  }
  return fail.internalError({ cause: err });
}

/** Install the error handler and the JSON 404 on a Fastify instance. */
export function installErrorHandling(app: FastifyInstance, diskPath?: string): void {
  app.setErrorHandler((err, req, reply) => {
    const pe = toPilotError(err, diskPath);
    if (pe.code === 'internal') req.log.error({ err }, 'internal error');
    else if (pe.code === 'disk_full') req.log.warn({ url: req.url.split('?')[0], details: pe.details }, pe.message);
    void reply.status(CATALOGUE[pe.code].status).send({ error: pe.toJSON() });
  });
  app.setNotFoundHandler((req, reply) => {
    const pe = fail.noRoute({ method: req.method, url: req.url.split('?')[0] });
    void reply.status(404).send({ error: pe.toJSON() });
  });
}
