/**
 * The canary planner. Steps of weights with pauses; the stable (active) revision keeps all its
 * instances throughout, so a failure moves every request back at once.
 *
 *   step k begins ─► its share of the new revision's instances (ceil(replicas × weight), ≥ 1) ready?
 *     ─► weight k in effect (the router sends that share) ─► pause k over, analysis passes
 *     ─► step k + 1 … ─► last step (weight 100): its pause is the watch period ─► activate, drain stable
 *   analysis (core/analysis.ts) runs on every pass while the canary has weight, between steps too: a failed check
 *   rolls back (weight 0, new revision stopped, reason recorded); too few requests waits (says so),
 *   unless `allowIdle`; a step without pause waits for `pilot promote`.
 *   promote: the next step now (analysis then goes on); promote-full: straight to 100 and done, no
 *   analysis, once the whole new set is ready.
 *
 * Progress (step, weight, since) is recorded on the rollout, so a restarted control plane resumes
 * the step and what is left of its pause. Pure.
 */
import { analyse, type Verdict } from './analysis.js';
import { isLive, withTail, type PlannerAction, type RolloutCtx } from './rollout-types.js';
import { canaryInstances, type Strategy } from './strategy.js';

type Canary = Extract<Strategy, { type: 'canary' }>;

export function planCanary(ctx: RolloutCtx, s: Canary): PlannerAction[] {
  const { input, rollout: r, progress: p, targets, actions, done, fail } = ctx;
  const n = input.replicas;
  const lastIdx = s.steps.length - 1;
  const full = p.command === 'promote-full';
  const stepIdx = full ? lastIdx : Math.min(p.step, lastIdx);
  const step = s.steps[stepIdx]!;
  const since = p.sinceMs ?? r.elapsedMs;
  // Between steps (the next step's instances starting) the weight in effect is the step before's.
  const shown = p.weight === step.weight ? stepIdx + 1 : Math.max(1, stepIdx);
  const where = `step ${shown}/${s.steps.length} (${p.weight}% of the traffic)`;

  const stable = input.instances.filter((i) => isLive(i) && i.revision === input.activeRevision);
  // Anything neither stable nor canary (an older canary's leftovers) goes.
  for (const o of input.instances) {
    if (isLive(o) && o.revision !== r.toRevision && o.revision !== input.activeRevision)
      actions.push({ type: 'desire', id: o.id, desired: 'drain' });
  }
  if (stable.length < n) actions.push({ type: 'create', revision: input.activeRevision!, count: n - stable.length });
  const want = full ? n : canaryInstances(n, step.weight);
  if (targets.length < want) actions.push({ type: 'create', revision: r.toRevision, count: want - targets.length });
  const ready = targets.filter((i) => i.state === 'ready');

  // Analysis, continuously, whenever the canary has traffic: also while the next step's instances
  // start (that can take up to the ready timeout, the canary serving the step before's share all along).
  let verdict: Verdict | undefined;
  if (!full && p.weight > 0) {
    verdict = r.figures
      ? analyse(s.analysis, r.figures.canary, r.figures.stable)
      : { verdict: 'wait', reason: 'no traffic figures: the router cannot be read' };
    if (verdict.verdict === 'fail') return fail(`canary analysis failed at ${where}: ${verdict.reason}`);
  }

  if (p.weight !== step.weight) {
    // The step's instances first; its weight once they are ready.
    if (ready.length >= want) {
      actions.push({ type: 'progress', step: stepIdx, weight: step.weight, restart: true, clearCommand: false });
    } else if (since > ctx.readyTimeoutMs) {
      const culprit = targets.find((i) => i.state !== 'ready' && i.lastError);
      return fail(
        withTail(
          `revision ${r.toRevision} was not ready within ${Math.round(r.readyTimeoutMs / 1000)}s at step ${stepIdx + 1}/${s.steps.length}` +
            (culprit?.lastError ? `: ${culprit.lastError}` : ''),
          culprit,
        ),
      );
    } else if (full && p.step !== stepIdx) {
      actions.push({ type: 'progress', step: stepIdx, weight: p.weight, restart: false, clearCommand: false });
    }
    return actions;
  }

  const analysisOk = full || (verdict !== undefined && (verdict.verdict === 'pass' || s.analysis.allowIdle));
  const pauseOver = step.pauseMs !== undefined && since >= step.pauseMs;
  const promoted = p.command === 'promote' || full;
  if (promoted || (pauseOver && analysisOk)) {
    if (stepIdx < lastIdx) {
      actions.push({
        type: 'progress',
        step: stepIdx + 1,
        weight: p.weight,
        restart: true,
        clearCommand: p.command === 'promote',
        verdict,
      });
      return actions;
    }
    if (ready.length >= n) {
      actions.push({ type: 'activate', revision: r.toRevision });
      for (const o of stable) actions.push({ type: 'desire', id: o.id, desired: 'drain' });
      for (const extra of targets.slice(n)) actions.push({ type: 'desire', id: extra.id, desired: 'drain' });
      done();
      actions.push({ type: 'finish', status: 'succeeded', reason: undefined });
      return actions;
    }
  }
  // Record a verdict when it changes kind (pass ↔ wait), not on every pass.
  if (verdict !== undefined && verdict.verdict !== p.verdict?.verdict)
    actions.push({ type: 'progress', step: stepIdx, weight: p.weight, restart: false, clearCommand: false, verdict });
  return actions;
}
