/**
 * An app's largest request body (pilot.yaml `http.maxBody`): a Content-Length over it is refused
 * before anything is read (proxy.ts); a chunked body is counted as it streams to the app and cut
 * with `BodyTooLargeError` once it passes the limit, which forward.ts answers with 413.
 */
import type { IncomingMessage } from 'node:http';
import { Transform, type Readable } from 'node:stream';

/** The chunked body passed the app's limit (not an upstream failure: the client's request was too large). */
export class BodyTooLargeError extends Error {
  readonly code = 'PILOT_BODY_TOO_LARGE';
  readonly limit: number;
  constructor(limit: number) {
    super(`the request body is larger than ${limit} bytes`);
    this.limit = limit;
  }
}

/** The request body, counted: it fails with BodyTooLargeError at the first chunk past `max` bytes. */
export function limitBody(req: IncomingMessage, max: number): Readable {
  let seen = 0;
  const out = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      if (seen > max) cb(new BodyTooLargeError(max));
      else cb(null, chunk);
    },
  });
  // pipe() unpipes on the destination's error: the rest of the body stays unread, and the 413
  // goes out with Connection: close so that nobody reads it.
  req.pipe(out);
  return out;
}
