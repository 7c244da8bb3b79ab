/**
 * The plan applier: the one place where a plan (core/plan.ts) becomes state. Called inside the
 * single writer (`Reconciler.serial()`), it re-checks the plan against the latest state and
 * commits all of it in one transaction, or rejects it as stale and commits nothing (Nomad's
 * plan_apply.go). Stale means: a row the plan was decided from changed (an agent reported, an API
 * call wrote), or a node it places on is no longer live, registered or eligible. The caller then
 * plans the app again from the new state.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { isEmptyPlan, type Plan } from '../core/plan.js';
import type { Store } from '../store/store.js';

export interface ApplierDeps {
  readonly store: Store;
  readonly log: Logger;
  /** The node monitor's word (in memory): a node that stopped answering takes no placement. */
  readonly isNodeLive: (nodeId: string) => boolean;
  /** Instance ids for the placements (tests pass their own); default `<app>-<revision>-[release-]<6 hex>`. */
  readonly newId?: ((app: string, revision: number, kind: 'web' | 'release') => string) | undefined;
}

export type ApplyResult =
  { readonly committed: true; readonly instanceIds: readonly string[] } | { readonly committed: false; readonly reason: string };

const defaultId = (app: string, revision: number, kind: 'web' | 'release'): string =>
  `${app}-${revision}-${kind === 'release' ? 'release-' : ''}${randomBytes(3).toString('hex')}`;

/** Commit `plan` whole, or reject it as stale. Call inside the single writer. */
export async function applyPlan(deps: ApplierDeps, plan: Plan, now = Date.now()): Promise<ApplyResult> {
  if (isEmptyPlan(plan)) return { committed: true, instanceIds: [] };
  for (const p of plan.placements) {
    if (!deps.isNodeLive(p.nodeId)) return stale(deps, plan, `node ${p.nodeId} is no longer live`);
  }
  const newId = deps.newId ?? defaultId;
  const instanceIds = plan.placements.map((p) => newId(plan.app, p.revision, p.kind));
  const verdict = await deps.store.commitPlan({ plan, instanceIds, now });
  if (!verdict.committed) return stale(deps, plan, verdict.reason);
  const log = deps.log;
  const app = plan.app;
  plan.placements.forEach((p, k) =>
    log.info({ app, revision: p.revision, instance: instanceIds[k], node: p.nodeId, kind: p.kind }, 'instance placed'),
  );
  for (const d of plan.desired) {
    if (d.why === 'lost') log.warn({ app, instance: d.id }, 'instance lost with its node; replacing it');
    else log.info({ app, instance: d.id, desired: d.desired, ...(d.why === 'moved' ? { moved: true } : {}) }, 'instance desired state');
  }
  if (plan.activate !== undefined) log.info({ app, revision: plan.activate }, 'revision active');
  if (plan.finish && plan.rolloutId !== undefined)
    log.info({ app, rollout: plan.rolloutId, status: plan.finish.status, reason: plan.finish.reason }, 'rollout finished');
  if (plan.unplaced) log.warn({ app, unplaced: plan.unplaced.count }, plan.unplaced.reason);
  return { committed: true, instanceIds };
}

function stale(deps: ApplierDeps, plan: Plan, reason: string): ApplyResult {
  deps.log.debug({ app: plan.app, reason }, 'plan rejected as stale');
  return { committed: false, reason };
}
