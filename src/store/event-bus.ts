/**
 * The in-process event bus: the store publishes each committed batch of events (in id order, right
 * after the commit), subscribers hear them synchronously. A subscriber that throws is logged by
 * nobody and never stops the others or the write that published: the events are in the store, a
 * subscriber that missed them reads them back (control/event-stream.ts reads from the store anyway).
 */
import type { PilotEvent } from '../core/events.js';

export type EventListener = (events: readonly PilotEvent[]) => void;

export class EventBus {
  private readonly listeners = new Set<EventListener>();

  subscribe(l: EventListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  publish(events: readonly PilotEvent[]): void {
    if (events.length === 0) return;
    for (const l of [...this.listeners]) {
      try {
        l(events);
      } catch {
        // A subscriber's failure is its own (it re-reads from the store); the write already committed.
      }
    }
  }

  get size(): number {
    return this.listeners.size;
  }
}
