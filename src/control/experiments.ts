/**
 * A/B experiments in the control plane: start, read and end one, on behalf of the API routes
 * (experiment-routes.ts). Every write runs inside the reconciler's single writer; the store writes
 * the experiment and its event in one transaction; then the routing table is published at once (the
 * split changes no instance, so nothing else would publish it) and the app is reconciled (the
 * planner keeps the variant's instances, core/rollout.ts).
 *
 *   start: app has an active revision, no rollout, no experiment; b ≠ a, b exists, same runtime,
 *          its blobs still in the repository ─► experiment row (running) ─► routes a:100−split, b:split
 *   end --keep a ─► experiment ended ─► the planner drains b's instances
 *   end --keep b ─► experiment ended + rollout a → b (one transaction) ─► the normal rollout: b's
 *                   instances (already running) plus new ones until `replicas` are ready, activate
 *                   b, drain a
 *   a deploy or a rollback during an experiment ─► the rollout ends it (store.createRollout), kept
 *                   none: the new revision replaces both variants (README "A/B experiments")
 */
import { parseStickyBy, DEFAULT_STICKY_COOKIE, type StickyBy } from '../core/experiment.js';
import { PilotError, fail } from '../core/errors.js';
import type { ExperimentRecord, RolloutRecord, Store } from '../store/store.js';
import type { BlobStore } from '../artifacts/blob-port.js';
import { assertBlobsPresent, revisionBlobDigests } from './artifact-gc.js';
import type { Reconciler } from './reconciler.js';

export interface ExperimentDeps {
  readonly store: Store;
  readonly blobs: BlobStore;
  readonly reconciler: Reconciler;
}

export interface StartRequest {
  /** Variant b's revision number. */
  readonly variant: number;
  /** Variant b's share of the traffic, an integer 0–100. */
  readonly split: number;
  /** "cookie:NAME" or "header:NAME"; default cookie:pilot_ab. */
  readonly by?: string | undefined;
}

/** An experiment as the API answers it. */
export interface ExperimentView {
  readonly id: number;
  readonly app: string;
  readonly status: 'running' | 'ended';
  readonly variants: readonly { readonly name: 'a' | 'b'; readonly revision: number; readonly weight: number }[];
  readonly split: number;
  readonly by: StickyBy;
  readonly startedAt: number;
  readonly endedAt: number | null;
  readonly kept: 'a' | 'b' | null;
  readonly reason: string | null;
}

/** The API's view of an experiment record. */
export function experimentView(e: ExperimentRecord): ExperimentView {
  return {
    id: e.id,
    app: e.app,
    status: e.status,
    variants: [
      { name: 'a', revision: e.control, weight: 100 - e.split },
      { name: 'b', revision: e.variant, weight: e.split },
    ],
    split: e.split,
    by: e.by,
    startedAt: e.startedAt,
    endedAt: e.endedAt ?? null,
    kept: e.kept ?? null,
    reason: e.reason ?? null,
  };
}

function splitError(split: unknown): PilotError {
  return fail.experimentSplitInvalid({ split }, { details: { field: 'split' } });
}

/** Start an experiment on `app` (the active revision is variant a). */
export async function startExperiment(deps: ExperimentDeps, app: string, req: StartRequest): Promise<ExperimentRecord> {
  const { store, reconciler } = deps;
  // The route's schema checks these already; the module checks again for other callers.
  if (typeof req.split !== 'number' || !Number.isInteger(req.split) || req.split < 0 || req.split > 100) throw splitError(req.split);
  const by = parseStickyBy(req.by ?? `cookie:${DEFAULT_STICKY_COOKIE}`);
  const started = await reconciler.serial(async () => {
    const a = await store.getApp(app);
    if (!a) throw fail.appNotFound({ app });
    const revisions = await store.listRevisions(app);
    if (revisions.length < 2) {
      throw fail.experimentNeedsTwoRevisions({ app, count: revisions.length });
    }
    if (a.activeRevision === undefined) {
      throw fail.experimentNoActiveRevision({ app });
    }
    const rollout = await store.activeRollout(app);
    if (rollout) {
      throw fail.experimentDuringRollout({ app, revision: rollout.toRevision });
    }
    const running = await store.activeExperiment(app);
    if (running) {
      throw fail.experimentAlreadyRunning({ app, id: running.id, variant: running.variant, split: running.split });
    }
    const b = revisions.find((r) => r.number === req.variant);
    if (!b) {
      throw fail.experimentVariantNotFound(
        { app, variant: req.variant, revisions: revisions.map((r) => r.number).join(', ') },
        { details: { field: 'variant' } },
      );
    }
    if (b.number === a.activeRevision) {
      throw fail.experimentVariantIsActive({ revision: b.number }, { details: { field: 'variant' } });
    }
    const active = revisions.find((r) => r.number === a.activeRevision);
    if (active && active.config.runtime !== b.config.runtime) {
      throw fail.experimentRuntimeMismatch({
        variant: b.number,
        variantRuntime: b.config.runtime,
        active: active.number,
        activeRuntime: active.config.runtime,
      });
    }
    if (active?.config.port !== undefined || b.config.port !== undefined) {
      throw fail.experimentFixedPort({ app });
    }
    await assertBlobsPresent(deps.blobs, revisionBlobDigests(b), `cannot run revision ${b.number} of "${app}"`, true);
    const e = await store.startExperiment({
      app,
      control: a.activeRevision,
      variant: b.number,
      split: req.split,
      by,
      startedAt: Date.now(),
    });
    await reconciler.publishRoutes();
    return e;
  });
  reconciler.enqueue(app);
  return started;
}

/** The running experiment of `app`, else the last one (undefined: never had one). */
export async function readExperiment(store: Store, app: string): Promise<ExperimentRecord | undefined> {
  if (!(await store.getApp(app))) throw fail.appNotFound({ app });
  return (await store.activeExperiment(app)) ?? (await store.listExperiments(app, 1))[0];
}

/** End the running experiment of `app`, keeping variant a or b. */
export async function endExperiment(
  deps: ExperimentDeps,
  app: string,
  keep: 'a' | 'b',
): Promise<{ experiment: ExperimentRecord; rollout: RolloutRecord | undefined }> {
  const { store, reconciler } = deps;
  const ended = await reconciler.serial(async () => {
    const a = await store.getApp(app);
    if (!a) throw fail.appNotFound({ app });
    const e = await store.activeExperiment(app);
    if (!e) {
      throw fail.experimentNoneRunning({ app });
    }
    const now = Date.now();
    if (keep === 'a') {
      const r = await store.endExperiment(e.id, { kept: 'a', reason: `kept a (revision ${e.control})`, now });
      await reconciler.publishRoutes();
      return r;
    }
    const target = await store.getRevision(app, e.variant);
    if (target) await assertBlobsPresent(deps.blobs, revisionBlobDigests(target), `cannot keep revision ${e.variant} of "${app}"`, true);
    // b becomes active through the normal rollout path (activation, events, draining a).
    const r = await store.endExperiment(e.id, {
      kept: 'b',
      reason: `kept b (revision ${e.variant})`,
      now,
      rollout: { fromRevision: a.activeRevision, toRevision: e.variant },
    });
    await reconciler.publishRoutes();
    return r;
  });
  reconciler.enqueue(app);
  return ended;
}
