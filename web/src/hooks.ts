/** Data for pages: loaded from the API, re-read when the event feed says it changed (never on a timer). */
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api.js';
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
 * Traffic figures are rates over a window, not state changes, so no event carries them: they are
 * sampled (every `everyMs` while the page shows them, stopped when it does not).
 */
export function useSample<T>(
  sample: (signal: AbortSignal) => Promise<T>,
  everyMs: number,
  deps: readonly unknown[],
): { last: T | undefined; error: ApiError | undefined } {
  const [last, setLast] = useState<T | undefined>(undefined);
  const [error, setError] = useState<ApiError | undefined>(undefined);
  useEffect(() => {
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const once = (): void => {
      sample(abort.signal)
        .then((v) => {
          setLast(v);
          setError(undefined);
        })
        .catch((err: unknown) => {
          if (!abort.signal.aborted) setError(err instanceof ApiError ? err : new ApiError(0, 'client', String(err), undefined));
        })
        .finally(() => {
          if (!abort.signal.aborted) timer = setTimeout(once, everyMs);
        });
    };
    once();
    return () => {
      abort.abort();
      clearTimeout(timer);
    };
  }, deps);
  return { last, error };
}
