/**
 * The notification worker: feed events (core/events.ts) become deliveries to the apps' endpoints
 * (core/notify.ts decides which and writes the bodies), sent over HTTP with retries.
 *
 *   store events ──bus: kick()──► pass ──► collect: events after the cursor ─► deliveries + cursor (one write)
 *                  timer: next due ─┘      deliver: due deliveries, ≤ `concurrency` at once
 *                                            POST body ─► 2xx: delivered
 *                                                      ─► timeout, refused, 5xx, 408, 429: pending again
 *                                                         after base·2^(n−1) (capped), failed after `attempts`
 *                                                      ─► other answers: failed at once
 *
 * Never blocks a deploy: the bus listener only schedules a pass; one pass runs at a time. Each
 * attempt is recorded (status code or error, duration) before the next is planned. After a restart
 * the cursor and the pending deliveries are in the store: the pass picks them up. Delivery is
 * at-least-once: a control plane killed after a receiver answered and before the attempt was
 * recorded sends that body again (same `X-Pilot-Delivery` id, so a receiver can drop the repeat).
 * Retry times are wall clock (they must survive a restart); each request's timeout is monotonic.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { request } from '../http/undici.js';
import type { PilotEvent } from '../core/events.js';
import {
  bodyFor,
  judgeAttempt,
  maskUrl,
  notificationOf,
  retryDelayMs,
  testNotification,
  type AttemptOutcome,
  type NotifyFacts,
} from '../core/notify.js';
import { PILOT_VERSION } from '../api/version.js';
import type { SecretBox } from '../store/secret-box.js';
import type { NewNotifyDelivery, NotifyDeliveryRecord, NotifyEndpointRecord, Store } from '../store/store.js';

export interface NotifierSettings {
  /** One attempt's limit (headers and body). */
  readonly timeoutMs: number;
  /** Attempts before a delivery is recorded failed. */
  readonly attempts: number;
  readonly backoffBaseMs: number;
  readonly backoffCapMs: number;
  /** Deliveries sent at once. */
  readonly concurrency: number;
}

export const DEFAULT_NOTIFIER: NotifierSettings = {
  timeoutMs: 5000,
  attempts: 6,
  backoffBaseMs: 2000,
  backoffCapMs: 300_000,
  concurrency: 4,
};

/** Settings from PILOT_NOTIFY_TIMEOUT_MS, PILOT_NOTIFY_ATTEMPTS, PILOT_NOTIFY_BACKOFF_MS (the first retry's wait). */
export function notifierFromEnv(env: NodeJS.ProcessEnv = process.env): NotifierSettings {
  const n = (name: string, dflt: number, min: number): number => {
    const v = Number(env[name]);
    return env[name] !== undefined && env[name] !== '' && Number.isFinite(v) && v >= min ? v : dflt;
  };
  return {
    ...DEFAULT_NOTIFIER,
    timeoutMs: n('PILOT_NOTIFY_TIMEOUT_MS', DEFAULT_NOTIFIER.timeoutMs, 100),
    attempts: Math.floor(n('PILOT_NOTIFY_ATTEMPTS', DEFAULT_NOTIFIER.attempts, 1)),
    backoffBaseMs: n('PILOT_NOTIFY_BACKOFF_MS', DEFAULT_NOTIFIER.backoffBaseMs, 0),
  };
}

export interface NotifierDeps {
  readonly store: Store;
  readonly box: SecretBox;
  /** The base of the links in a body (PILOT_PUBLIC_URL, else the API's address). */
  readonly baseUrl: () => string;
  readonly log: Logger;
  readonly settings?: Partial<NotifierSettings>;
}

/** A new per-endpoint HMAC key, as the user is shown it once (hex). */
export function newSigningSecret(): string {
  return randomBytes(32).toString('hex');
}

/** `sha256=<hex HMAC-SHA256 of the raw body>`, GitHub's X-Hub-Signature-256 form. */
export function signature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** Events read per step of a pass. */
const PAGE = 200;

export class Notifier {
  readonly #d: NotifierDeps;
  readonly #s: NotifierSettings;
  #unsubscribe: (() => void) | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  readonly #inflight = new Set<AbortController>();
  /** `pilot notify test` waiting for its delivery's first attempt. */
  readonly #waiters = new Map<number, (d: NotifyDeliveryRecord) => void>();
  readonly #counts = new Map<string, number>();

  constructor(deps: NotifierDeps) {
    this.#d = deps;
    this.#s = { ...DEFAULT_NOTIFIER, ...deps.settings };
  }

  /** Begin: on a database that never had a cursor, start after the newest event (history is not announced). */
  async start(): Promise<void> {
    if ((await this.#d.store.notifyCursor()) === undefined) {
      await this.#d.store.enqueueNotifications([], (await this.#d.store.eventBounds()).lastId, Date.now());
    }
    this.#unsubscribe = this.#d.store.subscribeEvents(() => this.kick());
    this.kick();
  }

  /** Stop passes and timers; requests in flight are aborted (their deliveries stay pending, retried at the next start). */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#unsubscribe?.();
    if (this.#timer) clearTimeout(this.#timer);
    for (const c of this.#inflight) c.abort();
    await this.#running;
  }

  /** Attempts since the start, by result (delivered, retry, failed): the pilot_notify_attempts_total counter. */
  attemptCounts(): ReadonlyMap<string, number> {
    return this.#counts;
  }

  /** Ask for a pass soon; passes never overlap (a kick during one runs another after it). */
  kick(): void {
    if (this.#stopped) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = this.#loop().finally(() => {
      this.#running = undefined;
    });
  }

  async #loop(): Promise<void> {
    do {
      this.#again = false;
      try {
        await this.#collect();
        await this.#deliverDue();
        await this.#schedule();
      } catch (err) {
        // A store error (disk full, closed at shutdown): logged; the timer or the next event tries again.
        if (!this.#stopped) this.#d.log.error({ err }, 'notification pass failed');
        if (!this.#stopped) this.#armTimer(Date.now() + 5000);
      }
    } while (this.#again && !this.#stopped);
  }

  async #schedule(): Promise<void> {
    const next = await this.#d.store.nextNotificationDue();
    if (next !== undefined) this.#armTimer(next);
  }

  #armTimer(at: number): void {
    if (this.#stopped) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.kick(), Math.max(0, at - Date.now()));
    this.#timer.unref();
  }

  /** Turn the feed events after the cursor into deliveries, a page at a time, each page with its cursor in one write. */
  async #collect(): Promise<void> {
    const store = this.#d.store;
    for (;;) {
      const after = (await store.notifyCursor()) ?? 0;
      const events = await store.readEvents({ after, limit: PAGE });
      if (events.length === 0) return;
      const endpoints = await store.listNotifyEndpoints();
      const out: NewNotifyDelivery[] = [];
      for (const e of events) out.push(...(await this.#deliveriesOf(e, endpoints)));
      await store.enqueueNotifications(out, events[events.length - 1]!.id, Date.now());
      if (events.length < PAGE || this.#stopped) return;
    }
  }

  async #deliveriesOf(e: PilotEvent, endpoints: readonly NotifyEndpointRecord[]): Promise<NewNotifyDelivery[]> {
    const mine = endpoints.filter((x) => x.app === e.app && x.afterEvent < e.id);
    if (mine.length === 0 || e.app === undefined || notificationOf(e, {}) === undefined) return [];
    const n = notificationOf(e, await this.#facts(e));
    if (!n || n.event === 'test') return [];
    return mine
      .filter((x) => x.events.includes(n.event as (typeof x.events)[number]))
      .map((x) => ({ endpointId: x.id, app: n.app, event: n.event, eventId: e.id, body: bodyFor(x.kind, n, this.#d.baseUrl()) }));
  }

  /** The rollout's previous revision and the revision's commit and run, when the event names them. */
  async #facts(e: PilotEvent): Promise<NotifyFacts> {
    const rolloutId = typeof e.payload.rollout === 'number' ? e.payload.rollout : undefined;
    const rollout = rolloutId === undefined ? undefined : await this.#d.store.getRollout(rolloutId);
    const to = typeof e.payload.toRevision === 'number' ? e.payload.toRevision : rollout?.toRevision;
    const rev = to === undefined || e.app === undefined ? undefined : await this.#d.store.getRevision(e.app, to);
    return { fromRevision: rollout?.fromRevision, commit: rev?.commit, run: rev?.runId };
  }

  /**
   * Due deliveries, one endpoint's in order (oldest first, one at a time: a receiver sees started
   * before live), up to `concurrency` endpoints at once. A retried delivery comes after those that
   * were behind it.
   */
  async #deliverDue(): Promise<void> {
    for (;;) {
      const due = await this.#d.store.dueNotifications(Date.now(), this.#s.concurrency * 8);
      if (due.length === 0 || this.#stopped) return;
      const endpoints = new Map((await this.#d.store.listNotifyEndpoints()).map((e) => [e.id, e]));
      const queues = new Map<number, NotifyDeliveryRecord[]>();
      for (const d of [...due].sort((a, b) => a.id - b.id)) queues.set(d.endpointId, [...(queues.get(d.endpointId) ?? []), d]);
      const lanes = [...queues.values()];
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < lanes.length && !this.#stopped) {
          for (const d of lanes[next++]!) {
            if (this.#stopped) return;
            await this.#attempt(d, endpoints.get(d.endpointId));
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.#s.concurrency, lanes.length) }, worker));
    }
  }

  async #attempt(d: NotifyDeliveryRecord, endpoint: NotifyEndpointRecord | undefined): Promise<void> {
    const n = d.attempts + 1;
    const at = Date.now();
    if (!endpoint) {
      await this.#record(d, { n, at, code: undefined, error: 'the endpoint was removed', ms: 0 }, 'failed', at);
      return;
    }
    let url: string;
    let secret: string | undefined;
    try {
      url = this.#d.box.open(endpoint.urlSealed);
      secret = endpoint.secretSealed === undefined ? undefined : this.#d.box.open(endpoint.secretSealed);
    } catch (err) {
      // Sealed with another key (a database restored beside another secret.key): no attempt can succeed.
      await this.#record(
        d,
        { n, at, code: undefined, error: `cannot open the endpoint's sealed URL or key: ${(err as Error).message}`, ms: 0 },
        'failed',
        at,
      );
      return;
    }
    const outcome = await this.#send(url, secret, endpoint, d);
    if (this.#stopped && outcome.kind !== 'answered') return; // aborted by stop(): not an attempt, retried after the restart
    const ms = Date.now() - at;
    const verdict = judgeAttempt(outcome);
    const error =
      outcome.kind === 'timeout'
        ? `timed out after ${this.#s.timeoutMs} ms`
        : outcome.kind === 'network'
          ? outcome.error.split(url).join(maskUrl(url))
          : verdict === 'delivered'
            ? undefined
            : `HTTP ${outcome.code}`;
    const code = outcome.kind === 'answered' ? outcome.code : undefined;
    const last = n >= this.#s.attempts;
    const status = verdict === 'delivered' ? 'delivered' : verdict === 'refused' || last ? 'failed' : 'pending';
    const nextAt = status === 'pending' ? Date.now() + retryDelayMs(n, this.#s.backoffBaseMs, this.#s.backoffCapMs) : Date.now();
    await this.#record(d, { n, at, code, error, ms }, status, nextAt);
    const result = status === 'pending' ? 'retry' : status;
    this.#counts.set(result, (this.#counts.get(result) ?? 0) + 1);
    const line = { app: d.app, delivery: d.id, event: d.event, endpoint: endpoint.id, url: endpoint.urlMasked, attempt: n, code, error };
    if (status === 'delivered') this.#d.log.info(line, 'notification delivered');
    else if (status === 'failed') this.#d.log.warn(line, 'notification failed: not retried again');
    else this.#d.log.info({ ...line, retryAt: new Date(nextAt).toISOString() }, 'notification attempt failed: will retry');
  }

  async #record(
    d: NotifyDeliveryRecord,
    a: Parameters<Store['recordNotifyAttempt']>[1],
    status: NotifyDeliveryRecord['status'],
    nextAt: number,
  ) {
    await this.#d.store.recordNotifyAttempt(d.id, a, { status, nextAttemptAt: nextAt });
    const w = this.#waiters.get(d.id);
    if (w) {
      this.#waiters.delete(d.id);
      w({ ...d, status, attempts: a.n, nextAttemptAt: nextAt, updatedAt: a.at });
    }
  }

  async #send(url: string, secret: string | undefined, endpoint: NotifyEndpointRecord, d: NotifyDeliveryRecord): Promise<AttemptOutcome> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': `Pilot-Notify/${PILOT_VERSION}`,
    };
    if (endpoint.kind === 'json') {
      headers['x-pilot-event'] = d.event;
      headers['x-pilot-delivery'] = String(d.id);
      if (secret !== undefined) headers['x-pilot-signature-256'] = signature(secret, d.body);
    }
    const abort = new AbortController();
    this.#inflight.add(abort);
    const timer = setTimeout(() => abort.abort(new Error('timeout')), this.#s.timeoutMs);
    try {
      const res = await request(url, { method: 'POST', headers, body: d.body, signal: abort.signal });
      // Drop the answer within the same deadline (never buffered: a receiver may send anything); one
      // that never ends its body times out too.
      await res.body.dump({ limit: 64 * 1024 });
      return { kind: 'answered', code: res.statusCode };
    } catch (err) {
      if (abort.signal.aborted) return { kind: 'timeout' };
      const e = err as NodeJS.ErrnoException;
      return { kind: 'network', error: `${e.code ? `${e.code}: ` : ''}${e.message}`.slice(0, 300) };
    } finally {
      clearTimeout(timer);
      this.#inflight.delete(abort);
    }
  }

  /**
   * `pilot notify test`: a test body to one endpoint, through the same queue (retried like any
   * other); resolves with the delivery after its first attempt, or as it stands after `waitMs`.
   */
  async test(endpoint: NotifyEndpointRecord, waitMs: number): Promise<NotifyDeliveryRecord> {
    const body = bodyFor(endpoint.kind, testNotification(endpoint.app, Date.now()), this.#d.baseUrl());
    const [d] = await this.#d.store.enqueueNotifications(
      [{ endpointId: endpoint.id, app: endpoint.app, event: 'test', eventId: undefined, body }],
      undefined,
      Date.now(),
    );
    const first = new Promise<NotifyDeliveryRecord>((resolve) => {
      this.#waiters.set(d!.id, resolve);
    });
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), waitMs);
    });
    this.kick();
    try {
      return (await Promise.race([first, late])) ?? d!;
    } finally {
      clearTimeout(timer);
      this.#waiters.delete(d!.id);
    }
  }
}
