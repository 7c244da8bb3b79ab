/** The shapes of the API answers the dashboard reads (see GET /api/v1/openapi.json and the README's API table). */

export interface AppSummary {
  name: string;
  activeRevision: number | null;
  replicas: number;
  ready: number;
  instances: number;
  url: string | null;
  autoscale: { min: number; max: number } | null;
  updatedAt: number;
}

export interface TrafficRow {
  revision: number | null;
  active: boolean;
  requests: number;
  rps: number;
  errorRate: number;
  status: Record<string, number>;
  latencyMs: { mean: number | null; p50: number | null; p90: number | null; p99: number | null };
}

export interface AppTraffic {
  app: string;
  activeRevision: number | null;
  windowSeconds: number;
  revisions: TrafficRow[];
}

export interface Revision {
  number: number;
  artifact: string;
  commit: string;
  dirty: boolean;
  runId: number | null;
  createdAt: number;
  active: boolean;
  runtime: string;
  image: string | null;
  node: { version: string; source: string } | null;
}

export interface RolloutRecord {
  id: number;
  toRevision: number;
  status: string;
  reason?: string | null;
  startedAt: number;
  finishedAt: number | null;
  strategy?: { type: string };
}

export interface RolloutView {
  id: number;
  toRevision: number;
  strategy: string;
  description: string;
  step?: number;
  steps?: number;
  weights: { stable: number; canary: number };
  pauseLeftMs?: number;
  waiting: string;
  verdict?: { verdict: string; reason: string };
  command?: string;
}

export interface Instance {
  id: string;
  revision: number;
  node: string;
  nodeId: string;
  state: string;
  reported?: string;
  port: number | null;
  address: string | null;
  restarts: number;
  startedAt: number | null;
  kind?: string;
}

export interface AppDetail {
  app: {
    name: string;
    activeRevision: number | null;
    replicas: number;
    replicasSetBy: string;
    autoscale: unknown;
    hosts: string[];
  };
  revisions: Revision[];
  rollouts: RolloutRecord[];
  rollout: RolloutView | null;
  instances: Instance[];
  routing: { problems: string[] };
}

export interface Step {
  name: string;
  status: string;
  startedAt?: number;
  finishedAt?: number;
}

export interface Run {
  id: number;
  app: string;
  trigger: string;
  commit?: string;
  dirty: boolean;
  status: string;
  steps: Step[];
  artifact?: string;
  revision?: number;
  error?: string;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  deliveryId?: string;
  branch?: string;
  message?: string;
  author?: string;
  attempt: number;
  retryOf?: number;
  supersededBy?: number;
  rolloutId?: number;
  repoFullName?: string;
  rollout?: { id: number; status: string; reason: string | null };
}

export interface NodeInfo {
  id: string;
  name: string;
  address: string;
  status: string;
  scheduling: string;
  instances: number;
  orphans?: number;
  cpus: number | null;
  memoryMb: number | null;
  lastSeenAt: number;
  registeredAt?: number;
  labels?: Record<string, string>;
  runtimes?: {
    docker?: { available: boolean; version?: string; error?: string };
    process?: { isolation?: { user: boolean; cgroup: boolean; cgroupVersion?: string; reason?: string } };
  };
}
