/**
 * The run ledger: the only writer of run rows. Every party that changes a run calls it: the
 * pipeline's reports (over HTTP, through control/run-routes.ts), the CD worker (claims, a run that
 * cannot start, recovery after a restart), the webhook intake (queueing a push), deploy.ts (a
 * rollback's run) and the server's start (CLI runs a dead server left running). A test
 * (run-ledger.test.ts) fails when anything else in src/ calls the store's run-writing methods.
 *
 * Legal moves are decided by core/run-machine.ts on the row as read; the write is a compare-and-set
 * on the status read (`RunPatch.ifStatus`), so a change that landed in between (the store's own queue
 * moves: a newer push superseding a queued run, a claim, an app removal cancelling queued runs, a
 * rollback's run ending with its rollout inside `commitPlan`) is never overwritten: the ledger reads
 * again and decides again, and a report that came too late is refused with `run_finished`.
 *
 * Why not `serial()` (control/single-writer.ts): a run row's decisions depend on that row alone,
 * never on instances, rollouts or nodes, and the compare-and-set makes each decision atomic in the
 * store itself (also for a second server on a shared database). The pipeline reports every step
 * of every run; queueing those behind reconcile passes would slow runs and decide nothing better.
 * The writes that must be ordered with a rollout are made where the rollout is: a rollback's run
 * is created inside deploy.ts's `serial()` block, and ends inside the plan applier's `commitPlan`.
 * Queue moves that touch many rows at once (enqueue with dedupe and supersede, claim, recovery)
 * are single store transactions, each one a legal edge of the machine.
 */
import { isPilotError, fail } from '../core/errors.js';
import { decideRunReport, type RunReport } from '../core/run-machine.js';
import type { RunRecord, StepRecord } from '../core/types.js';
import type { EnqueueResult, RevisionRecord, Store, WebhookPush } from '../store/store.js';

/** The steps of the deploy process, in order: a run reports these, by name. */
export const PIPELINE_STEP_NAMES = ['source', 'build', 'package', 'publish', 'deploy'] as const;

/** How often a report is decided again after losing a compare-and-set race before giving up. */
const CAS_ATTEMPTS = 5;

export class RunLedger {
  constructor(private readonly store: Store) {}

  /** A run started from a terminal (`pilot run`): `running` from the start, every step pending. */
  async startForegroundRun(r: {
    app: string;
    trigger: RunRecord['trigger'];
    commit: string | undefined;
    dirty: boolean;
    now: number;
  }): Promise<RunRecord> {
    const steps: StepRecord[] = PIPELINE_STEP_NAMES.map((name) => ({ name, status: 'pending' }));
    return this.store.createRun({ ...r, steps });
  }

  /**
   * A rollback is a run too (the audit trail): `running` with its deploy step, bound to its
   * revision and rollout, and ended by the store with the rollout (`finishRolloutRuns`). Called
   * inside the single writer, where the rollout is created.
   */
  async startRollbackRun(r: { app: string; target: RevisionRecord; rolloutId: number; now: number }): Promise<RunRecord> {
    const run = await this.store.createRun({
      app: r.app,
      trigger: 'rollback',
      commit: r.target.commit,
      dirty: r.target.dirty,
      steps: [{ name: 'deploy', status: 'running', startedAt: r.now }],
      now: r.now,
    });
    return this.report(run.id, { revision: r.target.number, artifact: r.target.artifact, rolloutId: r.rolloutId }, r.now);
  }

  /** Durably queue a push (dedupe, fence, superseding older queued runs of the branch: one store transaction). */
  enqueueWebhookRun(p: WebhookPush): Promise<EnqueueResult> {
    return this.store.enqueueWebhookRun(p);
  }

  /** The worker takes the oldest queued run past its quiet period whose app has no run going (queued → running). */
  claimNextRun(now: number, queuedBefore: number): Promise<RunRecord | undefined> {
    return this.store.claimNextRun(new Set(), now, queuedBefore);
  }

  /** After a restart: webhook runs left running end interrupted and are retried once; CLI runs end interrupted. */
  recoverInterruptedRuns(now: number): Promise<RunRecord[]> {
    return this.store.recoverInterruptedRuns(now);
  }

  /** At the server's start: runs of a `pilot run` a dead server left running end interrupted (their rollout goes on). */
  interruptForegroundRuns(now: number): Promise<number> {
    return this.store.interruptForegroundRuns(now);
  }

  /** A run that cannot start (no repository to build): it ends failed, saying why. */
  fail(id: number, error: string, now: number): Promise<RunRecord> {
    return this.report(id, { status: 'failed', error }, now);
  }

  /**
   * Apply a report about a run: decided by core/run-machine.ts on the row as stored, written with a
   * compare-and-set on its status. Refused with `run_finished` when the run has ended (how it ended
   * is in the message), `run_transition` when the move is not legal; a report that changes nothing
   * answers the run as it is.
   */
  async report(id: number, report: RunReport, now: number): Promise<RunRecord> {
    for (let attempt = 1; ; attempt++) {
      const run = await this.store.getRun(id);
      if (!run) throw fail.runNotFound({ id });
      const d = decideRunReport(run, report, now);
      if (!d.ok)
        throw d.code === 'run_finished'
          ? fail.runReportOnFinishedRun({ message: d.message })
          : fail.runReportIllegal({ message: d.message });
      if (Object.keys(d.change).length === 0) return run;
      try {
        return await this.store.updateRun(id, { ...d.change, ifStatus: run.status });
      } catch (err) {
        // Lost a race with another change of this run: decide again on what is stored now.
        if (!(isPilotError(err) && err.code === 'conflict') || attempt >= CAS_ATTEMPTS) throw err;
      }
    }
  }
}
