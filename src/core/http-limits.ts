/**
 * pilot.yaml `http:`: an app's protocol limits at the router (request and idle timeouts, largest
 * request body), their schema and their resolution into a route's `RouteHttp`. Pure.
 *
 * Defaults are the routers' behaviour before the field existed, so an app without `http:` is served
 * exactly as before: the app must start answering within 60 s, may stay silent inside its response
 * body for 5 min, and request bodies have no size limit.
 */
import { Type } from '@sinclair/typebox';
import { DURATION_PATTERN, parseDuration } from './duration.js';
import type { RouteHttp } from './routes.js';

export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
export const DEFAULT_IDLE_TIMEOUT_MS = 300_000;

/** Bounds beyond which a value is a mistake (a unit slip), not a choice. */
export const HTTP_LIMITS = {
  timeoutMinMs: 1_000,
  requestTimeoutMaxMs: 3_600_000,
  idleTimeoutMaxMs: 24 * 3_600_000,
  maxBodyMin: 1024,
  maxBodyMax: 64 * 1024 ** 3,
} as const;

export const SIZE_PATTERN = '^\\d+(\\.\\d+)?\\s*([bB]|[kKmMgG][iI]?[bB]?)$';
const SIZE_RE = /^(\d+(?:\.\d+)?)\s*(b|[kmg]i?b?)$/i;
const SIZE_UNIT: Record<string, number> = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

const Duration = Type.Union([Type.String({ pattern: DURATION_PATTERN }), Type.Number({ minimum: 0 })], {
  description: 'A duration: "500ms", "2s", "1m", "1h", or a number of seconds',
});

export const HttpLimitsSchema = Type.Object(
  {
    requestTimeout: Type.Optional(
      Type.Union(Duration.anyOf, {
        description:
          'How long the app may take to start its answer (its response headers) before the router answers 504: 1s to 1h. Default 60s',
      }),
    ),
    idleTimeout: Type.Optional(
      Type.Union(Duration.anyOf, {
        description:
          'Longest silence inside a response body once the app has answered (a stream, Server-Sent Events): 1s to 24h; the response is cut after it. Default 5m. With router haproxy (one server timeout per request) only a request with Accept: text/event-stream gets it; others are bounded by requestTimeout',
      }),
    ),
    maxBody: Type.Optional(
      Type.Union([Type.String({ pattern: SIZE_PATTERN }), Type.Integer({ minimum: 1 })], {
        description:
          'Largest request body: "10mb", "512kb", "1gb" (units of 1024, like nginx client_max_body_size) or a number of bytes, 1kb to 64gb. Larger ones get 413 (by Content-Length before reading; a chunked body when it passes the limit). Default: no limit',
      }),
    ),
  },
  { additionalProperties: false, description: "The app's protocol limits at the router" },
);

/** Bytes for "10mb", "512 KiB", "1g", "100b" or a number of bytes; undefined when it is not a size. */
export function parseSize(v: string | number): number | undefined {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 ? v : undefined;
  const m = SIZE_RE.exec(v.trim());
  if (!m) return undefined;
  const unit = SIZE_UNIT[m[2]!.toLowerCase()[0]!]!;
  return Math.floor(Number(m[1]) * unit);
}

export interface HttpLimitsInput {
  readonly requestTimeout?: string | number | undefined;
  readonly idleTimeout?: string | number | undefined;
  readonly maxBody?: string | number | undefined;
}

/** The limits as a route carries them, or the problems (one per bad field, saying what is allowed). */
export function resolveHttpLimits(input: HttpLimitsInput | undefined): { http: RouteHttp | undefined } | { problems: string[] } {
  if (input === undefined) return { http: undefined };
  const problems: string[] = [];
  const out: { requestTimeoutMs?: number; idleTimeoutMs?: number; maxBodyBytes?: number } = {};
  const duration = (field: 'requestTimeout' | 'idleTimeout', max: number): number | undefined => {
    const raw = input[field];
    if (raw === undefined) return undefined;
    const ms = parseDuration(raw);
    if (ms === undefined) problems.push(`http.${field}: ${JSON.stringify(raw)} is not a duration (write "30s", "2m", "1h" or seconds)`);
    else if (ms < HTTP_LIMITS.timeoutMinMs || ms > max)
      problems.push(`http.${field}: ${JSON.stringify(raw)} is out of range (1s to ${max / 3_600_000}h; leave it out for the default)`);
    else return ms;
    return undefined;
  };
  const requestTimeoutMs = duration('requestTimeout', HTTP_LIMITS.requestTimeoutMaxMs);
  const idleTimeoutMs = duration('idleTimeout', HTTP_LIMITS.idleTimeoutMaxMs);
  if (requestTimeoutMs !== undefined) out.requestTimeoutMs = requestTimeoutMs;
  if (idleTimeoutMs !== undefined) out.idleTimeoutMs = idleTimeoutMs;
  if (input.maxBody !== undefined) {
    const bytes = parseSize(input.maxBody);
    if (bytes === undefined)
      problems.push(`http.maxBody: ${JSON.stringify(input.maxBody)} is not a size (write "10mb", "512kb", "1gb" or a number of bytes)`);
    else if (bytes < HTTP_LIMITS.maxBodyMin || bytes > HTTP_LIMITS.maxBodyMax)
      problems.push(`http.maxBody: ${JSON.stringify(input.maxBody)} is out of range (1kb to 64gb; leave it out for no limit)`);
    else out.maxBodyBytes = bytes;
  }
  if (problems.length > 0) return { problems };
  return { http: Object.keys(out).length === 0 ? undefined : out };
}
