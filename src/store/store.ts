/**
 * The persistence port. Everything the control plane must remember across a restart goes through
 * this interface; SQLite implements it now (sqlite-store.ts), PostgreSQL later. Methods are async
 * so that a networked database fits the same shape. Times are wall-clock milliseconds, for display
 * and history only: timeouts and failure detection use the monotonic clock in memory.
 */
import type { Verdict } from '../core/analysis.js';
import type { RolloutCommand } from '../core/rollout-types.js';
import type { Strategy } from '../core/strategy.js';
import type { AppConfig } from '../core/app-config.js';
import { PilotError, fail } from '../core/errors.js';
import type { Plan } from '../core/plan.js';
import type { ReplicasSource } from '../core/replicas.js';
import type { EventKind, NewEvent, PilotEvent } from '../core/events.js';
import type { StickyBy } from '../core/experiment.js';
import type { NotifyEvent, NotifyKind } from '../core/notify.js';
import type {
  ArtifactMeta,
  ImageRef,
  InstanceKind,
  InstanceState,
  NodeRuntimeRef,
  RolloutStatus,
  RunRecord,
  RunStatus,
  StepRecord,
} from '../core/types.js';

export interface AppRecord {
  readonly name: string;
  readonly config: AppConfig;
  readonly replicas: number;
  /** Who set `replicas` last (core/replicas.ts): it is the one owner of the count. */
  readonly replicasSource: ReplicasSource;
  readonly activeRevision: number | undefined;
  readonly createdAt: number;
  readonly updatedAt: number;
  /** Where the CD server clones from, and the branch it deploys; undefined for CLI-only apps. */
  readonly repo: string | undefined;
  readonly branch: string | undefined;
  /** Sealed (store/secret-box.ts): never stored or logged in clear. */
  readonly webhookSecret: string | undefined;
  readonly githubToken: string | undefined;
  readonly statusApiUrl: string | undefined;
}

export interface AppSource {
  readonly repo: string;
  readonly branch: string;
  readonly webhookSecret: string;
  readonly githubToken: string | undefined;
  readonly statusApiUrl: string | undefined;
}

export interface WebhookPush {
  readonly app: string;
  readonly deliveryId: string;
  readonly commit: string;
  readonly branch: string;
  readonly message: string;
  readonly author: string;
  readonly now: number;
  /** owner/name of the repository as GitHub names it (for commit statuses). */
  readonly repoFullName?: string;
}

export type EnqueueResult =
  | { readonly outcome: 'queued'; readonly run: RunRecord; readonly superseded: readonly number[] }
  | { readonly outcome: 'duplicate-delivery' | 'duplicate-commit'; readonly run: RunRecord };

/** A notification endpoint of an app (control/notifications.ts); URL and HMAC secret sealed. */
export interface NotifyEndpointRecord {
  readonly id: number;
  readonly app: string;
  readonly kind: NotifyKind;
  readonly urlSealed: string;
  /** The URL as it may be shown (core/notify.ts maskUrl). */
  readonly urlMasked: string;
  /** The HMAC-SHA256 key of a json endpoint's signature header. */
  readonly secretSealed: string | undefined;
  readonly events: readonly NotifyEvent[];
  /** Feed events up to this id predate the endpoint: it hears none of them. */
  readonly afterEvent: number;
  readonly createdAt: number;
}

export type NotifyDeliveryStatus = 'pending' | 'delivered' | 'failed';

/** One notification for one endpoint: the body as sent (the same bytes on every attempt). */
export interface NotifyDeliveryRecord {
  readonly id: number;
  readonly endpointId: number;
  readonly app: string;
  readonly event: string;
  /** The feed event it comes from; undefined for `pilot notify test`. */
  readonly eventId: number | undefined;
  readonly body: string;
  readonly status: NotifyDeliveryStatus;
  readonly attempts: number;
  readonly nextAttemptAt: number;
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** One attempt at a delivery: the HTTP status it got, or the error (timeout, refused). */
export interface NotifyAttemptRecord {
  readonly n: number;
  readonly at: number;
  readonly code: number | undefined;
  readonly error: string | undefined;
  readonly ms: number;
}

export type NewNotifyDelivery = Pick<NotifyDeliveryRecord, 'endpointId' | 'app' | 'event' | 'eventId' | 'body'>;

/** Where a host's certificate comes from: ACME (issued and renewed by Pilot) or the user. */
export type CertificateSource = 'acme' | 'user';
/** pending: not issued yet; valid: served; failed: the last attempt failed (a valid one may still be served). */
export type CertificateState = 'pending' | 'valid' | 'failed';

/** A host's HTTPS certificate (control/certificates.ts). */
export interface CertificateRecord {
  readonly host: string;
  readonly source: CertificateSource;
  /** Sealed PEM chain (leaf first) and sealed private key; absent until one is issued. */
  readonly certSealed?: string;
  readonly keySealed?: string;
  readonly issuer?: string;
  /** Expiry of the stored certificate, ms since epoch. */
  readonly notAfter?: number;
  readonly state: CertificateState;
  /** The last failure's message (kept until an attempt succeeds). */
  readonly lastError?: string;
  /** Failed attempts in a row (the back-off's exponent). */
  readonly attempts: number;
  /** Not before this time is the next attempt made (ms since epoch). */
  readonly nextAttemptAt?: number;
  readonly updatedAt: number;
}

export interface SecretRecord {
  readonly name: string;
  /** Sealed value. */
  readonly value: string;
  readonly updatedAt: number;
  /** `run`: injected into the app's instances; `build`: given to the build steps only. */
  readonly scope: SecretScope;
}

export type SecretScope = 'run' | 'build';

export interface VolumePlacement {
  readonly app: string;
  readonly name: string;
  readonly nodeId: string;
  readonly createdAt: number;
}

export interface RegistryRecord {
  /** http(s)://host[:port], normalized (control/registry-routes.ts). */
  readonly url: string;
  readonly username: string | undefined;
  /** Sealed (store/secret-box.ts). */
  readonly password: string | undefined;
  readonly updatedAt: number;
}

/** A deploy target: a Docker Swarm whose manager Pilot drives (src/swarm/, `pilot targets`). */
export interface TargetRecord {
  readonly name: string;
  readonly kind: 'swarm';
  /** The Docker Engine API of a Swarm manager: unix:///path or tcp://host:port. */
  readonly docker: string;
  /** Port blocks of 100 the target's services take their ports from (service ports: block + slot). */
  readonly ports: { readonly from: number; readonly to: number };
  readonly createdAt: number;
}

export interface RevisionRecord {
  readonly app: string;
  readonly number: number;
  readonly artifact: string;
  readonly commit: string;
  readonly dirty: boolean;
  readonly config: AppConfig;
  readonly runId: number | undefined;
  readonly createdAt: number;
  /** runtime docker: the image the revision runs. */
  readonly image: ImageRef | undefined;
  /** runtime process: the exact Node.js runtime it was built with and runs with. */
  readonly nodeRuntime: NodeRuntimeRef | undefined;
}

export interface RolloutRecord {
  readonly id: number;
  readonly app: string;
  readonly fromRevision: number | undefined;
  readonly toRevision: number;
  readonly status: RolloutStatus;
  readonly reason: string | undefined;
  readonly startedAt: number;
  readonly finishedAt: number | undefined;
  /** The strategy it follows (core/strategy.ts); undefined: blue-green (rollouts made before strategies, rollbacks). */
  readonly strategy?: Strategy | undefined;
  /** Where it is: step, weight of the new revision, the last transition (wall clock ms), a command waiting, the last verdict. */
  readonly progress?: RolloutRecordProgress | undefined;
}

export interface RolloutRecordProgress {
  readonly step: number;
  readonly weight: number;
  readonly since: number | undefined;
  readonly command: RolloutCommand | undefined;
  readonly verdict: Verdict | undefined;
}

/** An A/B experiment (core/experiment.ts): variant a is `control`, variant b `variant`. */
export interface ExperimentRecord {
  readonly id: number;
  readonly app: string;
  /** Variant a: the active revision when the experiment started. */
  readonly control: number;
  /** Variant b. */
  readonly variant: number;
  /** Variant b's share of the traffic, 0–100. */
  readonly split: number;
  readonly by: StickyBy;
  readonly status: 'running' | 'ended';
  readonly startedAt: number;
  readonly endedAt: number | undefined;
  /** The variant the end kept; undefined when a rollout or the app's removal ended it (see `reason`). */
  readonly kept: 'a' | 'b' | undefined;
  readonly reason: string | undefined;
}

/** desired: run = keep it running; drain = out of the routing table, about to stop; stop = stop it. */
export type InstanceDesired = 'run' | 'drain' | 'stop';

export interface InstanceRecord {
  readonly id: string;
  readonly app: string;
  readonly revision: number;
  readonly nodeId: string;
  readonly desired: InstanceDesired;
  readonly state: InstanceState;
  readonly port: number | undefined;
  readonly pid: number | undefined;
  readonly restarts: number;
  readonly lastError: string | undefined;
  readonly startedAt: number | undefined;
  /** runtime docker: the container's id. */
  readonly containerId: string | undefined;
  /** The last lines of its output when it failed (crash, start, probe), secrets masked. */
  readonly logTail: string | undefined;
  /** Where the router reaches it when not at its node's address (its own network namespace). */
  readonly address: string | undefined;
  /** `web`: serves traffic; `release`: the one-shot release phase of its revision. */
  readonly kind: InstanceKind;
  readonly createdAt: number;
  readonly updatedAt: number;
}

export interface NodeRecord {
  readonly id: string;
  readonly name: string;
  readonly address: string;
  readonly apiUrl: string;
  /** sha256 of the node credential the agent authenticates with. */
  readonly credentialHash: string;
  /** Token the control plane presents to the agent's own API (logs). */
  readonly agentToken: string;
  readonly registeredAt: number;
  readonly lastSeenAt: number;
  /** eligible: takes new instances; cordoned: keeps its instances, takes no new ones; draining: they move away. */
  readonly scheduling: NodeScheduling;
  /** Capacity the agent reported; undefined = unknown (no limit applied). */
  readonly cpus: number | undefined;
  readonly memoryMb: number | undefined;
  /** key=value labels the agent was started with (`pilot agent --label zone=a`), for constraints. */
  readonly labels: Readonly<Record<string, string>>;
  /** Runtimes beyond `process` the agent reported (docker: whether its engine answers). */
  readonly runtimes: NodeRuntimes;
}

/** What an agent reported about its optional runtimes; absent = not reported (older agent). */
export interface NodeRuntimes {
  readonly docker?: { readonly available: boolean; readonly version?: string | undefined; readonly error?: string | undefined } | undefined;
  /** Whether the agent gives fixed-port instances their own network namespace (zero-downtime switch). */
  readonly netns?: { readonly available: boolean; readonly error?: string | undefined } | undefined;
  /** How the node contains process instances (own uid, cgroups) and, when something is missing, why. */
  readonly process?:
    | {
        readonly isolation?:
          | {
              readonly user: boolean;
              readonly cgroup: boolean;
              readonly cgroupVersion?: string | undefined;
              readonly reason?: string | undefined;
            }
          | undefined;
      }
    | undefined;
}

export type NodeScheduling = 'eligible' | 'cordoned' | 'draining';

/** A Node.js runtime tarball kept in the artifact repository (table node_runtimes). */
export interface NodeRuntimeRecord {
  readonly version: string;
  /** linux-x64 */
  readonly platform: string;
  /** sha256:<hex>: the blob in the artifact repository. */
  readonly digest: string;
  /** The registry's published sha512 integrity, when it came from (or was checked against) the registry. */
  readonly integrity: string | undefined;
  readonly size: number;
  /** Where it came from: the registry URL, or `import` (pilot runtimes add). */
  readonly origin: string;
  readonly createdAt: number;
}

export interface JoinTokenRecord {
  readonly id: string;
  readonly createdAt: number;
  readonly revokedAt: number | undefined;
}

export type InstanceStatusUpdate = Pick<InstanceRecord, 'state' | 'port' | 'pid' | 'restarts' | 'lastError' | 'startedAt'> & {
  readonly containerId?: string | undefined;
  readonly logTail?: string | undefined;
  readonly address?: string | undefined;
};

export interface RunPatch {
  readonly status?: RunStatus;
  readonly steps?: readonly StepRecord[];
  readonly artifact?: string;
  readonly revision?: number;
  readonly error?: string | null;
  readonly finishedAt?: number;
  readonly commit?: string;
  readonly dirty?: boolean;
  readonly startedAt?: number;
  readonly rolloutId?: number;
  readonly supersededBy?: number;
  /**
   * Compare-and-set: write only if the run's status is still this one, else refuse with `conflict`
   * (retryable) and write nothing. The run ledger (cd/run-ledger.ts) decides on the row it read and
   * writes with the status it read, so a change that landed in between is never overwritten.
   */
  readonly ifStatus?: RunStatus;
}

/** How far the event feed goes: see Store.eventBounds. */
export interface EventBounds {
  readonly lastId: number;
  readonly trimmedThrough: number;
}

export interface Store {
  // apps
  upsertApp(name: string, config: AppConfig, now: number): Promise<AppRecord>;
  getApp(name: string): Promise<AppRecord | undefined>;
  listApps(): Promise<AppRecord[]>;
  setActiveRevision(app: string, revision: number | undefined, now: number): Promise<void>;
  /** Set the replica count; `source` says who (default `scale`). */
  setReplicas(app: string, replicas: number, now: number, source?: ReplicasSource): Promise<void>;
  /**
   * The autoscaler's write: the count goes from `from` to `to` (source `autoscaler`) only if it is
   * still `from` (a deploy or a removal since the decision wins), with an `autoscale.changed` event
   * (from, to, reason) in the same write. True if it was applied.
   */
  setAutoscaledReplicas(app: string, change: { from: number; to: number; reason: string }, now: number): Promise<boolean>;
  /** Apps being removed (hidden from getApp/listApps until their last instance is gone). */
  removingApps(): Promise<string[]>;
  /** Start removing an app: its instances desired stop, rollouts ended, queued runs cancelled, secrets and webhook source dropped. False if no such app. */
  removeApp(name: string, now: number): Promise<boolean>;
  /** Delete removed apps that have no instance left (rows, revisions, rollouts); returns their names. Artifacts stay for GC. */
  purgeRemovedApps(): Promise<string[]>;
  /** Create the app if needed and set where the CD server deploys it from. */
  setAppSource(name: string, defaults: AppConfig, source: AppSource, now: number): Promise<AppRecord>;
  // revisions
  createRevision(r: Omit<RevisionRecord, 'number'>): Promise<RevisionRecord>;
  getRevision(app: string, number: number): Promise<RevisionRecord | undefined>;
  listRevisions(app: string): Promise<RevisionRecord[]>;
  // rollouts
  createRollout(r: Omit<RolloutRecord, 'id' | 'status' | 'reason' | 'finishedAt' | 'progress'>): Promise<RolloutRecord>;
  /** Record a person's command on a running rollout (event rollout.command); false if it is not running. */
  setRolloutCommand(id: number, command: RolloutCommand, now: number): Promise<boolean>;
  finishRollout(id: number, status: Exclude<RolloutStatus, 'running'>, reason: string | undefined, now: number): Promise<void>;
  getRollout(id: number): Promise<RolloutRecord | undefined>;
  activeRollout(app: string): Promise<RolloutRecord | undefined>;
  listRollouts(app: string, limit: number): Promise<RolloutRecord[]>;
  // experiments (one running per app). Starting and ending append experiment.started / .ended; a
  // rollout that starts (createRollout: a deploy, a rollback) ends the app's running experiment,
  // kept undefined, in its own transaction; so does removeApp.
  /** Start an experiment; throws `experiment_conflict` when the app already runs one. */
  startExperiment(e: Omit<ExperimentRecord, 'id' | 'status' | 'endedAt' | 'kept' | 'reason'>): Promise<ExperimentRecord>;
  activeExperiment(app: string): Promise<ExperimentRecord | undefined>;
  /** Newest first. */
  listExperiments(app: string, limit: number): Promise<ExperimentRecord[]>;
  /**
   * End a running experiment (throws `experiment_conflict` if it is not running) and, in the same
   * transaction, start `rollout` if given (keeping b: the rollout to b activates it).
   */
  endExperiment(
    id: number,
    e: {
      readonly kept: 'a' | 'b' | undefined;
      readonly reason: string | undefined;
      readonly now: number;
      readonly rollout?: { readonly fromRevision: number | undefined; readonly toRevision: number } | undefined;
    },
  ): Promise<{ experiment: ExperimentRecord; rollout: RolloutRecord | undefined }>;
  // instances
  createInstance(
    i: Omit<
      InstanceRecord,
      'state' | 'port' | 'pid' | 'restarts' | 'lastError' | 'startedAt' | 'containerId' | 'updatedAt' | 'logTail' | 'address' | 'kind'
    > & { readonly kind?: InstanceKind },
  ): Promise<void>;
  setInstanceDesired(id: string, desired: InstanceDesired, now: number): Promise<void>;
  updateInstanceStatus(id: string, s: InstanceStatusUpdate, now: number): Promise<void>;
  deleteInstance(id: string): Promise<void>;
  listInstances(filter?: { app?: string; nodeId?: string }): Promise<InstanceRecord[]>;
  // nodes
  upsertNode(n: NodeRecord): Promise<void>;
  getNodeByName(name: string): Promise<NodeRecord | undefined>;
  /** The node whose credential hashes to `hash` (sha256 hex). */
  getNodeByCredentialHash(hash: string): Promise<NodeRecord | undefined>;
  listNodes(): Promise<NodeRecord[]>;
  touchNode(id: string, now: number): Promise<void>;
  setNodeScheduling(id: string, scheduling: NodeScheduling): Promise<void>;
  // join tokens (only their sha256 is kept)
  createJoinToken(id: string, hash: string, now: number): Promise<void>;
  /** The token's record when `hash` is a live (not revoked) join token. */
  findJoinToken(hash: string): Promise<JoinTokenRecord | undefined>;
  revokeJoinToken(id: string, now: number): Promise<boolean>;
  listJoinTokens(): Promise<JoinTokenRecord[]>;
  // runs
  createRun(r: {
    app: string;
    trigger: RunRecord['trigger'];
    commit: string | undefined;
    dirty: boolean;
    steps: readonly StepRecord[];
    now: number;
  }): Promise<RunRecord>;
  updateRun(id: number, patch: RunPatch): Promise<RunRecord>;
  getRun(id: number): Promise<RunRecord | undefined>;
  /**
   * Durably queue the run of a webhook push (one transaction, synchronous=FULL: it survives a power
   * cut once this resolves). Dedupes by delivery id and by (app, commit) queued or running; gives the
   * run the app's next fence; marks older queued runs of the same app and branch superseded.
   */
  enqueueWebhookRun(p: WebhookPush): Promise<EnqueueResult>;
  /**
   * The oldest queued run of an app that has no run going, now marked running (attempt counted). A
   * run that has made its rollout (rolloutId set) and only follows it does not hold its app: a newer
   * push builds meanwhile, and its deploy supersedes that rollout (a canary may take long).
   */
  claimNextRun(excludeApps: ReadonlySet<string>, now: number, queuedBefore?: number): Promise<RunRecord | undefined>;
  /**
   * After a restart: webhook runs left `running` become `interrupted`; each is retried once as a new
   * queued run (same commit and fence, attempt + 1). CLI runs left `running` (their `pilot run` lost
   * this server mid-run) become `interrupted` without a retry. Returns the interrupted ones.
   */
  recoverInterruptedRuns(now: number): Promise<RunRecord[]>;
  /** A rollback's run ends with its rollout. */
  finishRolloutRuns(rolloutId: number, status: 'succeeded' | 'failed', error: string | undefined, now: number): Promise<void>;
  /** The revision a run of this fence already made of this commit (a retried run must not deploy it twice). */
  revisionOfFence(app: string, fence: number, commit: string): Promise<RevisionRecord | undefined>;
  /** After a restart: CLI runs left `running` become `interrupted` (final: a CLI still alive has its later reports refused, `run_finished`). */
  interruptForegroundRuns(now: number): Promise<number>;
  /** The highest fence among the app's runs that created a revision, if any. */
  latestDeployedFence(app: string): Promise<number | undefined>;
  // secrets (sealed values)
  setSecret(app: string, name: string, sealed: string, now: number, scope?: SecretScope): Promise<void>;
  deleteSecret(app: string, name: string): Promise<boolean>;
  listSecrets(app: string): Promise<SecretRecord[]>;

  // certificates (HTTPS; sealed values) and the ACME account key per directory URL (sealed)
  putCertificate(rec: CertificateRecord): Promise<void>;
  getCertificate(host: string): Promise<CertificateRecord | undefined>;
  listCertificates(): Promise<CertificateRecord[]>;
  deleteCertificate(host: string): Promise<boolean>;
  getAcmeAccountKey(directoryUrl: string): Promise<string | undefined>;
  putAcmeAccountKey(directoryUrl: string, sealedKey: string, now: number): Promise<void>;
  // notifications (control/notifications.ts): endpoints, deliveries and their attempts, the feed cursor
  addNotifyEndpoint(e: Omit<NotifyEndpointRecord, 'id'>): Promise<NotifyEndpointRecord>;
  /** The app's endpoints (all apps' without `app`), oldest first. */
  listNotifyEndpoints(app?: string): Promise<NotifyEndpointRecord[]>;
  /** Remove an endpoint; its pending deliveries end `failed`. False when the app has no such endpoint. */
  deleteNotifyEndpoint(app: string, id: number, now: number): Promise<boolean>;
  /** The last feed event turned into deliveries; undefined before the first pass. */
  notifyCursor(): Promise<number | undefined>;
  /**
   * Write deliveries (pending, due at `now`) and, in the same transaction, move the cursor to
   * `cursor` when given: each feed event becomes deliveries exactly once. A delivery of an
   * (endpoint, feed event) already written is skipped.
   */
  enqueueNotifications(d: readonly NewNotifyDelivery[], cursor: number | undefined, now: number): Promise<NotifyDeliveryRecord[]>;
  /** Pending deliveries due at `now`, soonest first. */
  dueNotifications(now: number, limit: number): Promise<NotifyDeliveryRecord[]>;
  /** When the next pending delivery is due; undefined when none is pending. */
  nextNotificationDue(): Promise<number | undefined>;
  /** Record an attempt and what follows: `pending` again at `nextAttemptAt`, or `delivered` / `failed`. */
  recordNotifyAttempt(id: number, a: NotifyAttemptRecord, next: { status: NotifyDeliveryStatus; nextAttemptAt: number }): Promise<void>;
  /** The app's deliveries, newest first, each with its attempts in order. */
  listNotifyDeliveries(app: string, limit: number): Promise<(NotifyDeliveryRecord & { readonly log: readonly NotifyAttemptRecord[] })[]>;
  // container registries (password sealed); see control/registry-routes.ts
  putRegistry(r: RegistryRecord): Promise<void>;
  deleteRegistry(url: string): Promise<boolean>;
  /** Most recently set first: the first is where images are published. */
  listRegistries(): Promise<RegistryRecord[]>;
  // deploy targets (Swarm); see control/target-routes.ts
  /** Adds a target; false when the name is taken (nothing changed). */
  addTarget(t: TargetRecord): Promise<boolean>;
  deleteTarget(name: string): Promise<boolean>;
  listTargets(): Promise<TargetRecord[]>;
  // volumes: the node that holds each app volume (the scheduler pins to it, the reconciler records it)
  listVolumePlacements(app?: string): Promise<VolumePlacement[]>;
  /** Record that `names` of `app` live on `nodeId`; a volume already placed keeps its node. */
  placeVolumes(app: string, names: readonly string[], nodeId: string, now: number): Promise<void>;
  /** Forget where the app's volumes (or one of them) are; returns how many records went. */
  forgetVolumes(app: string, name?: string): Promise<number>;
  listRuns(filter: { app?: string; limit: number }): Promise<RunRecord[]>;
  // artifacts metadata (blobs live in the artifact repository)
  /** Record a runtime once: the first record of (version, platform) stays; returns the stored one. */
  putNodeRuntime(r: NodeRuntimeRecord): Promise<NodeRuntimeRecord>;
  getNodeRuntime(version: string, platform: string): Promise<NodeRuntimeRecord | undefined>;
  listNodeRuntimes(): Promise<NodeRuntimeRecord[]>;

  putArtifactMeta(m: ArtifactMeta): void;
  getArtifactMeta(digest: string): ArtifactMeta | undefined;
  listArtifactMeta(app?: string): ArtifactMeta[];
  /** Forget a garbage-collected blob: its artifacts row and any node_runtimes record of it. */
  forgetBlob(digest: string): void;
  // events (core/events.ts). The write methods above append theirs in the same transaction as the
  // change (run state, rollout start/finish, instance placed/desired/state/removed, revision
  // recorded/activated, node registered/scheduling): callers never emit them.
  /** Append an event decided outside the store (node liveness, kept in memory); published after commit. */
  appendEvent(e: NewEvent): Promise<PilotEvent>;
  /** Events with id > after, oldest first, at most `limit`; only the app's when `app` is given; only these kinds when `kinds` is given. */
  readEvents(q: {
    after: number;
    app?: string | undefined;
    limit: number;
    kinds?: readonly EventKind[] | undefined;
  }): Promise<PilotEvent[]>;
  /** The newest `limit` events (of the app when given), oldest first. */
  latestEvents(q: { app?: string | undefined; limit: number }): Promise<PilotEvent[]>;
  /** `lastId`: the highest id ever written (0: none yet); `trimmedThrough`: retention deleted every id up to it (0: nothing deleted). */
  eventBounds(): Promise<EventBounds>;
  /** Retention: delete all but the newest `keep` events and those older than `before` (wall ms); returns how many went. */
  trimEvents(p: { keep: number; before: number }): Promise<number>;
  /**
   * Hear every committed batch of events, in id order, synchronously right after its commit (an
   * in-process bus; a networked store would feed it from its own notifications). Returns the
   * unsubscribe function. The listener must not throw or block: it is called inside the write.
   */
  subscribeEvents(listener: (events: readonly PilotEvent[]) => void): () => void;
  /** Write a consistent copy of the whole state to `file` while the store is in use. */
  backup(file: string): Promise<void>;
  /**
   * Commit a plan (core/plan.ts) in one transaction, or nothing of it: it is refused as stale when
   * the app's rows no longer have the plan's basis (`basisOf`), or a node it places on is gone or
   * no longer eligible. `instanceIds` names the placements, in order.
   */
  commitPlan(c: PlanCommit): Promise<PlanVerdict>;
  close(): void;
}

export interface PlanCommit {
  readonly plan: Plan;
  readonly instanceIds: readonly string[];
  readonly now: number;
}
export type PlanVerdict = { readonly committed: true } | { readonly committed: false; readonly reason: string };

/** The refusal of a compare-and-set run write (`RunPatch.ifStatus`) that lost a race. */
export function runChanged(id: number, expected: string, actual: string): PilotError {
  return fail.runChangedMeanwhile({ id, expected, actual });
}
