/**
 * What the `deploy.plan` event says of a committed plan: one shape for every store (SQLite, memory),
 * so the feed reads the same whichever store wrote it.
 */
import type { PlanCommit } from './store.js';

/** What the `deploy.plan` event says of a committed plan (node names, not ids). */
export function planEventPayload(c: PlanCommit, nodeName: (id: string) => string): Record<string, unknown> {
  const { plan } = c;
  const last = new Map(plan.desired.map((d) => [d.id, d.desired]));
  const with_ = (want: string): string[] => [...last].filter(([, d]) => d === want).map(([id]) => id);
  return {
    rollout: plan.rolloutId ?? null,
    placed: plan.placements.map((p, k) => ({ instance: c.instanceIds[k], revision: p.revision, node: nodeName(p.nodeId), kind: p.kind })),
    drain: with_('drain'),
    stop: with_('stop'),
    activate: plan.activate ?? null,
    finish: plan.finish?.status ?? null,
    unplaced: plan.unplaced ?? null,
    ...(plan.progress
      ? { weight: plan.progress.weight, ...(plan.progress.verdict ? { verdict: plan.progress.verdict.verdict } : {}) }
      : {}),
  };
}
