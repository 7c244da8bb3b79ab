/**
 * Process-level safety nets for the long-running processes (`pilot up`, `pilot server`,
 * `pilot agent`). Every request path awaits or catches its own promises; these handlers are for
 * what slips through anyway, so that no client can take a server down.
 *
 * How a failure is told apart:
 *   - request-scoped: the error says a connection or a stream went away (a client aborted, a peer
 *     reset, an undici body was cut, a write hit a full disk). Such an error concerns one request
 *     or one stream; the rest of the process is intact → log a warning and carry on.
 *   - an unhandled rejection of any other kind ends one async chain only (nothing half-done on
 *     the stack of anything else) → log it as an error (it is a bug to fix) and carry on.
 *   - an uncaught exception of any other kind unwound synchronous code at an unknown point, so
 *     in-memory state may be inconsistent → log it and exit 70; the supervisor (systemd, the
 *     next `pilot up`) restarts, and instances keep running meanwhile (they outlive the agent).
 */
import type { Log as Logger } from '../core/log.js';
import { errno } from '../core/errno.js';

/** Codes of errors that end one connection or stream, never the process. */
const REQUEST_SCOPED = new Set([
  'ECONNRESET',
  'EPIPE',
  'ECONNABORTED',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ERR_STREAM_PREMATURE_CLOSE',
  'ERR_STREAM_DESTROYED',
  'ERR_STREAM_WRITE_AFTER_END',
  'ERR_HTTP_HEADERS_SENT',
  'ABORT_ERR',
  'UND_ERR_ABORTED',
  'UND_ERR_SOCKET',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
  'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH',
  // A write on a full disk fails that write; the disk-full paths answer 507 and recover (README).
  'ENOSPC',
  'EDQUOT',
]);

/** True for an error that concerns one request, connection or stream (see the file comment). */
export function isRequestScoped(err: unknown): boolean {
  const code = errno(err);
  if (code !== undefined && REQUEST_SCOPED.has(code)) return true;
  const name = (err as { name?: unknown } | null)?.name;
  return name === 'AbortError';
}

/**
 * Install the handlers, once per process (a second call does nothing). `exit` is injectable for
 * tests.
 */
export function installProcessGuards(log: Logger, exit: (code: number) => void = (c) => process.exit(c)): void {
  if (installed) return;
  installed = true;
  process.on('unhandledRejection', (reason) => {
    if (isRequestScoped(reason))
      log.warn({ err: reason }, 'a connection or stream failed and nobody awaited it (request-scoped: carrying on)');
    else log.error({ err: reason }, 'unhandled promise rejection (a bug in Pilot: carrying on)');
  });
  process.on('uncaughtException', (err, origin) => {
    if (isRequestScoped(err)) {
      log.warn({ err, origin }, 'a connection or stream failed with nobody listening (request-scoped: carrying on)');
      return;
    }
    log.fatal({ err, origin }, 'uncaught exception: state may be inconsistent, exiting (instances keep running)');
    log.flush?.();
    exit(70);
  });
}

let installed = false;
