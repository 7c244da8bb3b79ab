/**
 * The persistence port. Everything the control plane must remember across a restart goes through
 * this interface; SQLite implements it now (sqlite-store.ts), PostgreSQL later. Methods are async
 * so that a networked database fits the same shape. Times are wall-clock milliseconds, for display
 * and history only: timeouts and failure detection use the monotonic clock in memory.
 */
import type { AppConfig } from '../core/app-config.js';
import type { ArtifactMeta, InstanceState, RolloutStatus, RunRecord, RunStatus, StepRecord } from '../core/types.js';

export interface AppRecord {
  readonly name: string;
  readonly config: AppConfig;
  readonly replicas: number;
  readonly activeRevision: number | undefined;
  readonly createdAt: number;
  readonly updatedAt: number;
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
}

export type InstanceStatusUpdate = Pick<InstanceRecord, 'state' | 'port' | 'pid' | 'restarts' | 'lastError' | 'startedAt'>;

export interface RunPatch {
  readonly status?: RunStatus;
  readonly steps?: readonly StepRecord[];
  readonly artifact?: string;
  readonly revision?: number;
  readonly error?: string | null;
  readonly finishedAt?: number;
  readonly commit?: string;
  readonly dirty?: boolean;
}

export interface Store {
  // apps
  upsertApp(name: string, config: AppConfig, now: number): Promise<AppRecord>;
  getApp(name: string): Promise<AppRecord | undefined>;
  listApps(): Promise<AppRecord[]>;
  setActiveRevision(app: string, revision: number | undefined, now: number): Promise<void>;
  setReplicas(app: string, replicas: number, now: number): Promise<void>;
  // revisions
  createRevision(r: Omit<RevisionRecord, 'number'>): Promise<RevisionRecord>;
  getRevision(app: string, number: number): Promise<RevisionRecord | undefined>;
  listRevisions(app: string): Promise<RevisionRecord[]>;
  // rollouts
  createRollout(r: Omit<RolloutRecord, 'id' | 'status' | 'reason' | 'finishedAt'>): Promise<RolloutRecord>;
  finishRollout(id: number, status: Exclude<RolloutStatus, 'running'>, reason: string | undefined, now: number): Promise<void>;
  getRollout(id: number): Promise<RolloutRecord | undefined>;
  activeRollout(app: string): Promise<RolloutRecord | undefined>;
  listRollouts(app: string, limit: number): Promise<RolloutRecord[]>;
  // instances
  createInstance(i: Omit<InstanceRecord, 'state' | 'port' | 'pid' | 'restarts' | 'lastError' | 'startedAt' | 'updatedAt'>): Promise<void>;
  setInstanceDesired(id: string, desired: InstanceDesired, now: number): Promise<void>;
  updateInstanceStatus(id: string, s: InstanceStatusUpdate, now: number): Promise<void>;
  deleteInstance(id: string): Promise<void>;
  listInstances(filter?: { app?: string; nodeId?: string }): Promise<InstanceRecord[]>;
  // nodes
  upsertNode(n: NodeRecord): Promise<void>;
  getNodeByName(name: string): Promise<NodeRecord | undefined>;
  getNode(id: string): Promise<NodeRecord | undefined>;
  listNodes(): Promise<NodeRecord[]>;
  touchNode(id: string, now: number): Promise<void>;
  // runs
  createRun(r: { app: string; trigger: RunRecord['trigger']; commit: string | undefined; dirty: boolean; steps: readonly StepRecord[]; now: number }): Promise<RunRecord>;
  updateRun(id: number, patch: RunPatch): Promise<RunRecord>;
  getRun(id: number): Promise<RunRecord | undefined>;
  listRuns(filter: { app?: string; limit: number }): Promise<RunRecord[]>;
  // artifacts metadata (blobs live in the artifact repository)
  putArtifactMeta(m: ArtifactMeta): void;
  getArtifactMeta(digest: string): ArtifactMeta | undefined;
  listArtifactMeta(app?: string): ArtifactMeta[];
  close(): void;
}
