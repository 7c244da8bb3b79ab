/**
 * One SSE client of the event feed. The store is the buffer: the connection keeps only a cursor
 * (the last id sent) and reads `id > cursor` from the store in pages, so it never holds events in
 * memory. The bus only wakes it. Order and completeness follow from the ids: every event the store
 * commits after the subscription is read by the next page, none is sent twice (the cursor only
 * moves forward).
 *
 *   connect ─► subscribe to the bus ─► resume check (Last-Event-ID / ?after) ─┬─ ok: cursor = id
 *                                                                              └─ unknown/expired: `reset`, cursor = last id
 *   pump: page of events ─► write ─► socket buffer ≥ highWater? ─ wait for drain ─ not within stallMs: cut (log line)
 *          └─ none left ─► wait for the bus or the heartbeat
 *
 * A slow client costs at most highWaterBytes plus one page; cut, it resumes with Last-Event-ID.
 * Retention can overtake a client that lags far behind: it then gets a `reset` too, never a gap.
 */
import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { resumeCheck, sseFrame, sseReset } from '../core/events.js';
import type { Store } from '../store/store.js';

export interface EventStreamSettings {
  /** A comment line this often, so proxies and clients see the connection alive. */
  readonly heartbeatMs: number;
  /** Bytes queued for the client above which nothing more is written until it drains. */
  readonly highWaterBytes: number;
  /** How long the client may leave that much unread before it is disconnected. */
  readonly stallMs: number;
  /** Events read from the store at once. */
  readonly pageSize: number;
}

export const DEFAULT_EVENT_STREAM: EventStreamSettings = {
  heartbeatMs: 15_000,
  highWaterBytes: 256 * 1024,
  stallMs: 30_000,
  pageSize: 200,
};

/**
 * Serve the feed on `res` (headers not yet sent) until the client goes, the server closes it
 * (`stop`), or the client is too slow. `after`: the last id the client has (undefined: from now on).
 * Never rejects: a failure ends the stream with a comment saying why, and is logged.
 */
export async function serveEventStream(
  store: Store,
  res: ServerResponse,
  opts: { after: number | undefined; app: string | undefined; settings: EventStreamSettings; log: Logger; stop: AbortSignal },
): Promise<void> {
  const { settings, log } = opts;
  let closed = false;
  let wake: (() => void) | undefined;
  const poke = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const onClose = (): void => {
    closed = true;
    poke();
  };
  res.on('close', onClose);
  res.on('error', onClose); // a reset by the client: the same as a close
  opts.stop.addEventListener('abort', onClose, { once: true });
  let pending = true; // something may be waiting in the store
  const unsubscribe = store.subscribeEvents((events) => {
    if (opts.app === undefined || events.some((e) => e.app === opts.app)) {
      pending = true;
      poke();
    }
  });
  const heartbeat = setInterval(() => {
    if (!closed && res.writableLength < settings.highWaterBytes) res.write(': heartbeat\n\n');
  }, settings.heartbeatMs);
  heartbeat.unref();
  let cursor = 0;
  try {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
    res.write('retry: 1000\n\n');
    const bounds = await store.eventBounds();
    if (opts.after === undefined) cursor = bounds.lastId;
    else {
      const reset = resumeCheck(opts.after, bounds);
      if (reset) res.write(sseReset(reset));
      cursor = reset ? reset.lastId : opts.after;
    }
    while (!closed) {
      if (!pending) {
        await new Promise<void>((r) => (wake = r));
        continue;
      }
      pending = false;
      // A client that fell behind retention: what it missed is gone, so it must re-read state.
      const b = await store.eventBounds();
      const lost = resumeCheck(cursor, b);
      if (lost) {
        res.write(sseReset(lost));
        cursor = lost.lastId;
      }
      const page = await store.readEvents({ after: cursor, app: opts.app, limit: settings.pageSize });
      for (const e of page) {
        res.write(sseFrame(e));
        cursor = e.id;
      }
      if (page.length === settings.pageSize) pending = true;
      if (res.writableLength >= settings.highWaterBytes && !(await drained(res, settings.stallMs, () => closed))) {
        if (!closed) {
          log.warn(
            { app: opts.app ?? null, lastSent: cursor, unsentBytes: res.writableLength, stallMs: settings.stallMs },
            'events client too slow: disconnected (it can resume with Last-Event-ID)',
          );
          res.destroy();
        }
        return;
      }
    }
  } catch (err) {
    log.warn({ err, lastSent: cursor }, 'event stream failed');
    if (!closed) res.write(': the event stream failed on the server; reconnect with Last-Event-ID\n\n');
  } finally {
    unsubscribe();
    clearInterval(heartbeat);
    opts.stop.removeEventListener('abort', onClose);
    if (!res.destroyed) res.end();
  }
}

/** Whether the response drained within `ms` (false also when it closed meanwhile). */
function drained(res: ServerResponse, ms: number, isClosed: () => boolean): Promise<boolean> {
  if (isClosed()) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean): void => {
      clearTimeout(t);
      res.off('drain', onDrain);
      res.off('close', onGone);
      resolve(ok);
    };
    const onDrain = (): void => done(true);
    const onGone = (): void => done(false);
    const t = setTimeout(() => done(false), ms);
    res.on('drain', onDrain);
    res.on('close', onGone);
  });
}
