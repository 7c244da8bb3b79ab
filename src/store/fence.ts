/**
 * Fencing of the leader's writes (issue #16 part 2). A control plane that leads holds a fencing
 * token (`postgres-lease.ts`); the work it does as leader (reconcile, node status, autoscaling,
 * runs, notifications, certificates) uses a store wrapped by `fencedStore`, whose every call runs
 * with the token in `fenceContext`. The PostgreSQL store reads it at the call's entry and, inside
 * the write's transaction, refuses (`leaderFenced`, nothing written) when the lease row holds
 * another token: a leader paused past its lease and resumed can never apply what it decided before.
 * SQLite and the memory store have one process and ignore it.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Store } from './store.js';

/** The lease row of the control plane's leader (`pilot_leader.name`). */
export const LEASE_NAME = 'control';

/** The token a leader's call carries: what the process believes it holds (undefined: it does not lead). */
export interface Fence {
  token(): number | undefined;
  /** A write this fence carried was refused (metrics, logs). */
  refused?(token: number | undefined, current: number | undefined): void;
}

/** The fence of the call in progress (set by `fencedStore`, read by a store at the call's entry). */
export const fenceContext = new AsyncLocalStorage<Fence>();

/** `store` with every call made under `fence`: the writes a leader makes as leader. */
export function fencedStore(store: Store, fence: Fence): Store {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => fenceContext.run(fence, () => (v as (...a: unknown[]) => unknown).apply(target, args));
    },
  });
}
