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
 * That is the blue/green strategy, the default. The rollout's strategy (core/strategy.ts) may be
 * rolling (core/rollout-rolling.ts) or canary (core/rollout-canary.ts) instead; both need an active
 * revision to move from and old and new side by side, so a first deploy, and a fixed port shared by
 * old and new on one node (recreate), roll out blue/green whatever the strategy. Every strategy
 * fails the same way (a target instance failed, crash-looped, or was not ready in time) and ends the
 * same way: `pilot abort` stops the new revision at once.
 *
 * Blue/green keepPrevious: after the switch the previous revision's instances stay up (out of the
 * routing table) for that long, so `pilot rollback` switches back at once; the caller passes their
 * revision as `keepRevision` while the time runs.
 *
 * Autoscaling (core/autoscale.ts, control/autoscaler.ts): the replica count is the app's
 * (`app.replicas`, one owner: core/replicas.ts), set by the autoscaler for an autoscaled app, and it
 * may change in the middle of a rollout. A rollout never sets it: it sizes its sets from it, re-read
 * at every pass (a canary at weight w runs ceil(replicas × w / 100) instances of T while the stable
 * revision keeps `replicas`, so an abort is instant; rolling and blue/green size the new set to it).
 */
import { planCanary } from './rollout-canary.js';
import { planRolling } from './rollout-rolling.js';
import { isLive, isRelease, START, withTail, type PlannerAction, type PlannerInput, type RolloutCtx } from './rollout-types.js';
import { analyse, type Verdict } from './analysis.js';
import { DEFAULT_STRATEGY, type Strategy } from './strategy.js';
import { variantReplicas } from './experiment.js';

export * from './rollout-types.js';

/** The strategy a rollout follows: a stepped one needs an old revision beside the new one. */
export function effectiveStrategy(input: Pick<PlannerInput, 'activeRevision' | 'fixedPort' | 'rollout'>): Strategy {
  const s = input.rollout?.strategy;
  if (!s || s.type === 'blue-green') return s ?? DEFAULT_STRATEGY;
  if (input.activeRevision === undefined || input.activeRevision === input.rollout?.toRevision || input.fixedPort) return DEFAULT_STRATEGY;
  return s;
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
    const progress = r.progress ?? START;
    const done = (): void => {
      for (const rel of releases) if (rel.revision === r.toRevision) actions.push({ type: 'desire', id: rel.id, desired: 'stop' });
    };
    const targets = input.instances.filter((i) => isLive(i) && i.revision === r.toRevision);
    const fail = (reason: string): PlannerAction[] => {
      done();
      for (const t of targets) actions.push({ type: 'desire', id: t.id, desired: 'stop' });
      if (progress.weight !== 0 || progress.command !== undefined)
        actions.push({ type: 'progress', step: progress.step, weight: 0, restart: true, clearCommand: true });
      actions.push({ type: 'finish', status: 'failed', reason });
      return actions;
    };
    if (progress.command === 'abort')
      return fail(`aborted (\`pilot abort\`) at ${progress.weight}% of the traffic; revision ${r.toRevision} stopped`);

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
    // Every strategy: a target instance that failed to start or crash-loops fails the rollout.
    const failure = targets.find((i) => i.state === 'failed' || i.restarts >= input.crashLoopRestarts);
    if (failure) {
      return fail(
        withTail(
          failure.state === 'failed'
            ? `instance ${failure.id} of revision ${r.toRevision} failed to start: ${failure.lastError ?? 'unknown error'}`
            : `instance ${failure.id} of revision ${r.toRevision} crashed ${failure.restarts} times: ${failure.lastError ?? 'unknown error'}`,
          failure,
        ),
      );
    }
    const strategy = effectiveStrategy(input);
    const ctx: RolloutCtx = { input, rollout: r, progress, readyTimeoutMs, targets, actions, done, fail };
    if (strategy.type === 'canary') return planCanary(ctx, strategy);
    if (strategy.type === 'rolling') return planRolling(ctx, strategy);
    return planBlueGreen(ctx, strategy);
  }

  // Steady state: keep `replicas` instances of the active revision (shared with an experiment's
  // variant while one runs); retire everything else (but the previous revision's while blue/green
  // keeps it).
  if (input.activeRevision === undefined) return actions;
  const keep = steadyCounts(input);
  for (const o of input.instances) {
    if (isLive(o) && !keep.has(o.revision) && o.revision !== input.keepRevision)
      actions.push({ type: 'desire', id: o.id, desired: 'drain' });
  }
  for (const [revision, count] of keep) {
    const live = input.instances.filter((i) => isLive(i) && i.revision === revision);
    if (live.length < count) {
      actions.push({ type: 'create', revision, count: count - live.length });
    } else if (live.length > count) {
      // Scale down: retire the least useful first (not ready before ready, newest first).
      const order = [...live].sort((a, b) => Number(a.state === 'ready') - Number(b.state === 'ready'));
      for (const extra of order.slice(0, live.length - count)) actions.push({ type: 'desire', id: extra.id, desired: 'drain' });
    }
  }
  return actions;
}

/** Steady state: how many instances each kept revision runs (the active one; an experiment's variant too). */
function steadyCounts(input: PlannerInput): Map<number, number> {
  const active = input.activeRevision!;
  const e = input.experiment;
  if (e === undefined || e.revision === active) return new Map([[active, input.replicas]]);
  const share = variantReplicas(input.replicas, e.split);
  return new Map([
    [active, share.a],
    [e.revision, share.b],
  ]);
}

/**
 * Blue/green: the whole new set, one switch when all of it is ready; the old set drained (or kept,
 * keepPrevious). With `watch`, the switch is first a weight (100 to the new revision, the old set up
 * and out of the table): the new revision is watched that long (crashes, and analysis when set)
 * and only then made active; a failure sends the traffic back at once.
 */
function planBlueGreen(ctx: RolloutCtx, s: Extract<Strategy, { type: 'blue-green' }>): PlannerAction[] {
  const { input, rollout: r, progress: p, targets, actions, done, fail } = ctx;
  const keep = s.keepPreviousMs > 0;
  const watchMs = input.fixedPort ? 0 : (s.watchMs ?? 0);
  const notReady = targets.filter((i) => i.state !== 'ready');
  // (While watched, an instance that stops being ready is replaced or restarts; a crash loop fails it above.)
  const watching = watchMs > 0 && p.weight === 100;
  if (!watching && r.elapsedMs > ctx.readyTimeoutMs && (targets.length < input.replicas || notReady.length > 0)) {
    const culprit = notReady.find((i) => i.lastError);
    return fail(
      withTail(
        `revision ${r.toRevision} was not ready within ${Math.round(r.readyTimeoutMs / 1000)}s` +
          (culprit?.lastError ? `: ${culprit.lastError}` : ''),
        culprit,
      ),
    );
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
  if (watchMs > 0 && p.weight === 100) {
    // Watching: the new revision has all the traffic; the old set waits out of the table.
    const verdict: Verdict | undefined = s.analysis
      ? r.figures
        ? analyse(s.analysis, r.figures.canary, r.figures.stable)
        : { verdict: 'wait', reason: 'no traffic figures: the router cannot be read' }
      : undefined;
    if (verdict?.verdict === 'fail') return fail(`analysis failed while revision ${r.toRevision} was watched: ${verdict.reason}`);
    const since = p.sinceMs ?? r.elapsedMs;
    const ok = verdict === undefined || verdict.verdict === 'pass' || s.analysis?.allowIdle === true;
    if (since < watchMs || !ok) {
      if (verdict !== undefined && verdict.verdict !== p.verdict?.verdict)
        actions.push({ type: 'progress', step: 0, weight: 100, restart: false, clearCommand: false, verdict });
      return actions;
    }
  }
  if (ready.length >= input.replicas && watchMs > 0 && p.weight !== 100) {
    actions.push({ type: 'progress', step: 0, weight: 100, restart: true, clearCommand: false });
    return actions;
  }
  if (ready.length >= input.replicas) {
    actions.push({ type: 'activate', revision: r.toRevision });
    // keepPrevious: the set that served until now stays up, out of the table, for an instant switch back.
    for (const o of old) if (!(keep && o.revision === input.activeRevision)) actions.push({ type: 'desire', id: o.id, desired: 'drain' });
    for (const extra of targets.slice(input.replicas)) actions.push({ type: 'desire', id: extra.id, desired: 'drain' });
    done();
    actions.push({ type: 'finish', status: 'succeeded', reason: undefined });
  }
  return actions;
}
