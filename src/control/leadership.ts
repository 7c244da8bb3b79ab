/**
 * Which control-plane replica leads (issue #16 part 2). The leader runs the work that decides: the
 * reconcile loop and its scheduler, the node monitor, the autoscaler, the CD worker, notification
 * deliveries, certificate renewals and the other timers (`server.ts` starts them when elected and
 * stops them when deposed). Every replica answers the API, webhooks, agents and routers.
 *
 * - `SoleLeadership` (SQLite, one process): always the leader, no token, nothing to run.
 * - `LeaseLeadership` (PostgreSQL): a lease row with a fencing token (`store/postgres-lease.ts`),
 *   tried every `renewMs`; the token rides on every write of the leader's work (`store/fence.ts`).
 *
 *   follower ──attempt: lease expired──► leader(token n) ──attempt: renewed──► leader(token n)
 *      ▲                                     │  attempt: no row (taken over: token n+1 elsewhere)
 *      └──────── deposed ◄───────────────────┤  or no answer for longer than the lease (monotonic)
 *                                            └  stop(): lease released, a follower takes over at once
 *
 * A paused leader (SIGSTOP, a long GC, a frozen VM) resumes believing it leads until its next
 * attempt; whatever it writes meanwhile carries token n and is refused in the write's transaction.
 * Transitions run one after the other on their own chain, so a slow start or stop of the work never
 * delays a renewal.
 */
import type { Logger } from 'pino';
import type { Fence } from '../store/fence.js';
import type { LeaderRow, PostgresLease, ReplicaRow } from '../store/postgres-lease.js';

/** What the server does when this replica starts or stops leading. */
export interface LeaderHooks {
  elected(token: number | undefined): Promise<void>;
  deposed(reason: string): Promise<void>;
}

export interface Leadership {
  readonly mode: 'single' | 'lease';
  /** This replica's id (`local` with SQLite). */
  readonly id: string;
  leading(): boolean;
  /**
   * Leading, and the lease not run out by this replica's own monotonic clock since it was last
   * renewed: false at once in a leader that resumes after a pause longer than the lease, before its
   * next attempt deposes it. For work outside the store's fence (deleting blobs).
   */
  leaseHeld(): boolean;
  /** The fencing token this replica believes it holds (undefined: none, or SQLite). */
  token(): number | undefined;
  /** The fence the leader's store carries (store/fence.ts). */
  readonly fence: Fence;
  /** Times this replica started or stopped leading (pilot_leader_changes_total). */
  readonly changes: number;
  /** Writes of this replica refused for a stale token (pilot_fenced_writes_total). */
  readonly refusedWrites: number;
  start(hooks: LeaderHooks): Promise<void>;
  /** A change the leader's work queue must hear: reconciled here when leading, forwarded to the leader otherwise. */
  forward(what: string): void;
  /** The lease and the replicas as the database says (undefined: SQLite, one process). */
  cluster(): Promise<{ leader: LeaderRow | undefined; replicas: ReplicaRow[] } | undefined>;
  stop(): Promise<void>;
}

/** One process on SQLite: it leads from the start, and no write carries a token. */
export class SoleLeadership implements Leadership {
  readonly mode = 'single' as const;
  readonly id = 'local';
  readonly fence: Fence = { token: () => undefined };
  changes = 0;
  readonly refusedWrites = 0;
  private hooks: LeaderHooks | undefined;
  leading(): boolean {
    return this.hooks !== undefined;
  }
  leaseHeld(): boolean {
    return this.leading();
  }
  token(): number | undefined {
    return undefined;
  }
  async start(hooks: LeaderHooks): Promise<void> {
    this.hooks = hooks;
    this.changes++;
    await hooks.elected(undefined);
  }
  forward(): void {}
  async cluster(): Promise<undefined> {
    return undefined;
  }
  async stop(): Promise<void> {
    const h = this.hooks;
    this.hooks = undefined;
    await h?.deposed('stopping');
  }
}

export interface LeaseSettings {
  /** How long a lease lasts unless renewed (PILOT_LEASE_MS, default 3 s). */
  leaseMs: number;
  /** How often the lease is tried (default a third of the lease). */
  renewMs: number;
}

const mono = (): number => performance.now();

export class LeaseLeadership implements Leadership {
  readonly mode = 'lease' as const;
  changes = 0;
  refusedWrites = 0;
  private tok: number | undefined;
  private validUntil = -Infinity;
  private hooks: LeaderHooks | undefined;
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;
  private transitions: Promise<void> = Promise.resolve();
  private lastError: string | undefined;
  private unlisten: (() => void) | undefined;
  readonly fence: Fence = {
    token: () => this.tok,
    refused: (token, current) => {
      this.refusedWrites++;
      this.log.warn(
        { token: token ?? null, current: current ?? null },
        'a write as leader was refused: its fencing token is no longer current',
      );
    },
  };

  constructor(
    private readonly lease: PostgresLease,
    private readonly log: Logger,
    private readonly settings: LeaseSettings,
    /** Heard from a follower (`forward`): the leader's work queue takes it. */
    private readonly onForwarded: (what: string) => void,
  ) {}

  get id(): string {
    return this.lease.holder;
  }
  leading(): boolean {
    return this.tok !== undefined;
  }
  leaseHeld(): boolean {
    return this.tok !== undefined && mono() <= this.validUntil;
  }
  token(): number | undefined {
    return this.tok;
  }

  /** The first attempt is made before this resolves: a replica alone on its database leads at once. */
  async start(hooks: LeaderHooks): Promise<void> {
    this.hooks = hooks;
    await this.tick();
    const loop = (): void => {
      this.timer = setTimeout(() => {
        void this.tick().finally(() => {
          if (this.timer !== undefined) loop();
        });
      }, this.settings.renewMs);
      this.timer.unref();
    };
    loop();
  }

  forward(what: string): void {
    if (this.leading()) {
      this.onForwarded(what);
      return;
    }
    this.lease
      .forward(what)
      .catch((err: unknown) => this.log.debug({ err, what }, 'change not forwarded to the leader (its resync will see it)'));
  }

  async cluster(): Promise<{ leader: LeaderRow | undefined; replicas: ReplicaRow[] }> {
    const [leader, replicas] = await Promise.all([this.lease.leader(), this.lease.replicas()]);
    return { leader, replicas };
  }

  /** One attempt: renew or take the lease, or learn that another replica leads. Never throws. */
  private async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    const t0 = mono();
    try {
      await this.lease.heartbeat();
      const got = await this.lease.attempt(this.tok);
      if (this.lastError !== undefined) this.log.info('the database answers the lease again');
      this.lastError = undefined;
      if (got !== undefined) {
        this.validUntil = t0 + this.settings.leaseMs;
        if (got !== this.tok) this.elect(got);
      } else if (this.tok !== undefined) {
        this.depose('another replica holds the lease (this one was paused or cut off longer than the lease)');
      }
    } catch (err) {
      const msg = (err as Error).message;
      if (msg !== this.lastError) this.log.warn({ err: msg }, 'lease attempt failed');
      this.lastError = msg;
      // Not renewed within the lease: another replica may lead by now. Its writes are fenced
      // anyway; stopping here stops what is not a write (deliveries, ACME orders, builds).
      if (this.tok !== undefined && mono() > this.validUntil) this.depose('the database did not renew the lease in time');
    } finally {
      this.ticking = false;
    }
  }

  private elect(token: number): void {
    const was = this.tok;
    this.tok = token;
    this.changes++;
    this.log.warn({ token, previous: was ?? null }, 'this replica leads now');
    this.unlisten ??= this.lease.listen((what) => {
      if (this.leading()) this.onForwarded(what);
    });
    const hooks = this.hooks;
    this.transitions = this.transitions
      .then(async () => {
        if (was !== undefined) await hooks?.deposed('token changed');
        if (this.tok === token) await hooks?.elected(token);
      })
      .catch((err: unknown) => this.log.error({ err, token }, 'starting the work of the leader failed'));
  }

  private depose(reason: string): void {
    const token = this.tok;
    this.tok = undefined;
    this.changes++;
    this.log.warn({ token: token ?? null, reason }, 'this replica no longer leads; it follows');
    this.unlisten?.();
    this.unlisten = undefined;
    const hooks = this.hooks;
    this.transitions = this.transitions
      .then(() => hooks?.deposed(reason))
      .catch((err: unknown) => this.log.error({ err }, 'stopping the work of the leader failed'));
  }

  /** Stop trying; stop the leader's work and release the lease (a follower takes over at once). */
  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    while (this.ticking) await new Promise((r) => setTimeout(r, 10));
    const token = this.tok;
    if (token !== undefined) this.depose('stopping');
    await this.transitions;
    if (token !== undefined) await this.lease.release(token).catch((err: unknown) => this.log.warn({ err }, 'lease not released'));
    await this.lease.forget().catch(() => undefined);
    this.lease.close();
  }
}
