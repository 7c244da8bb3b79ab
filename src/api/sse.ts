/**
 * Server-Sent Events, the client side: a parser of the `text/event-stream` format (WHATWG HTML
 * §9.2: fields `id`, `event`, `data`, `retry`; comments start with ":"; an empty line ends an
 * event), and `followEvents`, which follows Pilot's event feed across reconnects with Last-Event-ID.
 */
import { PilotError } from '../core/errors.js';
import type { EventKind, EventReset, PilotEvent } from '../core/events.js';
import type { ApiClient } from './client.js';

export interface SseMessage {
  /** The last `id:` seen so far in the stream (SSE's "last event ID"), if any. */
  readonly id: string | undefined;
  readonly event: string;
  readonly data: string;
}

/** The messages of an event stream as they arrive. Comments (heartbeats) are skipped. */
export async function* parseSse(body: AsyncIterable<Uint8Array>): AsyncGenerator<SseMessage> {
  const decoder = new TextDecoder();
  let buf = '';
  let id: string | undefined;
  let event = '';
  let data: string[] = [];
  let any = false;
  for await (const chunk of body) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (any) yield { id, event: event || 'message', data: data.join('\n') };
        event = '';
        data = [];
        any = false;
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'id' && !value.includes('\0')) id = value;
      else if (field === 'event') {
        event = value;
        any = true;
      } else if (field === 'data') {
        data.push(value);
        any = true;
      }
    }
  }
}

export type FeedItem =
  { readonly type: 'event'; readonly event: PilotEvent } | { readonly type: 'reset'; readonly reset: EventReset & { message: string } };

/**
 * Follow the feed (`GET /api/v1/events` as SSE) from `after` (undefined: from now on), calling
 * `on` for each event and each reset, in order. A dropped connection is resumed with
 * Last-Event-ID (nothing lost, nothing repeated) after `retryMs`, forever, until `signal` aborts;
 * resolves then. Rejects with `not_found` when the server has no event feed (an older Pilot: 404),
 * and with the server's error for any other refusal (bad token, unknown app).
 * `connected` is called each time a stream is open (the caller may re-read state then).
 */
export async function followEvents(
  api: ApiClient,
  opts: {
    app?: string | undefined;
    after?: number | undefined;
    signal: AbortSignal;
    retryMs?: number;
    on: (item: FeedItem) => void | Promise<void>;
    connected?: () => void | Promise<void>;
    onDrop?: (err: unknown) => void;
  },
): Promise<void> {
  let last = opts.after;
  let everConnected = false;
  while (!opts.signal.aborted) {
    const q = new URLSearchParams();
    if (opts.app !== undefined) q.set('app', opts.app);
    let res: Response;
    try {
      res = await api.open(
        `/api/v1/events${q.size > 0 ? `?${q}` : ''}`,
        {
          accept: 'text/event-stream',
          ...(last === undefined ? {} : { 'last-event-id': String(last) }),
        },
        opts.signal,
      );
    } catch (err) {
      if (opts.signal.aborted) return;
      // Refusals are final; an unreachable server is retried like a dropped stream (once we had one).
      if (err instanceof PilotError && (err.code !== 'server_unreachable' || !everConnected)) throw err;
      opts.onDrop?.(err);
      await sleep(opts.retryMs ?? 1000, opts.signal);
      continue;
    }
    everConnected = true;
    try {
      await opts.connected?.();
      for await (const m of parseSse(res.body ?? emptyBody())) {
        if (m.event === 'reset') {
          const reset = JSON.parse(m.data) as EventReset & { message: string };
          last = reset.lastId;
          await opts.on({ type: 'reset', reset });
        } else if (m.id !== undefined) {
          const e = JSON.parse(m.data) as {
            id: number;
            time: number;
            kind: EventKind;
            app: string | null;
            payload: Record<string, unknown>;
          };
          if (last !== undefined && e.id <= last) continue; // never twice, whatever the server does
          last = e.id;
          await opts.on({ type: 'event', event: { id: e.id, time: e.time, kind: e.kind, app: e.app ?? undefined, payload: e.payload } });
        }
      }
      if (opts.signal.aborted) return;
      opts.onDrop?.(new Error('the server ended the event stream'));
    } catch (err) {
      if (opts.signal.aborted) return;
      opts.onDrop?.(err);
    }
    await sleep(opts.retryMs ?? 1000, opts.signal);
  }
}

async function* emptyBody(): AsyncGenerator<Uint8Array> {
  // no body: nothing to parse
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
