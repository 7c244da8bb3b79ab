/**
 * The run's state machine, as data: whether a report about a run (from its pipeline, the CD worker,
 * a restart's recovery) may change it, and what it changes. Pure: the run ledger
 * (cd/run-ledger.ts) reads the row, asks `decideRunReport`, and writes the answer.
 *
 *   run:   queued ──► running ──► succeeded | failed | cancelled | interrupted | superseded
 *            │                          (terminal: never reopened, never changed again)
 *            └──► cancelled | superseded | failed   (ended before it started: app removed, a newer
 *                                                    push queued, no repository to build)
 *   step:  pending ──► running ──► succeeded | failed | skipped
 *            └──► succeeded | failed | skipped       (its start was not reported, or it never began)
 *
 * - A report names the steps that changed (or all of them), by name; the others stay as stored. A
 *   step the run does not have, or one named twice, is refused.
 *
 * - A run is created `queued` (a webhook push) or `running` (`pilot run`, a rollback).
 * - `artifact`, `revision`, `rolloutId` and `commit` are set once; restating the same value is fine.
 * - A report that changes nothing is accepted as a no-op, also on a finished run (a retried request
 *   whose first answer was lost); one that would change a finished run is refused (`run_finished`)
 *   and says how the run ended. Its documented follow-ups happen in the store, not through reports:
 *   an interrupted webhook run is retried as a new run; a rollback's run ends with its rollout.
 */
import type { RunRecord, RunStatus, StepRecord, StepStatus } from './types.js';

export const TERMINAL_RUN_STATUSES: ReadonlySet<RunStatus> = new Set(['succeeded', 'failed', 'cancelled', 'interrupted', 'superseded']);

/** Whether a run in this status has ended (and can never change again). */
export function isRunFinished(s: RunStatus): boolean {
  return TERMINAL_RUN_STATUSES.has(s);
}

const RUN_EDGES: Readonly<Record<RunStatus, readonly RunStatus[]>> = {
  queued: ['running', 'cancelled', 'superseded', 'failed'],
  running: ['succeeded', 'failed', 'cancelled', 'interrupted', 'superseded'],
  succeeded: [],
  failed: [],
  cancelled: [],
  interrupted: [],
  superseded: [],
};

const STEP_EDGES: Readonly<Record<StepStatus, readonly StepStatus[]>> = {
  pending: ['running', 'succeeded', 'failed', 'skipped'],
  running: ['succeeded', 'failed', 'skipped'],
  succeeded: [],
  failed: [],
  skipped: [],
};

/** Whether a run may move from `from` to `to` (staying put is not a move). */
export function runTransitionAllowed(from: RunStatus, to: RunStatus): boolean {
  return RUN_EDGES[from].includes(to);
}

/** Whether a step may move from `from` to `to` (staying put is not a move). */
export function stepTransitionAllowed(from: StepStatus, to: StepStatus): boolean {
  return STEP_EDGES[from].includes(to);
}

/** What a party reports about a run. Every field is optional; absent = not reported. */
export interface RunReport {
  readonly status?: RunStatus;
  readonly steps?: readonly StepRecord[];
  readonly artifact?: string;
  readonly revision?: number;
  readonly rolloutId?: number;
  readonly commit?: string;
  readonly dirty?: boolean;
  readonly error?: string | null;
}

/** The fields to write: a subset of the report, plus `finishedAt` when the run ends. */
export interface RunChange {
  readonly status?: RunStatus;
  readonly steps?: readonly StepRecord[];
  readonly artifact?: string;
  readonly revision?: number;
  readonly rolloutId?: number;
  readonly commit?: string;
  readonly dirty?: boolean;
  readonly error?: string | null;
  readonly finishedAt?: number;
}

/** Why a report is refused: `run_finished` (the run has ended) or `run_transition` (not a legal move). */
export type RunRefusal = { readonly code: 'run_finished' | 'run_transition'; readonly message: string };

export type RunDecision = { readonly ok: true; readonly change: RunChange } | ({ readonly ok: false } & RunRefusal);

/** The part of a run record the machine reads. */
export type RunFacts = Pick<RunRecord, 'id' | 'status' | 'steps' | 'artifact' | 'revision' | 'rolloutId' | 'commit' | 'dirty' | 'error'>;

const SET_ONCE = ['artifact', 'revision', 'rolloutId', 'commit'] as const;

const sameStep = (a: StepRecord, b: StepRecord): boolean =>
  a.name === b.name && a.status === b.status && a.startedAt === b.startedAt && a.finishedAt === b.finishedAt && a.error === b.error;

/** How a finished run ended, for the message of a refused report. */
function endedAs(run: RunFacts): string {
  const why = run.error ? `: ${run.error.split('\n')[0]!.slice(0, 200)}` : '';
  return `run #${run.id} has already ended ${run.status}${why}`;
}

/**
 * Decide a report against the run as stored: the change to write (empty when the report changes
 * nothing), or why it is refused. `now` is the wall-clock time recorded as `finishedAt`.
 */
export function decideRunReport(run: RunFacts, report: RunReport, now: number): RunDecision {
  const change: { -readonly [K in keyof RunChange]: RunChange[K] } = {};
  const refuse = (message: string): RunDecision => ({
    ok: false,
    code: isRunFinished(run.status) ? 'run_finished' : 'run_transition',
    message: isRunFinished(run.status) ? `${endedAs(run)}; its report (${message}) was not recorded` : message,
  });

  if (report.status !== undefined && report.status !== run.status) {
    if (!runTransitionAllowed(run.status, report.status)) return refuse(`status ${run.status} → ${report.status}`);
    change.status = report.status;
    if (isRunFinished(report.status)) change.finishedAt = now;
  }

  if (report.steps !== undefined) {
    // Merged by name into the stored steps, which keep their order.
    const steps = [...run.steps];
    const named = new Set<string>();
    let changed = false;
    for (const next of report.steps) {
      if (named.has(next.name)) return refuse(`step ${next.name} is reported twice`);
      named.add(next.name);
      const i = steps.findIndex((x) => x.name === next.name);
      if (i < 0) return refuse(`step ${next.name} is not one of the run's steps (${run.steps.map((x) => x.name).join(', ') || 'none'})`);
      const prev = steps[i]!;
      if (sameStep(prev, next)) continue;
      if (prev.status === next.status) {
        // A step may restate its times while it is pending or running; an ended step is final.
        if (prev.status !== 'pending' && prev.status !== 'running') return refuse(`step ${prev.name} already ${prev.status} cannot change`);
      } else if (!stepTransitionAllowed(prev.status, next.status)) return refuse(`step ${prev.name} ${prev.status} → ${next.status}`);
      steps[i] = next;
      changed = true;
    }
    if (changed) change.steps = steps;
  }

  for (const f of SET_ONCE) {
    const v = report[f];
    if (v === undefined || v === run[f]) continue;
    if (run[f] !== undefined) return refuse(`${f} is already ${String(run[f])}, not ${String(v)}`);
    (change as Record<string, unknown>)[f] = v;
  }
  if (report.dirty !== undefined && report.dirty !== run.dirty) change.dirty = report.dirty;
  if (report.error !== undefined && (report.error ?? undefined) !== run.error) change.error = report.error;

  if (Object.keys(change).length > 0 && isRunFinished(run.status)) return refuse(describe(change));
  // A reported error belongs to how the run ends, or stands while it runs; it never reopens anything.
  return { ok: true, change };
}

function describe(c: RunChange): string {
  return Object.keys(c)
    .filter((k) => k !== 'finishedAt')
    .join(', ');
}

/** The run after `change` (what the store will hold), for a caller that applies decisions in memory. */
export function applyRunChange<R extends RunFacts>(run: R, change: RunChange): R {
  const { error, ...rest } = change;
  return { ...run, ...rest, ...(error === undefined ? {} : { error: error ?? undefined }) };
}
