/** Types of the REST API's answers that both the server and its clients (CLI, pipeline) use. */

/** A registry as the API shows it; `password` only when asked for credentials. */
export interface RegistryView {
  readonly url: string;
  readonly address: string;
  readonly username: string | null;
  readonly hasPassword: boolean;
  readonly password?: string;
  readonly publish: boolean;
  readonly updatedAt: number;
}

/** A node as `GET /api/v1/nodes` shows it. */
export interface NodeView {
  readonly name: string;
  readonly address: string;
  /** The agent's own API (absent from an older server). */
  readonly apiUrl?: string;
  readonly status: string;
  readonly scheduling: string;
  /** key=value labels the agent was started with (`pilot agent --label zone=a`); absent from an older server. */
  readonly labels?: Readonly<Record<string, string>>;
  readonly instances: number;
  readonly orphans?: number;
  readonly cpus: number | null;
  readonly memoryMb: number | null;
  readonly lastSeenAt: number;
  /**
   * The node's router (`pilot agent --router-port`) as it said at its last sync within the last
   * minute; null: none, or silent. `current`: it applied the control plane's current table.
   */
  readonly router?: {
    readonly port: number | null;
    readonly httpsPort: number | null;
    readonly tableVersion: string;
    readonly current: boolean;
    readonly lastSyncAt: number;
  } | null;
  readonly runtimes?: {
    readonly docker?: { readonly available: boolean; readonly version?: string; readonly error?: string };
    readonly process?: {
      readonly isolation?: { readonly user: boolean; readonly cgroup: boolean; readonly cgroupVersion?: string; readonly reason?: string };
    };
  };
}

/** An instance an agent runs that the control plane has no record of (`GET /api/v1/orphans`). */
export interface OrphanView {
  readonly id: string;
  readonly node: string;
  readonly app?: string;
  readonly revision?: number;
  readonly state: string;
  readonly port?: number;
  readonly pid?: number;
  readonly since: number;
  readonly stopping: boolean;
}

/** A join token as `GET /api/v1/tokens/join` lists it (never the token itself). */
export interface JoinTokenView {
  readonly id: string;
  readonly createdAt: number;
  readonly revokedAt?: number;
}

/**
 * What a deploy or a rollback would do (`?dryRun=true`): the revision it would make (or roll back
 * to), the replica count and who owns it, where new instances would go, what would stop.
 */
export interface DeployPlanView {
  readonly dryRun: true;
  readonly app: string;
  readonly revision: number;
  readonly replicas: {
    readonly replicas: number;
    readonly source: 'config' | 'scale' | 'autoscaler';
    readonly changed: boolean;
    readonly why: string;
  };
  readonly placements: readonly { readonly node: string; readonly nodeId: string }[];
  readonly unplaced: { readonly count: number; readonly reason: string } | null;
  readonly stops: readonly { readonly id: string; readonly revision: number; readonly node: string }[];
  /** The old instances stop before the new ones start (a fixed port shared on a node). */
  readonly recreate: boolean;
  readonly notes: readonly string[];
}

/** `GET /api/v1/cluster`: the control-plane replicas, the leader and its fencing token, the backends' health. */
export interface ClusterView {
  /** single: one process on SQLite (always the leader); replicated: replicas on PostgreSQL electing a leader. */
  readonly mode: 'single' | 'replicated';
  readonly self: {
    readonly id: string;
    readonly url: string;
    readonly version: string;
    readonly leading: boolean;
    readonly token: number | null;
  };
  /** The lease row (null: no replica has led yet, or the database did not answer). */
  readonly leader: {
    readonly id: string;
    readonly url: string;
    readonly token: number | null;
    readonly acquiredAt: number | null;
    readonly expiresAt: number | null;
    readonly expired: boolean;
  } | null;
  readonly replicas: readonly {
    readonly id: string;
    readonly url: string;
    readonly version: string;
    readonly startedAt: number | null;
    readonly lastSeenAt: number;
    readonly silentMs: number;
    readonly leader: boolean;
    readonly self: boolean;
  }[];
  readonly store: BackendHealth & { readonly kind: 'sqlite' | 'postgres' };
  readonly blobs: BackendHealth & { readonly kind: 'filesystem' | 'oci'; readonly freeBytes?: number };
  /** Times this replica started or stopped leading; its writes refused for a stale token. */
  readonly leaderChanges: number;
  readonly fencedWrites: number;
}

/** A backend as one replica sees it: where, whether a probe answered, how fast. */
export interface BackendHealth {
  readonly location: string;
  readonly healthy: boolean;
  readonly latencyMs: number;
  readonly error?: string;
}

/** A Swarm node as the target's bridge last saw it (`pilot nodes`, `pilot targets list`). */
export interface SwarmNodeView {
  readonly id: string;
  readonly hostname: string;
  readonly address: string;
  readonly role: 'manager' | 'worker';
  /** Swarm's node state: ready, down, unknown, disconnected. */
  readonly state: string;
  /** active, pause, drain. */
  readonly availability: string;
  readonly leader: boolean;
}

/** A Swarm task of a Pilot service: one slot's current task or one it replaced. */
export interface SwarmTaskView {
  readonly id: string;
  readonly service: string;
  readonly app: string;
  readonly revision: number;
  readonly slot: number;
  /** The Pilot instance the slot serves (absent: a slot no instance uses any more). */
  readonly instance?: string | undefined;
  /** Swarm's task state (new … running, complete, failed, shutdown, rejected, orphaned) and the desired one. */
  readonly state: string;
  readonly desiredState: string;
  readonly node: string;
  readonly port: number;
  readonly error?: string | undefined;
  readonly exitCode?: number | undefined;
  readonly containerId?: string | undefined;
  readonly updatedAt: number;
}

/** What a target's bridge reports about its Swarm, each time it looks (PUT /api/v1/targets/:name/status). */
export interface TargetStatus {
  readonly at: number;
  /** The manager answered and is a Swarm manager. */
  readonly ok: boolean;
  readonly error?: string | undefined;
  readonly nodes: readonly SwarmNodeView[];
  readonly tasks: readonly SwarmTaskView[];
}

/** A deploy target as `GET /api/v1/targets` shows it. */
export interface TargetView {
  readonly name: string;
  readonly kind: 'swarm';
  readonly docker: string;
  readonly ports: { readonly from: number; readonly to: number };
  readonly createdAt: number;
  /** The Pilot node its bridge registered (`swarm-<name>`), and its health. */
  readonly node: { readonly name: string; readonly status: string } | null;
  /** Apps whose active revision or running rollout runs there. */
  readonly apps: readonly string[];
  /** The bridge's last report; null before the first. */
  readonly status: TargetStatus | null;
}
