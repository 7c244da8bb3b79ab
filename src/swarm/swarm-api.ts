/**
 * The Swarm manager's Engine API as the bridge uses it (dockerode over the target's socket or TCP
 * address; never the docker CLI). Every call's failure is `swarmCall` naming what was asked.
 */
import Docker from 'dockerode';
import type { SwarmNodeView } from '../api/wire.js';
import { fail } from '../core/errors.js';
import { parseDockerUrl } from '../core/target.js';
import type { InstanceSpec } from '../core/types.js';
import { LABEL } from './service-spec.js';
import type { TaskFacts } from './task-status.js';

/** A Pilot service of the target, as read from its spec. */
export interface SwarmService {
  readonly id: string;
  readonly name: string;
  readonly version: number;
  readonly app: string;
  readonly revision: number;
  readonly block: number;
  readonly replicas: number;
  readonly slots: ReadonlyMap<number, string>;
  /** The whole spec, for updates (Swarm replaces the spec as a whole). */
  readonly spec: Record<string, unknown>;
}

/** Registry credentials for an image (core/types.ts InstanceSpec.registryAuth). */
export type RegistryAuth = NonNullable<InstanceSpec['registryAuth']>;

export interface SwarmApi {
  info(): Promise<{ state: string; manager: boolean }>;
  nodes(): Promise<SwarmNodeView[]>;
  services(target: string): Promise<SwarmService[]>;
  tasks(serviceIds: readonly string[]): Promise<TaskFacts[]>;
  /**
   * `auth`: the registry credentials of the service's image (X-Registry-Auth, as `docker service
   * create --with-registry-auth`): Swarm keeps them with the service, so every node can pull it,
   * also for a task re-created later on a node that lacks the image.
   */
  createService(spec: Record<string, unknown>, auth?: RegistryAuth): Promise<string>;
  updateSlots(svc: SwarmService, slots: ReadonlyMap<number, string>, replicas: number): Promise<void>;
  /** Removes the service, then the Swarm secrets made for it. */
  removeService(svc: SwarmService): Promise<void>;
  createSecret(name: string, value: string, labels: Record<string, string>): Promise<string>;
  /** The config of that name (created when missing): its id and name. */
  ensureConfig(name: string, data: string, labels: Record<string, string>): Promise<{ id: string; name: string }>;
  /** A task's output (multiplexed frames, log-frames.ts): the last `tail` lines, then, with `follow`, what comes. */
  taskLogs(taskId: string, opts: { tail: number; follow: boolean; signal: AbortSignal }): Promise<NodeJS.ReadableStream | Buffer>;
  /** Removes the target's configs that no service uses any more (the env loader); answers how many are left. */
  removeUnusedConfigs(target: string): Promise<number>;
}

async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const e = err as { json?: { message?: string }; message?: string };
    throw fail.swarmCall({ what, error: e.json?.message ?? e.message ?? String(err) });
  }
}

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function serviceOf(s: Any): SwarmService | undefined {
  const labels = (s.Spec?.Labels ?? {}) as Record<string, string>;
  const revision = Number(labels[LABEL.revision]);
  const block = Number(labels[LABEL.block]);
  if (!labels[LABEL.app] || !Number.isInteger(revision) || !Number.isInteger(block)) return undefined;
  const slots = new Map<number, string>();
  for (const [k, v] of Object.entries(labels)) {
    if (k.startsWith(LABEL.slotPrefix)) slots.set(Number(k.slice(LABEL.slotPrefix.length)), v);
  }
  return {
    id: s.ID as string,
    name: s.Spec.Name as string,
    version: s.Version?.Index as number,
    app: labels[LABEL.app],
    revision,
    block,
    replicas: Number(s.Spec?.Mode?.Replicated?.Replicas ?? 0),
    slots,
    spec: s.Spec as Record<string, unknown>,
  };
}

/** The Engine API of the manager at `docker` (unix:///… or tcp://…). */
export function swarmApi(docker: string): SwarmApi {
  const ep = parseDockerUrl(docker);
  const d = 'socketPath' in ep ? new Docker({ socketPath: ep.socketPath }) : new Docker({ protocol: 'http', host: ep.host, port: ep.port });
  return {
    info: () =>
      call('GET /info', async () => {
        const i = (await d.info()) as Any;
        return { state: String(i.Swarm?.LocalNodeState ?? ''), manager: i.Swarm?.ControlAvailable === true };
      }),
    nodes: () =>
      call('GET /nodes', async () =>
        ((await d.listNodes()) as Any[]).map((n) => ({
          id: n.ID as string,
          hostname: String(n.Description?.Hostname ?? n.ID),
          address: String(n.ManagerStatus?.Addr ?? n.Status?.Addr ?? '').replace(/:\d+$/, '') || String(n.Status?.Addr ?? ''),
          role: n.Spec?.Role === 'manager' ? ('manager' as const) : ('worker' as const),
          state: String(n.Status?.State ?? 'unknown'),
          availability: String(n.Spec?.Availability ?? 'active'),
          leader: n.ManagerStatus?.Leader === true,
        })),
      ),
    services: (target) =>
      call('GET /services', async () =>
        ((await d.listServices({ filters: { label: [`${LABEL.target}=${target}`] } })) as Any[])
          .map(serviceOf)
          .filter((s): s is SwarmService => s !== undefined),
      ),
    tasks: (ids) =>
      call('GET /tasks', async () =>
        ((await d.listTasks({ filters: { service: [...ids] } })) as Any[]).map((t) => ({
          id: t.ID as string,
          serviceId: t.ServiceID as string,
          slot: Number(t.Slot ?? 0),
          nodeId: String(t.NodeID ?? ''),
          state: String(t.Status?.State ?? 'new'),
          desiredState: String(t.DesiredState ?? ''),
          error: t.Status?.Err ? String(t.Status.Err) : undefined,
          exitCode: typeof t.Status?.ContainerStatus?.ExitCode === 'number' ? (t.Status.ContainerStatus.ExitCode as number) : undefined,
          containerId: t.Status?.ContainerStatus?.ContainerID ? String(t.Status.ContainerStatus.ContainerID) : undefined,
          version: Number(t.Version?.Index ?? 0),
          updatedAt: Date.parse(String(t.UpdatedAt ?? t.CreatedAt ?? '')) || 0,
          createdAt: Date.parse(String(t.CreatedAt ?? '')) || 0,
        })),
      ),
    createService: (spec, auth) =>
      // dockerode takes (auth, spec); given the spec alone it would send the spec as the auth header.
      call(`create service ${String(spec.Name)}`, async () => {
        const create = d.createService as unknown as (auth: unknown, spec: unknown) => Promise<Any>;
        return (await create.call(d, auth, spec)).id as string;
      }),
    updateSlots: (svc, slots, replicas) =>
      call(`update service ${svc.name}`, async () => {
        const labels: Record<string, string> = {};
        for (const [k, v] of Object.entries((svc.spec.Labels ?? {}) as Record<string, string>))
          if (!k.startsWith(LABEL.slotPrefix)) labels[k] = v;
        for (const [slot, id] of slots) labels[`${LABEL.slotPrefix}${slot}`] = id;
        // Labels and replicas only: the task template is unchanged, so no task restarts.
        await d
          .getService(svc.id)
          .update({ ...svc.spec, Labels: labels, Mode: { Replicated: { Replicas: replicas } }, version: svc.version });
      }),
    removeService: (svc) =>
      call(`remove service ${svc.name}`, async () => {
        await d.getService(svc.id).remove();
        const secrets = (await d.listSecrets({ filters: { label: [`${LABEL.service}=${svc.name}`] } })) as Any[];
        // A secret is in use until the service's tasks are gone: retried for a while, then left to the next removal pass.
        for (const s of secrets) {
          for (let i = 0; i < 40; i++) {
            try {
              await d.getSecret(s.ID as string).remove();
              break;
            } catch {
              await new Promise((r) => setTimeout(r, 250));
            }
          }
        }
      }),
    createSecret: (name, value, labels) =>
      call(`create secret ${name}`, async () => {
        const r = (await d.createSecret({ Name: name, Labels: labels, Data: Buffer.from(value).toString('base64') })) as Any;
        return (r.id ?? r.ID) as string;
      }),
    ensureConfig: (name, data, labels) =>
      call(`create config ${name}`, async () => {
        const found = ((await d.listConfigs({ filters: { name: [name] } })) as Any[]).find((c) => c.Spec?.Name === name);
        if (found) return { id: found.ID as string, name };
        const r = (await d.createConfig({ Name: name, Labels: labels, Data: Buffer.from(data).toString('base64') })) as Any;
        return { id: (r.id ?? r.ID) as string, name };
      }),
    taskLogs: (taskId, o) =>
      call(`GET /tasks/${taskId}/logs`, async () => {
        const task = d.getTask(taskId) as unknown as { logs(opts: object): Promise<NodeJS.ReadableStream | Buffer> };
        return task.logs({ stdout: true, stderr: true, tail: o.tail, follow: o.follow, abortSignal: o.signal });
      }),
    removeUnusedConfigs: (target) =>
      call('remove configs', async () => {
        let left = 0;
        for (const c of (await d.listConfigs({ filters: { label: [`${LABEL.target}=${target}`] } })) as Any[]) {
          // In use by a service (or a task still shutting down): the engine refuses; kept for a later pass.
          await d
            .getConfig(c.ID as string)
            .remove()
            .catch(() => left++);
        }
        return left;
      }),
  };
}
