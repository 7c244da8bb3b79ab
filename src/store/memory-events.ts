/**
 * The event feed's part of the Store interface, in memory: for an in-memory Store (tests, the
 * store contract) to delegate to. Same rules as the SQLite store: ids increase from 1 and are never
 * reused, `trimmedThrough` only moves forward, listeners hear each batch after it is appended.
 * A store that changes state in memory appends its events with `append` in the same step.
 *
 * The events themselves live in a `MemoryFeed` (part of the memory store's `MemoryState`, so a
 * second store over the same state reads the same feed, as a second SQLite connection does); the
 * bus is this log's own, as SQLite's is per connection.
 */
import type { EventKind, NewEvent, PilotEvent } from '../core/events.js';
import { EventBus } from './event-bus.js';
import type { EventBounds } from './store.js';

/** The stored part of the feed: the events kept, the highest id given, how far retention deleted. */
export interface MemoryFeed {
  events: PilotEvent[];
  lastId: number;
  trimmedThrough: number;
}

export function emptyMemoryFeed(): MemoryFeed {
  return { events: [], lastId: 0, trimmedThrough: 0 };
}

export class MemoryEventLog {
  private readonly bus = new EventBus();

  constructor(private readonly feed: MemoryFeed = emptyMemoryFeed()) {}

  /** Append events (one state change) and publish them. */
  append(...batch: NewEvent[]): PilotEvent[] {
    if (batch.length === 0) return [];
    const added = batch.map((e) => ({ ...e, payload: { ...e.payload }, id: ++this.feed.lastId }));
    this.feed.events.push(...added);
    this.bus.publish(added);
    return added;
  }

  async appendEvent(e: NewEvent): Promise<PilotEvent> {
    return this.append(e)[0]!;
  }

  async readEvents(q: {
    after: number;
    app?: string | undefined;
    limit: number;
    kinds?: readonly EventKind[] | undefined;
  }): Promise<PilotEvent[]> {
    const out: PilotEvent[] = [];
    for (const e of this.feed.events) {
      if (out.length >= q.limit) break;
      if (e.id > q.after && (q.app === undefined || e.app === q.app) && (q.kinds === undefined || q.kinds.includes(e.kind))) out.push(e);
    }
    return out;
  }

  async latestEvents(q: { app?: string | undefined; limit: number }): Promise<PilotEvent[]> {
    return this.feed.events.filter((e) => q.app === undefined || e.app === q.app).slice(-q.limit);
  }

  async eventBounds(): Promise<EventBounds> {
    return { lastId: this.feed.lastId, trimmedThrough: this.feed.trimmedThrough };
  }

  async trimEvents(p: { keep: number; before: number }): Promise<number> {
    const f = this.feed;
    const byCount = f.lastId - p.keep;
    const byTime = f.events.filter((e) => e.time < p.before).reduce((m, e) => Math.max(m, e.id), 0);
    const through = Math.max(byCount, byTime);
    if (through <= 0) return 0;
    const before = f.events.length;
    f.events = f.events.filter((e) => e.id > through);
    f.trimmedThrough = Math.max(f.trimmedThrough, through);
    return before - f.events.length;
  }

  subscribeEvents(listener: (events: readonly PilotEvent[]) => void): () => void {
    return this.bus.subscribe(listener);
  }
}
