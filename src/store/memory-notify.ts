/** The notification tables of the in-memory store (memory-store.ts): the same behaviour as sqlite-notify.ts. */
import type { NewNotifyDelivery, NotifyAttemptRecord, NotifyDeliveryRecord, NotifyDeliveryStatus, NotifyEndpointRecord } from './store.js';

export type MemoryDelivery = NotifyDeliveryRecord & { log: NotifyAttemptRecord[] };

/** The state it keeps (Maps, so a backup carries them): endpoints, deliveries with their attempts, and `cursor` / id sequences. */
export interface MemoryNotifyState {
  notifyEndpoints: Map<number, NotifyEndpointRecord>;
  notifyDeliveries: Map<number, MemoryDelivery>;
  /** `cursor`, `endpoint`, `delivery`: the feed cursor and the last ids given. */
  notifyMeta: Map<string, number>;
}

export function emptyNotifyState(): MemoryNotifyState {
  return { notifyEndpoints: new Map(), notifyDeliveries: new Map(), notifyMeta: new Map() };
}

const copy = <T>(v: T): T => structuredClone(v);

export class MemoryNotify {
  constructor(private readonly s: () => MemoryNotifyState) {}

  private next(seq: string): number {
    const n = (this.s().notifyMeta.get(seq) ?? 0) + 1;
    this.s().notifyMeta.set(seq, n);
    return n;
  }

  addEndpoint(e: Omit<NotifyEndpointRecord, 'id'>): NotifyEndpointRecord {
    const rec = { ...copy(e), id: this.next('endpoint') };
    this.s().notifyEndpoints.set(rec.id, rec);
    return copy(rec);
  }

  listEndpoints(app?: string): NotifyEndpointRecord[] {
    return [...this.s().notifyEndpoints.values()]
      .filter((e) => app === undefined || e.app === app)
      .sort((a, b) => a.id - b.id)
      .map(copy);
  }

  deleteEndpoint(app: string, id: number, now: number): boolean {
    const e = this.s().notifyEndpoints.get(id);
    if (!e || e.app !== app) return false;
    this.s().notifyEndpoints.delete(id);
    for (const d of this.s().notifyDeliveries.values())
      if (d.endpointId === id && d.status === 'pending') this.s().notifyDeliveries.set(d.id, { ...d, status: 'failed', updatedAt: now });
    return true;
  }

  deleteAppEndpoints(app: string, now: number): void {
    for (const e of this.listEndpoints(app)) this.deleteEndpoint(app, e.id, now);
  }

  cursor(): number | undefined {
    return this.s().notifyMeta.get('cursor');
  }

  enqueue(d: readonly NewNotifyDelivery[], cursor: number | undefined, now: number): NotifyDeliveryRecord[] {
    const out: NotifyDeliveryRecord[] = [];
    const all = [...this.s().notifyDeliveries.values()];
    for (const x of d) {
      if (x.eventId !== undefined && all.some((o) => o.endpointId === x.endpointId && o.eventId === x.eventId)) continue;
      const rec: MemoryDelivery = {
        ...x,
        id: this.next('delivery'),
        status: 'pending',
        attempts: 0,
        nextAttemptAt: now,
        createdAt: now,
        updatedAt: now,
        log: [],
      };
      this.s().notifyDeliveries.set(rec.id, rec);
      all.push(rec);
      const { log: _log, ...plain } = rec;
      out.push(copy(plain));
    }
    if (cursor !== undefined) this.s().notifyMeta.set('cursor', Math.max(cursor, this.cursor() ?? 0));
    return out;
  }

  due(now: number, limit: number): NotifyDeliveryRecord[] {
    return [...this.s().notifyDeliveries.values()]
      .filter((d) => d.status === 'pending' && d.nextAttemptAt <= now)
      .sort((a, b) => a.nextAttemptAt - b.nextAttemptAt || a.id - b.id)
      .slice(0, limit)
      .map(({ log: _log, ...d }) => copy(d));
  }

  nextDue(): number | undefined {
    const times = [...this.s().notifyDeliveries.values()].filter((d) => d.status === 'pending').map((d) => d.nextAttemptAt);
    return times.length === 0 ? undefined : Math.min(...times);
  }

  recordAttempt(id: number, a: NotifyAttemptRecord, next: { status: NotifyDeliveryStatus; nextAttemptAt: number }): void {
    const d = this.s().notifyDeliveries.get(id);
    if (!d) return;
    const log = [...d.log.filter((x) => x.n !== a.n), copy(a)].sort((x, y) => x.n - y.n);
    this.s().notifyDeliveries.set(id, {
      ...d,
      log,
      status: next.status,
      attempts: a.n,
      nextAttemptAt: next.nextAttemptAt,
      updatedAt: a.at,
    });
  }

  deliveries(app: string, limit: number): MemoryDelivery[] {
    return [...this.s().notifyDeliveries.values()]
      .filter((d) => d.app === app)
      .sort((a, b) => b.id - a.id)
      .slice(0, limit)
      .map((d) => ({ ...copy(d), log: d.log.map(attempt) }));
  }
}

/** An attempt with every field present (one read back from a backup lost its undefined ones, or holds null). */
function attempt(a: NotifyAttemptRecord): NotifyAttemptRecord {
  return { n: a.n, at: a.at, code: a.code ?? undefined, error: a.error ?? undefined, ms: a.ms };
}
