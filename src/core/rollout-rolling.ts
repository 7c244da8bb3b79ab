/**
 * The rolling planner (Kubernetes' Deployment shape). With replicas N, surge S (a share rounds up)
 * and unavailable U (rounds down; both 0 is refused by the config, and treated as U = 1):
 *
 *   never more than N + S live instances, old and new together: new ones are created into that room;
 *   never fewer than N − U available (ready, and for a new one ready for `minReady`): old ones are
 *   drained only as far as that allows, not-ready old ones first (they serve nothing);
 *   traffic follows the ready instances: the new revision's weight is its share of them;
 *   done when N new instances are available and no old one is left: the new revision is activated.
 *
 * So a fleet with room for one more instance updates one in, one out (S = 1, U = 0), a fleet with no
 * room at all one out, one in (S = 0, U = 1), and a fleet with room does it in parallel. The rollout
 * fails when a new instance fails or crash-loops, or when no new instance became available for the
 * ready timeout, or (with `analysis`) when the new revision's figures fail a check while it serves
 * beside the old one; the steady state then brings the old revision back to N. `step` records how many new
 * instances were available at the last progress (the deadline restarts when it grows). Pure.
 */
import { analyse } from './analysis.js';
import { isLive, withTail, type PlannerAction, type RolloutCtx } from './rollout-types.js';
import { amountFor, type Strategy } from './strategy.js';

type Rolling = Extract<Strategy, { type: 'rolling' }>;

export function planRolling(ctx: RolloutCtx, s: Rolling): PlannerAction[] {
  const { input, rollout: r, progress: p, targets, actions, done, fail } = ctx;
  const n = input.replicas;
  const surge = amountFor(s.maxSurge, n, 'up');
  let unavailable = Math.min(n, amountFor(s.maxUnavailable, n, 'down'));
  if (surge === 0 && unavailable === 0) unavailable = 1;
  const old = input.instances.filter((i) => isLive(i) && i.revision !== r.toRevision);
  const available = targets.filter((i) => i.state === 'ready' && (i.readyForMs ?? 0) >= s.minReadyMs).length;
  const since = p.sinceMs ?? r.elapsedMs;

  if (available < Math.min(n, targets.length) || targets.length < n) {
    if (available <= p.step && since > ctx.readyTimeoutMs) {
      const culprit = targets.find((i) => i.state !== 'ready' && i.lastError);
      return fail(
        withTail(
          `rolling update to revision ${r.toRevision} made no progress for ${Math.round(r.readyTimeoutMs / 1000)}s ` +
            `(${available} of ${n} new instances available)` +
            (culprit?.lastError ? `: ${culprit.lastError}` : ''),
          culprit,
        ),
      );
    }
  }

  // Analysis (when set) while the new revision serves beside the old one: a failed check rolls back.
  if (s.analysis && p.weight > 0 && r.figures) {
    const v = analyse(s.analysis, r.figures.canary, r.figures.stable);
    if (v.verdict === 'fail')
      return fail(`analysis failed at ${p.weight}% of the traffic (${available} of ${n} new instances available): ${v.reason}`);
  }

  // Room for new instances under N + S.
  const create = Math.min(n - targets.length, n + surge - (targets.length + old.length));
  if (create > 0) actions.push({ type: 'create', revision: r.toRevision, count: create });

  // Old instances drained as far as availability allows: not-ready ones while there are too many
  // instances (they serve nothing), ready ones within the budget.
  const oldReady = old.filter((i) => i.state === 'ready');
  const oldNotReady = old.filter((i) => i.state !== 'ready');
  let live = targets.length + old.length;
  const drained = new Set<string>();
  for (const o of oldNotReady) {
    if (live <= n && targets.length < n) break;
    drained.add(o.id);
    live--;
  }
  let budget = oldReady.length + available - (n - unavailable);
  for (const o of oldReady) {
    if (budget <= 0) break;
    drained.add(o.id);
    budget--;
  }
  for (const id of drained) actions.push({ type: 'desire', id, desired: 'drain' });

  const oldLeft = old.length - drained.size;
  if (available >= n && oldLeft === 0) {
    actions.push({ type: 'activate', revision: r.toRevision });
    for (const extra of targets.slice(n)) actions.push({ type: 'desire', id: extra.id, desired: 'drain' });
    done();
    actions.push({ type: 'finish', status: 'succeeded', reason: undefined });
    return actions;
  }

  // Traffic follows the ready instances left in the table.
  const newReady = targets.filter((i) => i.state === 'ready').length;
  const oldRouted = oldReady.filter((i) => !drained.has(i.id)).length;
  const weight = newReady + oldRouted === 0 ? p.weight : Math.round((100 * newReady) / (newReady + oldRouted));
  const grew = available > p.step;
  if (weight !== p.weight || grew)
    actions.push({ type: 'progress', step: Math.max(p.step, available), weight, restart: grew, clearCommand: p.command !== undefined });
  return actions;
}
