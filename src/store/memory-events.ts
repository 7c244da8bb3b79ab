/**
 * The event feed's part of the Store interface, in memory: for an in-memory Store (tests, the
 * store contract) to delegate to. Same rules as the SQLite store: ids increase from 1 and are never
 * reused, `trimmedThrough` only moves forward, listeners hear each batch after it is appended.
 * A store that changes state in memory appends its events with `append` in the same step.
 */
import type { EventKind, NewEvent, PilotEvent } from '../core/events.js';
import { EventBus } from './event-bus.js';
import type { EventBounds } from './store.js';

export class MemoryEventLog {
  private events: PilotEvent[] = [];
  private lastId = 0;
  private trimmedThrough = 0;
  private readonly bus = new EventBus();

  /** Append events (one state change) and publish them. */
  append(...batch: NewEvent[]): PilotEvent[] {
    const added = batch.map((e) => ({ ...e, payload: { ...e.payload }, id: ++this.lastId }));
    this.events.push(...added);
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
    for (const e of this.events) {
      if (out.length >= q.limit) break;
      if (e.id > q.after && (q.app === undefined || e.app === q.app) && (q.kinds === undefined || q.kinds.includes(e.kind))) out.push(e);
    }
    return out;
  }

  async latestEvents(q: { app?: string | undefined; limit: number }): Promise<PilotEvent[]> {
    return this.events.filter((e) => q.app === undefined || e.app === q.app).slice(-q.limit);
  }

  async eventBounds(): Promise<EventBounds> {
    return { lastId: this.lastId, trimmedThrough: this.trimmedThrough };
  }

  async trimEvents(p: { keep: number; before: number }): Promise<number> {
    const byCount = this.lastId - p.keep;
    const byTime = this.events.filter((e) => e.time < p.before).reduce((m, e) => Math.max(m, e.id), 0);
    const through = Math.max(byCount, byTime);
    if (through <= 0) return 0;
    const before = this.events.length;
    this.events = this.events.filter((e) => e.id > through);
    this.trimmedThrough = Math.max(this.trimmedThrough, through);
    return before - this.events.length;
  }

  subscribeEvents(listener: (events: readonly PilotEvent[]) => void): () => void {
    return this.bus.subscribe(listener);
  }
}
