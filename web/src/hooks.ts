/** Data for pages: loaded from the API, re-read when the event feed says it changed (never on a timer). */
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { apiHeaders, ApiError, errorOf, signedOut } from './api.js';
import { readSse } from './sse.js';
import { feed, type PilotEvent } from './events.js';

export interface Loaded<T> {
  data: T | undefined;
  error: ApiError | undefined;
  reload: () => void;
}

/**
 * `load()` now, and again (coalesced: at most one read in flight, one queued) whenever an event
 * for which `when(e)` is true arrives, and after a feed reset.
 */
export function useLoad<T>(
  load: (signal: AbortSignal) => Promise<T>,
  deps: readonly unknown[],
  when: (e: PilotEvent) => boolean,
): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const state = useRef({ running: false, again: false, abort: new AbortController() });
  const whenRef = useRef(when);
  whenRef.current = when;

  const run = useCallback(() => {
    const s = state.current;
    if (s.running) {
      s.again = true;
      return;
    }
    s.running = true;
    const signal = s.abort.signal;
    load(signal)
      .then((d) => {
        if (signal.aborted) return;
        setData(d);
        setError(undefined);
      })
      .catch((err: unknown) => {
        if (signal.aborted) return;
        setError(err instanceof ApiError ? err : new ApiError(0, 'client', String(err), undefined));
      })
      .finally(() => {
        s.running = false;
        if (s.again && !signal.aborted) {
          s.again = false;
          run();
        }
      });
  }, deps);

  useEffect(() => {
    state.current = { running: false, again: false, abort: new AbortController() };
    setData(undefined);
    setError(undefined);
    run();
    const off = feed.subscribe((e) => {
      if (e === 'reset' || whenRef.current(e)) run();
    });
    return () => {
      off();
      state.current.abort.abort();
    };
  }, [run]);
  return { data, error, reload: run };
}

/** Re-render on the feed's status changes (live / reconnecting) and new events. */
export function useFeed(): { status: string; count: number; reconnects: number } {
  const [, tick] = useState(0);
  useEffect(() => {
    const a = feed.onStatus(() => tick((n) => n + 1));
    const b = feed.subscribe(() => tick((n) => n + 1));
    return () => {
      a();
      b();
    };
  }, []);
  return { status: feed.status, count: feed.events.length, reconnects: feed.reconnects };
}

/**
 * Traffic figures are rates over a window, not state changes, so no event of the feed carries them:
 * the server pushes them on a stream of their own (`GET …/traffic` with `Accept: text/event-stream`,
 * a `traffic` frame every `every`, a `problem` frame when the routers cannot be read). `take` turns
 * each frame into what the page shows. A dropped stream reconnects (1 s doubling to 5 s); a 401
 * shows sign-in. The stream is closed when the page stops showing the figures.
 */
export function useFigures<D, T>(
  path: string,
  take: (data: D) => T,
  deps: readonly unknown[],
): { last: T | undefined; error: ApiError | undefined } {
  const [last, setLast] = useState<T | undefined>(undefined);
  const [error, setError] = useState<ApiError | undefined>(undefined);
  useEffect(() => {
    const abort = new AbortController();
    const signal = abort.signal;
    const frame = (kind: string, data: string): void => {
      if (!data) return;
      if (kind === 'traffic') {
        setLast(take(JSON.parse(data) as D));
        setError(undefined);
      } else if (kind === 'problem') {
        const e = (JSON.parse(data) as { error?: { code?: string; message?: string; hint?: string } }).error;
        setError(new ApiError(503, e?.code ?? 'unavailable', e?.message ?? 'the traffic figures are unavailable', e?.hint));
      }
    };
    const follow = async (): Promise<void> => {
      const res = await fetch(path, { credentials: 'same-origin', headers: apiHeaders({ accept: 'text/event-stream' }), signal });
      if (!res.ok || !res.body) throw await errorOf(res);
      await readSse(res, frame);
    };
    void (async () => {
      let backoff = 1000;
      while (!signal.aborted) {
        try {
          await follow();
          backoff = 1000;
        } catch (err) {
          if (signal.aborted) return;
          if (err instanceof ApiError && err.status === 401) {
            signedOut();
            return;
          }
          setError(err instanceof ApiError ? err : new ApiError(0, 'client', String(err), undefined));
        }
        if (signal.aborted) return;
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 5000);
      }
    })();
    return () => abort.abort();
  }, deps);
  return { last, error };
}
