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
 * drain and stop the old instances first (a short gap in service), then start the new ones. (When
 * every node gives a fixed-port instance its own network namespace, the caller passes
 * `fixedPort: false`: old and new then listen on the same port in different namespaces.)
 *
 * With a release phase, the rollout first runs one `release` instance of T (a one-shot):
 *
 *   release instance ─► exited 0 (state stopped) ─► the steps above
 *          └─ failed (non-zero exit, timeout) ─► failed (reason + its last output); nothing moved
 *
 * Failure reasons carry the last lines of the failing instance's output (its `logTail`).
 *
 * Autoscaling (issue #13, core/autoscale.ts, control/autoscaler.ts): the replica count is the
 * app's (`app.replicas`, one owner: core/replicas.ts), set by the autoscaler for an autoscaled app,
 * and it may change in the middle of a rollout. A rollout never sets it: it sizes its sets from it
 * and only splits it between revisions (`splitReplicas(replicas, weight)` in core/autoscale.ts: a
 * canary at weight w runs ceil(replicas × w / 100) instances of T, the stable revision the rest),
 * re-reading the count at every pass.
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
  /** `release`: the one-shot release phase of its revision; absent = `web`. */
  readonly kind?: 'web' | 'release' | undefined;
  /** Its last lines of output when it failed. */
  readonly logTail?: string | undefined;
}

export interface PlannerInput {
  readonly replicas: number;
  readonly activeRevision: number | undefined;
  readonly fixedPort: boolean;
  readonly rollout:
    | {
        readonly toRevision: number;
        readonly elapsedMs: number;
        readonly readyTimeoutMs: number;
        /** The target revision has a release phase to run before anything else. */
        readonly release?: boolean | undefined;
        /** How long the release phase may take (the agent kills it then); the ready deadline starts after it. */
        readonly releaseTimeoutMs?: number | undefined;
      }
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
  | { readonly type: 'release'; readonly revision: number }
  | { readonly type: 'desire'; readonly id: string; readonly desired: Desired }
  | { readonly type: 'activate'; readonly revision: number }
  | { readonly type: 'finish'; readonly status: 'succeeded' | 'failed'; readonly reason: string | undefined };

const isRelease = (i: PlannerInstance): boolean => i.kind === 'release';
const isLive = (i: PlannerInstance): boolean => i.desired === 'run' && !isRelease(i);

/** "reason" followed by the instance's last lines of output, indented, when it has any. */
export function withTail(reason: string, i: Pick<PlannerInstance, 'id' | 'logTail'> | undefined): string {
  if (!i?.logTail) return reason;
  return `${reason}\n  last output of ${i.id}:\n${i.logTail
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n')}`;
}

/** The next actions for one app. Idempotent: applying them and planning again converges. */
export function planApp(input: PlannerInput): PlannerAction[] {
  const actions: PlannerAction[] = [];
  // A release instance is kept (desired run) while its rollout runs, as the record that the phase
  // passed; any other is stopped.
  const releases = input.instances.filter((i) => isRelease(i) && i.desired === 'run');
  for (const i of releases) {
    if (!input.rollout || i.revision !== input.rollout.toRevision) actions.push({ type: 'desire', id: i.id, desired: 'stop' });
  }
  for (const i of input.instances) {
    if (i.desired !== 'drain' || i.drainingForMs === undefined) continue;
    const drained = i.drainingForMs >= input.drainMs && i.inflight === 0;
    if (drained || i.drainingForMs >= input.maxDrainMs) actions.push({ type: 'desire', id: i.id, desired: 'stop' });
  }

  const r = input.rollout;
  if (r) {
    let readyTimeoutMs = r.readyTimeoutMs;
    if (r.release) {
      const rel = releases.find((i) => i.revision === r.toRevision);
      const releaseTimeoutMs = r.releaseTimeoutMs ?? 300_000;
      // The agent enforces the timeout; the margin covers fetching the artifact and reporting.
      const phaseDeadline = releaseTimeoutMs + 60_000;
      readyTimeoutMs += phaseDeadline;
      if (!rel) {
        if (r.elapsedMs > phaseDeadline)
          return [
            ...actions,
            { type: 'finish', status: 'failed', reason: `release phase of revision ${r.toRevision} could not be placed on a node` },
          ];
        return [...actions, { type: 'release', revision: r.toRevision }];
      }
      if (rel.state === 'failed' || (rel.state !== 'stopped' && r.elapsedMs > phaseDeadline)) {
        const why = rel.lastError ?? (rel.state === 'failed' ? 'failed' : `not finished within ${Math.round(phaseDeadline / 1000)}s`);
        actions.push({ type: 'desire', id: rel.id, desired: 'stop' });
        actions.push({
          type: 'finish',
          status: 'failed',
          reason: withTail(`release phase of revision ${r.toRevision} failed: ${why}`, rel),
        });
        return actions;
      }
      if (rel.state !== 'stopped') return actions; // still running: nothing moves before it passed
    }
    const done = (): void => {
      for (const rel of releases) if (rel.revision === r.toRevision) actions.push({ type: 'desire', id: rel.id, desired: 'stop' });
    };
    const targets = input.instances.filter((i) => isLive(i) && i.revision === r.toRevision);
    const failure = targets.find((i) => i.state === 'failed' || i.restarts >= input.crashLoopRestarts);
    const notReady = targets.filter((i) => i.state !== 'ready');
    let reason: string | undefined;
    if (failure) {
      reason = withTail(
        failure.state === 'failed'
          ? `instance ${failure.id} of revision ${r.toRevision} failed to start: ${failure.lastError ?? 'unknown error'}`
          : `instance ${failure.id} of revision ${r.toRevision} crashed ${failure.restarts} times: ${failure.lastError ?? 'unknown error'}`,
        failure,
      );
    } else if (r.elapsedMs > readyTimeoutMs && (targets.length < input.replicas || notReady.length > 0)) {
      const culprit = notReady.find((i) => i.lastError);
      reason = withTail(
        `revision ${r.toRevision} was not ready within ${Math.round(r.readyTimeoutMs / 1000)}s` +
          (culprit?.lastError ? `: ${culprit.lastError}` : ''),
        culprit,
      );
    }
    if (reason !== undefined) {
      done();
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
      done();
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
