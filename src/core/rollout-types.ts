/**
 * The rollout planners' shared vocabulary (core/rollout.ts dispatches by strategy to
 * rollout-canary.ts, rollout-rolling.ts and its own blue/green). Pure.
 */
import type { AnalysisFigures, Verdict } from './analysis.js';
import type { Strategy } from './strategy.js';
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
  /** How long it has been ready without a break (ms); undefined: not ready, or not known (counts as just ready). */
  readonly readyForMs?: number | undefined;
}

/** What a person asked of a running rollout (`pilot promote [--full]`, `pilot abort`); the planner acts on it. */
export type RolloutCommand = 'promote' | 'promote-full' | 'abort';

/** Where a stepped rollout (canary, rolling) is, as recorded on the rollout. */
export interface RolloutProgress {
  /** Canary: the index of the current step. */
  readonly step: number;
  /** The share of the traffic the new revision has now (0–100). */
  readonly weight: number;
  /** ms since the last transition (the step began, its weight took effect, an instance became available); undefined: none yet (counts from the rollout's start). */
  readonly sinceMs: number | undefined;
  readonly command: RolloutCommand | undefined;
  /** The last analysis verdict recorded (so a repeated one is not recorded again). */
  readonly verdict: Verdict | undefined;
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
        /** Absent: blue-green, the default. */
        readonly strategy?: Strategy | undefined;
        /** Absent: at the start (step 0, weight 0, no command). */
        readonly progress?: RolloutProgress | undefined;
        /** Canary: the figures of the canary and of the stable revision over the analysis window; absent: not known (the router cannot be read). */
        readonly figures?: { readonly canary: AnalysisFigures; readonly stable: AnalysisFigures | undefined } | undefined;
      }
    | undefined;
  /** Blue/green keepPrevious: the revision whose instances stay up (weight 0) after the switch, for an instant switch back. */
  readonly keepRevision?: number | undefined;
  /**
   * A running A/B experiment (core/experiment.ts): in the steady state its variant revision keeps
   * instances beside the active one, the replicas shared by `variantReplicas`. Ignored during a
   * rollout (a rollout ends the experiment when it starts).
   */
  readonly experiment?: { readonly revision: number; readonly split: number } | undefined;
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
  | { readonly type: 'finish'; readonly status: 'succeeded' | 'failed'; readonly reason: string | undefined }
  /**
   * Record where the rollout is: its step, the new revision's weight, `restart` the transition clock
   * (sinceMs) now, clear a command it acted on, record an analysis verdict.
   */
  | {
      readonly type: 'progress';
      readonly step: number;
      readonly weight: number;
      readonly restart: boolean;
      readonly clearCommand: boolean;
      readonly verdict?: Verdict | undefined;
    };

export const isRelease = (i: PlannerInstance): boolean => i.kind === 'release';
/** Meant to run and serve (not a release phase). */
export const isLive = (i: PlannerInstance): boolean => i.desired === 'run' && !isRelease(i);

/** The progress of a rollout that has none recorded yet. */
export const START: RolloutProgress = { step: 0, weight: 0, sinceMs: undefined, command: undefined, verdict: undefined };

/** "reason" followed by the instance's last lines of output, indented, when it has any. */
export function withTail(reason: string, i: Pick<PlannerInstance, 'id' | 'logTail'> | undefined): string {
  if (!i?.logTail) return reason;
  return `${reason}\n  last output of ${i.id}:\n${i.logTail
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n')}`;
}

/** What a strategy's planner is given: the input, the rollout, its progress, and the shared moves. */
export interface RolloutCtx {
  readonly input: PlannerInput;
  readonly rollout: NonNullable<PlannerInput['rollout']>;
  readonly progress: RolloutProgress;
  /** The ready deadline, the release phase's time added. */
  readonly readyTimeoutMs: number;
  /** The new revision's live instances. */
  readonly targets: readonly PlannerInstance[];
  /** Actions decided so far (the planner appends, and returns it). */
  readonly actions: PlannerAction[];
  /** Stop the rollout's release instance (it is done). */
  readonly done: () => void;
  /** Fail the rollout: the new revision stopped, its weight back to 0, the reason recorded. */
  readonly fail: (reason: string) => PlannerAction[];
}
