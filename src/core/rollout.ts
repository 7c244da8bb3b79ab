/**
 * The rollout planner: given an app, its running rollout (if any) and its instances, decide what to
 * do next. Pure: no I/O, no clock (elapsed times come in), so it is tested exhaustively and the
 * reconcile loop that applies its actions stays dumb.
 *
 *   rollout to T:  create T instances ─► all T ready? ─► activate T (router switches) ─► drain old
 *                        │                                                            ─► succeeded
 *                        └─ a T instance failed / crash-looped, or not ready by the deadline
 *                             ─► stop T instances, keep the old revision active ─► failed (reason)
 *
 * With a fixed port, old and new cannot both listen on one node, so the rollout is "recreate":
 * drain and stop the old instances first (a short gap in service), then start the new ones.
 */
import type { InstanceState } from './types.js';

export type Desired = 'run' | 'drain' | 'stop';

export interface PlannerInstance {
  readonly id: string;
  readonly revision: number;
  readonly desired: Desired;
  readonly state: InstanceState;
  readonly restarts: number;
  readonly lastError: string | undefined;
  /** ms since it was set to drain (monotonic); undefined unless draining. */
  readonly drainingForMs: number | undefined;
  /** Requests in flight through the router. */
  readonly inflight: number;
}

export interface PlannerInput {
  readonly replicas: number;
  readonly activeRevision: number | undefined;
  readonly fixedPort: boolean;
  readonly rollout:
    | { readonly toRevision: number; readonly elapsedMs: number; readonly readyTimeoutMs: number }
    | undefined;
  readonly instances: readonly PlannerInstance[];
  readonly drainMs: number;
  /** A draining instance is stopped after this long even with requests still in flight. */
  readonly maxDrainMs: number;
  /** An instance that restarted this many times during a rollout fails it. */
  readonly crashLoopRestarts: number;
}

export type PlannerAction =
  | { readonly type: 'create'; readonly revision: number; readonly count: number }
  | { readonly type: 'desire'; readonly id: string; readonly desired: Desired }
  | { readonly type: 'activate'; readonly revision: number }
  | { readonly type: 'finish'; readonly status: 'succeeded' | 'failed'; readonly reason: string | undefined };

const isLive = (i: PlannerInstance): boolean => i.desired === 'run';

/** The next actions for one app. Idempotent: applying them and planning again converges. */
export function planApp(input: PlannerInput): PlannerAction[] {
  const actions: PlannerAction[] = [];
  for (const i of input.instances) {
    if (i.desired !== 'drain' || i.drainingForMs === undefined) continue;
    const drained = i.drainingForMs >= input.drainMs && i.inflight === 0;
    if (drained || i.drainingForMs >= input.maxDrainMs) actions.push({ type: 'desire', id: i.id, desired: 'stop' });
  }

  const r = input.rollout;
  if (r) {
    const targets = input.instances.filter((i) => isLive(i) && i.revision === r.toRevision);
    const failure = targets.find((i) => i.state === 'failed' || i.restarts >= input.crashLoopRestarts);
    const notReady = targets.filter((i) => i.state !== 'ready');
    let reason: string | undefined;
    if (failure) {
      reason = failure.state === 'failed'
        ? `instance ${failure.id} of revision ${r.toRevision} failed to start: ${failure.lastError ?? 'unknown error'}`
        : `instance ${failure.id} of revision ${r.toRevision} crashed ${failure.restarts} times: ${failure.lastError ?? 'unknown error'}`;
    } else if (r.elapsedMs > r.readyTimeoutMs && (targets.length < input.replicas || notReady.length > 0)) {
      const why = notReady.find((i) => i.lastError)?.lastError;
      reason = `revision ${r.toRevision} was not ready within ${Math.round(r.readyTimeoutMs / 1000)}s` + (why ? `: ${why}` : '');
    }
    if (reason !== undefined) {
      for (const t of targets) actions.push({ type: 'desire', id: t.id, desired: 'stop' });
      actions.push({ type: 'finish', status: 'failed', reason });
      return actions;
    }
    const old = input.instances.filter((i) => isLive(i) && i.revision !== r.toRevision);
    if (input.fixedPort && old.length > 0) {
      // Recreate: the old ones must release the port before a new one can bind it.
      for (const o of old) actions.push({ type: 'desire', id: o.id, desired: 'drain' });
      return actions;
    }
    const oldStillStopping = input.fixedPort && input.instances.some((i) => i.revision !== r.toRevision && i.state !== 'stopped');
    if (targets.length < input.replicas && !oldStillStopping) {
      actions.push({ type: 'create', revision: r.toRevision, count: input.replicas - targets.length });
    }
    const ready = targets.filter((i) => i.state === 'ready');
    if (ready.length >= input.replicas) {
      actions.push({ type: 'activate', revision: r.toRevision });
      for (const o of old) actions.push({ type: 'desire', id: o.id, desired: 'drain' });
      for (const extra of targets.slice(input.replicas)) actions.push({ type: 'desire', id: extra.id, desired: 'drain' });
      actions.push({ type: 'finish', status: 'succeeded', reason: undefined });
    }
    return actions;
  }

  // Steady state: keep `replicas` instances of the active revision; retire everything else.
  if (input.activeRevision === undefined) return actions;
  const active = input.instances.filter((i) => isLive(i) && i.revision === input.activeRevision);
  for (const o of input.instances) {
    if (isLive(o) && o.revision !== input.activeRevision) actions.push({ type: 'desire', id: o.id, desired: 'drain' });
  }
  if (active.length < input.replicas) {
    actions.push({ type: 'create', revision: input.activeRevision, count: input.replicas - active.length });
  } else if (active.length > input.replicas) {
    // Scale down: retire the least useful first (not ready before ready, newest first).
    const order = [...active].sort((a, b) => Number(a.state === 'ready') - Number(b.state === 'ready'));
    for (const extra of order.slice(0, active.length - input.replicas)) actions.push({ type: 'desire', id: extra.id, desired: 'drain' });
  }
  return actions;
}
