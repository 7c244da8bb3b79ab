/**
 * Rows to records: the same mapping for the SQLite and the PostgreSQL store (their tables have the
 * same columns; PostgreSQL's BIGINT arrives as a number through the store's type parser).
 */
import type { Verdict } from '../core/analysis.js';
import type { RolloutCommand } from '../core/rollout-types.js';
import type { Strategy } from '../core/strategy.js';
import type { AppConfig } from '../core/app-config.js';
import type { ArtifactMeta, ImageRef, InstanceKind, NodeRuntimeRef, RunRecord, StepRecord } from '../core/types.js';
import type { ReplicasSource } from '../core/replicas.js';
import type { EventKind, PilotEvent } from '../core/events.js';
import { type StickyBy } from '../core/experiment.js';
import type {
  ExperimentRecord,
  TargetRecord,
  CertificateRecord,
  AppRecord,
  InstanceDesired,
  InstanceRecord,
  NodeRecord,
  NodeRuntimeRecord,
  NodeRuntimes,
  RevisionRecord,
  RolloutRecord,
} from './store.js';

export type Row = Record<string, unknown>;

export const opt = <T>(v: unknown): T | undefined => (v === null || v === undefined ? undefined : (v as T));
export function certificateFrom(r: Row): CertificateRecord {
  return {
    host: r.host as string,
    source: r.source === 'user' ? 'user' : 'acme',
    certSealed: opt<string>(r.cert_sealed),
    keySealed: opt<string>(r.key_sealed),
    issuer: opt<string>(r.issuer),
    notAfter: opt<number>(r.not_after),
    state: r.state === 'valid' ? 'valid' : r.state === 'failed' ? 'failed' : 'pending',
    lastError: opt<string>(r.last_error),
    attempts: r.attempts as number,
    nextAttemptAt: opt<number>(r.next_attempt_at),
    updatedAt: r.updated_at as number,
  };
}
/** A stored config; fields added since it was written get their defaults (volumes: none). */
export function parseConfig(text: string): AppConfig {
  const c = JSON.parse(text) as AppConfig;
  return c.volumes === undefined ? { ...c, volumes: [] } : c;
}
export function appFrom(r: Row): AppRecord {
  return {
    name: r.name as string,
    config: parseConfig(r.config as string),
    replicas: r.replicas as number,
    replicasSource: opt<ReplicasSource>(r.replicas_source) ?? 'config',
    activeRevision: opt<number>(r.active_revision),
    createdAt: r.created_at as number,
    updatedAt: r.updated_at as number,
    repo: opt<string>(r.repo),
    branch: opt<string>(r.branch),
    webhookSecret: opt<string>(r.webhook_secret),
    githubToken: opt<string>(r.github_token),
    statusApiUrl: opt<string>(r.status_api_url),
  };
}
export function revisionFrom(r: Row): RevisionRecord {
  return {
    app: r.app as string,
    number: r.number as number,
    artifact: r.artifact as string,
    commit: r.commit_sha as string,
    dirty: r.dirty === 1,
    config: parseConfig(r.config as string),
    runId: opt<number>(r.run_id),
    createdAt: r.created_at as number,
    image: r.image == null ? undefined : (JSON.parse(r.image as string) as ImageRef),
    nodeRuntime: r.node_runtime == null ? undefined : (JSON.parse(r.node_runtime as string) as NodeRuntimeRef),
  };
}
export function experimentFrom(r: Row): ExperimentRecord {
  const name = r.by_name as string;
  const by: StickyBy = r.by_kind === 'header' ? { header: name } : { cookie: name };
  return {
    id: r.id as number,
    app: r.app as string,
    control: r.control_revision as number,
    variant: r.variant_revision as number,
    split: r.split as number,
    by,
    status: r.status as ExperimentRecord['status'],
    startedAt: r.started_at as number,
    endedAt: opt<number>(r.ended_at),
    kept: opt<'a' | 'b'>(r.kept),
    reason: opt<string>(r.reason),
  };
}
export function rolloutFrom(r: Row): RolloutRecord {
  return {
    id: r.id as number,
    app: r.app as string,
    fromRevision: opt<number>(r.from_revision),
    toRevision: r.to_revision as number,
    status: r.status as RolloutRecord['status'],
    reason: opt<string>(r.reason),
    startedAt: r.started_at as number,
    finishedAt: opt<number>(r.finished_at),
    strategy: r.strategy == null ? undefined : (JSON.parse(r.strategy as string) as Strategy),
    progress: {
      step: (r.step as number | undefined) ?? 0,
      weight: (r.weight as number | undefined) ?? 0,
      since: opt<number>(r.step_since),
      command: opt<RolloutCommand>(r.command),
      verdict: r.verdict == null ? undefined : (JSON.parse(r.verdict as string) as Verdict),
    },
  };
}
export function instanceFrom(r: Row): InstanceRecord {
  return {
    id: r.id as string,
    app: r.app as string,
    revision: r.revision as number,
    nodeId: r.node_id as string,
    desired: r.desired as InstanceDesired,
    state: r.state as InstanceRecord['state'],
    port: opt<number>(r.port),
    pid: opt<number>(r.pid),
    restarts: r.restarts as number,
    lastError: opt<string>(r.last_error),
    startedAt: opt<number>(r.started_at),
    containerId: opt<string>(r.container_id),
    logTail: opt<string>(r.log_tail),
    address: opt<string>(r.address),
    kind: (r.kind as InstanceKind | null) ?? 'web',
    createdAt: r.created_at as number,
    updatedAt: r.updated_at as number,
  };
}
export function nodeFrom(r: Row): NodeRecord {
  return {
    id: r.id as string,
    name: r.name as string,
    address: r.address as string,
    apiUrl: r.api_url as string,
    credentialHash: r.credential_hash as string,
    agentToken: r.agent_token as string,
    registeredAt: r.registered_at as number,
    lastSeenAt: r.last_seen_at as number,
    scheduling: ((r.scheduling as string | null) ?? 'eligible') as NodeRecord['scheduling'],
    cpus: opt<number>(r.cpus),
    memoryMb: opt<number>(r.memory_mb),
    labels: JSON.parse((r.labels as string | null) ?? '{}') as Record<string, string>,
    runtimes: JSON.parse((r.runtimes as string | null) ?? '{}') as NodeRuntimes,
  };
}
export function runFrom(r: Row): RunRecord {
  return {
    id: r.id as number,
    app: r.app as string,
    trigger: r.trigger as RunRecord['trigger'],
    commit: opt<string>(r.commit_sha),
    dirty: r.dirty === 1,
    status: r.status as RunRecord['status'],
    steps: JSON.parse(r.steps as string) as StepRecord[],
    artifact: opt<string>(r.artifact),
    revision: opt<number>(r.revision),
    error: opt<string>(r.error),
    createdAt: r.created_at as number,
    finishedAt: opt<number>(r.finished_at),
    startedAt: opt<number>(r.started_at),
    deliveryId: opt<string>(r.delivery_id),
    branch: opt<string>(r.branch),
    message: opt<string>(r.message),
    author: opt<string>(r.author),
    fence: opt<number>(r.fence),
    attempt: (r.attempt as number | null) ?? 1,
    retryOf: opt<number>(r.retry_of),
    supersededBy: opt<number>(r.superseded_by),
    rolloutId: opt<number>(r.rollout_id),
    repoFullName: opt<string>(r.repo_full_name),
  };
}
export function artifactFrom(r: Row): ArtifactMeta {
  return {
    digest: r.digest as string,
    size: r.size as number,
    app: opt<string>(r.app),
    commit: opt<string>(r.commit_sha),
    createdAt: r.created_at as number,
  };
}
export function eventFrom(r: Row): PilotEvent {
  return {
    id: r.id as number,
    time: r.time as number,
    app: opt<string>(r.app),
    kind: r.kind as EventKind,
    payload: JSON.parse(r.payload as string) as Record<string, unknown>,
  };
}
export function nodeRuntimeFrom(r: Row): NodeRuntimeRecord {
  return {
    version: r.version as string,
    platform: r.platform as string,
    digest: r.digest as string,
    integrity: opt<string>(r.integrity),
    size: r.size as number,
    origin: r.origin as string,
    createdAt: r.created_at as number,
  };
}
export function targetFrom(r: Row): TargetRecord {
  return {
    name: r.name as string,
    kind: 'swarm',
    docker: r.docker as string,
    ports: { from: Number(r.ports_from), to: Number(r.ports_to) },
    createdAt: Number(r.created_at),
  };
}
