/**
 * The event feed, live: one Server-Sent Events stream (`GET /api/v1/events`) for the whole page,
 * read with fetch so the dashboard decides how to resume: after a drop it reconnects (back-off
 * 0.5 s doubling to 5 s) with `Last-Event-ID` set to the last id it holds, and drops any id it
 * already has, so no event is lost or shown twice. `reset` (the id is unknown to the server, or
 * trimmed by retention) reloads the newest page and tells the pages to reload what they show.
 * No timer asks for state: pages re-read what an event says has changed.
 */
import { apiHeaders, api, ApiError, errorOf, signedOut } from './api.js';
import { readSse } from './sse.js';

export interface PilotEvent {
  id: number;
  time: number;
  kind: string;
  app: string | null;
  payload: Record<string, unknown>;
}

export type FeedStatus = 'connecting' | 'live' | 'reconnecting' | 'stopped';

type Listener = (e: PilotEvent | 'reset') => void;

const KEEP = 2000;

export class EventFeed {
  /** Oldest first, at most KEEP. */
  events: PilotEvent[] = [];
  lastId = 0;
  status: FeedStatus = 'connecting';
  reconnects = 0;
  error: ApiError | undefined;
  private readonly listeners = new Set<Listener>();
  private readonly statusListeners = new Set<() => void>();
  private stop = new AbortController();

  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  onStatus(fn: () => void): () => void {
    this.statusListeners.add(fn);
    return () => this.statusListeners.delete(fn);
  }

  /** Load the newest events, then follow the stream until `close`. */
  start(): void {
    this.stop = new AbortController();
    void this.run(this.stop.signal);
  }

  close(): void {
    this.stop.abort();
    this.setStatus('stopped');
  }

  private setStatus(s: FeedStatus): void {
    this.status = s;
    for (const fn of this.statusListeners) fn();
  }

  private async reload(signal: AbortSignal): Promise<void> {
    const page = await api<{ events: PilotEvent[]; lastId: number }>('GET', '/api/v1/events?limit=500', undefined, signal);
    this.events = [...page.events].sort((a, b) => a.id - b.id);
    this.lastId = Math.max(page.lastId, this.events.at(-1)?.id ?? 0);
    for (const fn of this.listeners) fn('reset');
  }

  private async run(signal: AbortSignal): Promise<void> {
    let backoff = 500;
    let loaded = false;
    while (!signal.aborted) {
      try {
        if (!loaded) {
          await this.reload(signal);
          loaded = true;
        }
        await this.follow(signal, () => (backoff = 500));
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof ApiError && err.status === 401) {
          this.setStatus('stopped');
          signedOut(); // the app shows sign-in
          return;
        }
        this.error = err instanceof ApiError ? err : undefined;
      }
      if (signal.aborted) return;
      this.reconnects++;
      this.setStatus('reconnecting');
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 5000);
    }
  }

  /** One connection: resolves when the server ends it, rejects when it breaks. */
  private async follow(signal: AbortSignal, connected: () => void): Promise<void> {
    const res = await fetch('/api/v1/events', {
      credentials: 'same-origin',
      headers: apiHeaders({ accept: 'text/event-stream', 'last-event-id': String(this.lastId) }),
      signal,
    });
    if (!res.ok || !res.body) throw await errorOf(res);
    connected();
    this.error = undefined;
    this.setStatus('live');
    await readSse(res, (kind, data) => this.frame(kind, data, signal));
  }

  private async frame(kind: string, data: string, signal: AbortSignal): Promise<void> {
    if (kind === 'reset') {
      await this.reload(signal);
      return;
    }
    if (!data) return;
    const e = JSON.parse(data) as PilotEvent;
    if (typeof e.id !== 'number' || e.id <= this.lastId) return; // already held: never twice
    this.lastId = e.id;
    this.events.push(e);
    if (this.events.length > KEEP) this.events.splice(0, this.events.length - KEEP);
    for (const fn of this.listeners) fn(e);
  }
}

export const feed = new EventFeed();
