/**
 * The answers the router gives itself, when no app can: plain text for people (browsers, curl), the
 * catalogue's JSON error body for clients that ask for JSON. Never a stack trace: the cause of an
 * upstream failure is named by its code only.
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { errno } from '../core/errno.js';
import { type PilotError, fail } from '../core/errors.js';

/** An error the router answers with, and the HTTP status it goes out with. */
export interface RouterError {
  readonly status: number;
  readonly error: PilotError;
}

/** 404: no route for this Host. */
export function unknownHost(host: string | undefined): RouterError {
  return {
    status: 404,
    error: host === undefined || host === '' ? fail.noHostHeader() : fail.unknownHost({ host }),
  };
}

/** 502: the app exists but none of its instances is ready. */
export function noReadyInstance(app: string): RouterError {
  return {
    status: 502,
    error: fail.noReadyInstance({ app }),
  };
}

/** 502 (or 504 for a timeout): the chosen instance failed before it sent a response. */
export function upstreamFailed(app: string, cause: unknown): RouterError {
  const code = errno(cause) ?? 'unknown';
  const timeout = code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT';
  const what = timeout ? 'did not answer in time' : 'failed';
  return {
    status: timeout ? 504 : 502,
    error: timeout ? fail.upstreamTimeout({ app, what, code }) : fail.upstreamFailed({ app, what, code }),
  };
}

/** 413: the request body is over the app's `http.maxBody`. */
export function bodyTooLarge(app: string, limit: number): RouterError {
  return { status: 413, error: fail.bodyTooLarge({ app, limit }) };
}

/** Answer 413 and close the connection after it: the rest of the body is never read. */
export function sendTooLarge(headers: IncomingHttpHeaders, res: ServerResponse, app: string, limit: number): void {
  res.shouldKeepAlive = false;
  sendError(headers, res, bodyTooLarge(app, limit));
}

/** 501: an Upgrade to something other than WebSocket. */
export function unsupportedUpgrade(protocol: string): RouterError {
  return {
    status: 501,
    error: fail.upgradeNotWebSocket({ protocol }),
  };
}

const JSON_TYPE = /\bapplication\/(?:[\w.-]+\+)?json\b/i;

/** True when the Accept header asks for JSON. */
export function wantsJson(headers: IncomingHttpHeaders): boolean {
  const accept = headers.accept;
  return accept !== undefined && JSON_TYPE.test(accept);
}

/** The body and content type of an error answer, by the client's Accept header. */
export function renderError(headers: IncomingHttpHeaders, e: RouterError): { type: string; body: string } {
  if (wantsJson(headers)) {
    return { type: 'application/json; charset=utf-8', body: `${JSON.stringify({ error: e.error.toJSON() })}\n` };
  }
  const hint = e.error.hint === undefined ? '' : `hint: ${e.error.hint}\n`;
  return { type: 'text/plain; charset=utf-8', body: `${e.error.message}\n${hint}` };
}

/** Answer the request with the error, unless the response has already started. */
export function sendError(headers: IncomingHttpHeaders, res: ServerResponse, e: RouterError): void {
  if (res.headersSent || res.destroyed) return;
  const { type, body } = renderError(headers, e);
  res.writeHead(e.status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-pilot-error': e.error.code,
  });
  res.end(body);
}

/** A complete raw HTTP/1.1 error response, for sockets taken over by an upgrade request. */
export function rawErrorResponse(headers: IncomingHttpHeaders, e: RouterError, reason: string): string {
  const { type, body } = renderError(headers, e);
  return (
    `HTTP/1.1 ${e.status} ${reason}\r\ncontent-type: ${type}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
    `connection: close\r\n\r\n${body}`
  );
}
