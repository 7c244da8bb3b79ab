/**
 * `GET /api/v1/events`: the event feed. With `Accept: text/event-stream` (what EventSource and
 * `pilot events -f` send) it is Server-Sent Events (control/event-stream.ts), resumable with
 * `Last-Event-ID` or `?after=ID`; otherwise a JSON page: `{ events, lastId, reset? }` (the newest
 * `limit`, or those after `?after=`). `?app=NAME` keeps one app's events. Admin token, like every read.
 * Retention (`startEventRetention`): the newest PILOT_EVENTS_KEEP (100,000) events, none older than
 * PILOT_EVENTS_MAX_AGE (7 days), trimmed every minute.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { resumeCheck } from '../core/events.js';
import { fail } from '../core/errors.js';
import { assertName } from '../core/names.js';
import { parseEnvDuration } from '../core/duration.js';
import type { Store } from '../store/store.js';
import { DEFAULT_EVENT_STREAM, serveEventStream, type EventStreamSettings } from './event-stream.js';

const MAX_ID = Number.MAX_SAFE_INTEGER;

/** A client's last event id (header or query), or undefined when it gave none. */
export function parseEventId(raw: string | string[] | undefined, where: string): number | undefined {
  const v = Array.isArray(raw) ? raw[0] : raw;
  if (v === undefined || v.trim() === '') return undefined;
  const t = v.trim();
  if (!/^\d{1,16}$/.test(t) || Number(t) > MAX_ID) {
    throw fail.invalidEventId({ where, t: t.slice(0, 40) });
  }
  return Number(t);
}

export interface EventRoutes {
  /** End every open stream (server shutdown). */
  close(): void;
  /** Streams open now. */
  readonly open: () => number;
}

export function registerEventRoutes(
  api: FastifyInstance,
  deps: { store: Store; log: Logger; settings?: Partial<EventStreamSettings> },
): EventRoutes {
  const { store } = deps;
  const settings: EventStreamSettings = { ...DEFAULT_EVENT_STREAM, ...deps.settings };
  const stop = new AbortController();
  let open = 0;

  api.get<{ Querystring: { app?: string; after?: string; limit?: string } }>('/api/v1/events', async (req, reply) => {
    const app = req.query.app === undefined ? undefined : assertName(req.query.app);
    const fromQuery = parseEventId(req.query.after, '?after');
    const fromHeader = parseEventId(req.headers['last-event-id'], 'Last-Event-ID');
    // The header wins: a browser's EventSource sends it on reconnect while its URL keeps the first ?after.
    const after = fromHeader ?? fromQuery;
    if (app !== undefined && !(await store.getApp(app)) && (await store.latestEvents({ app, limit: 1 })).length === 0) {
      throw fail.appNotFoundNoEvents({ app });
    }
    const sse = (req.headers.accept ?? '').includes('text/event-stream');
    if (!sse) {
      const limit = Math.min(Math.max(Number(req.query.limit ?? 100) || 100, 1), 1000);
      const bounds = await store.eventBounds();
      if (after === undefined) return { events: await store.latestEvents({ app, limit }), lastId: bounds.lastId };
      const reset = resumeCheck(after, bounds);
      return {
        events: await store.readEvents({ after: reset ? reset.lastId : after, app, limit }),
        lastId: bounds.lastId,
        ...(reset ? { reset } : {}),
      };
    }
    reply.hijack();
    open++;
    try {
      await serveEventStream(store, reply.raw, { after, app, settings, log: req.log as unknown as Logger, stop: stop.signal });
    } finally {
      open--;
    }
    return reply;
  });

  return { close: () => stop.abort(), open: () => open };
}

export interface RetentionSettings {
  keep: number;
  maxAgeMs: number;
  intervalMs: number;
}

/** Retention settings from PILOT_EVENTS_KEEP and PILOT_EVENTS_MAX_AGE ("7d" is written "168h"). */
export function retentionFromEnv(env: NodeJS.ProcessEnv = process.env): RetentionSettings {
  const keep = Number(env.PILOT_EVENTS_KEEP);
  const age = parseEnvDuration(env.PILOT_EVENTS_MAX_AGE);
  return {
    keep: Number.isInteger(keep) && keep > 0 ? keep : 100_000,
    maxAgeMs: age !== undefined && age > 0 ? age : 7 * 24 * 3_600_000,
    intervalMs: 60_000,
  };
}

/** Trim the feed now and every `intervalMs`; returns the stop function. */
export function startEventRetention(store: Store, log: Logger, s: RetentionSettings, now: () => number = Date.now): () => void {
  const trim = (): void => {
    store
      .trimEvents({ keep: s.keep, before: now() - s.maxAgeMs })
      .then((n) => {
        if (n > 0) log.debug({ deleted: n }, 'old events trimmed');
      })
      .catch((err: unknown) => log.warn({ err }, 'event retention failed'));
  };
  trim();
  const t = setInterval(trim, s.intervalMs);
  t.unref();
  return () => clearInterval(t);
}
