/**
 * A deploy target's bridge: an agent whose runtime is Docker Swarm. It registers the node
 * `swarm-<target>` (label pilot.target=<target>: the scheduler puts there only the apps whose
 * pilot.yaml names the target) and speaks the agent protocol like every agent, so rollouts,
 * weights, drains and routes are the control plane's, unchanged:
 *
 *   every second (or as soon as the control plane has news: long poll)
 *     look at the Swarm: nodes, this target's services, their tasks ── manager down? ─► report it,
 *     │                                                                 sync nothing (the node goes down)
 *     ▼
 *     sync: report each instance from its slot's tasks (task-status.ts) ─► desired instances, stop list
 *     │
 *     ▼
 *     apply: per revision one service (service-spec.ts): new instances take free slots (slots.ts),
 *     replicas grow; stopped instances free their slot; a service with no instance left is removed
 *     with its Swarm secrets; then PUT /api/v1/targets/<name>/status (nodes and tasks for the CLI)
 *
 * Instances the control plane does not know (its database was reset) are reported and kept as
 * orphans, as an agent does: a service is removed only when the control plane said to stop its
 * instances. The slot → instance map lives in the service's labels, so a restarted bridge finds it.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { ApiClient } from '../api/client.js';
import { AGENT_PROTOCOL } from '../api/protocol-constants.js';
import type { RegisterResponse } from '../api/protocol.js';
import type { SwarmNodeView, SwarmTaskView, TargetStatus } from '../api/wire.js';
import { fail } from '../core/errors.js';
import { TARGET_LABEL } from '../core/scheduler.js';
import { freeBlock, slotPort, type PortRange } from '../core/target.js';
import type { InstanceSpec, InstanceStatus } from '../core/types.js';
import { startBridgeApi } from './bridge-api.js';
import { assignSlots } from './slots.js';
import { buildServiceSpec, LABEL, LOADER_SOURCE, secretName, serviceName } from './service-spec.js';
import { instanceStatus, slotHistory, type TaskFacts } from './task-status.js';
import type { SwarmApi, SwarmService } from './swarm-api.js';

export interface BridgeOptions {
  readonly target: { readonly name: string; readonly docker: string; readonly ports: PortRange };
  readonly swarm: SwarmApi;
  /** The control plane and the admin token (registration, status reports). */
  readonly server: string;
  readonly adminToken: string;
  /** Where the node credential is kept across restarts (0600). */
  readonly stateFile: string;
  readonly log: Logger;
  readonly intervalMs?: number;
}

interface Look {
  readonly services: SwarmService[];
  readonly tasks: TaskFacts[];
  readonly nodes: SwarmNodeView[];
  readonly nodeAddress: Map<string, string>;
}

export class SwarmBridge {
  private credential: string | undefined;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private readonly admin: ApiClient;
  private lastError: string | undefined;
  /** When the Swarm manager last answered (monotonic): what the bridge's /v1/healthz says. */
  private lastLookOk: number | undefined;
  private health: Server | undefined;
  /** The block given last (blocks go round: a removed service's tasks may still be stopping on theirs). */
  private lastBlock: number | undefined;
  /** What the control plane presents to this bridge's API (logs); a new one at each registration. */
  private readonly agentToken = randomBytes(24).toString('hex');
  private lastLook: Look | undefined;
  /** A config could not be removed yet (in use by tasks still stopping). */
  private configsLeft = false;

  constructor(private readonly o: BridgeOptions) {
    this.admin = new ApiClient(o.server, o.adminToken);
  }

  get nodeName(): string {
    return `swarm-${this.o.target.name}`;
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    await new Promise<void>((r) => (this.health ? this.health.close(() => r()) : r()));
  }

  /** Where the control plane reaches this bridge's agent API (bridge-api.ts), started on first use. */
  private async healthUrl(): Promise<string> {
    this.health ??= await startBridgeApi({
      target: this.o.target.name,
      agentToken: this.agentToken,
      fresh: () => this.lastLookOk !== undefined && performance.now() - this.lastLookOk < 5000,
      currentTask: (id) => {
        const look = this.lastLook;
        const svc = look?.services.find((x) => [...x.slots.values()].includes(id));
        const slot = svc && [...svc.slots].find(([, v]) => v === id)?.[0];
        return svc && slot !== undefined ? slotHistory(look!.tasks, svc.id, slot)[0] : undefined;
      },
      swarm: this.o.swarm,
    });
    return `http://127.0.0.1:${(this.health.address() as AddressInfo).port}`;
  }

  private async run(): Promise<void> {
    const every = this.o.intervalMs ?? 1000;
    while (!this.stopped) {
      let wait = every;
      try {
        wait = await this.pass();
        if (this.lastError !== undefined) this.o.log.info({ target: this.o.target.name }, 'swarm target answers again');
        this.lastError = undefined;
      } catch (err) {
        const msg = (err as Error).message;
        if (msg !== this.lastError) this.o.log.warn({ target: this.o.target.name, err: msg }, 'swarm target pass failed');
        this.lastError = msg;
        await this.report({ at: Date.now(), ok: false, error: msg, nodes: [], tasks: [] }).catch(() => undefined);
      }
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  }

  /** One look, sync and apply; answers how long to wait before the next. */
  async pass(): Promise<number> {
    const look = await this.look();
    this.lastLook = look;
    if (this.credential === undefined) await this.register(look);
    const reported = this.statuses(look);
    const res = await this.sync(reported, 1000);
    await this.apply(look, res.instances, new Set(res.stop));
    const after = await this.look();
    await this.report({ at: Date.now(), ok: true, nodes: after.nodes, tasks: this.taskViews(after) });
    return 200;
  }

  private async look(): Promise<Look> {
    const s = this.o.swarm;
    const info = await s.info();
    if (info.state !== 'active' || !info.manager)
      throw fail.swarmNotInitialised({ target: this.o.target.name, docker: this.o.target.docker, state: info.state });
    const [nodes, services] = await Promise.all([s.nodes(), s.services(this.o.target.name)]);
    const tasks = services.length === 0 ? [] : await s.tasks(services.map((x) => x.id));
    this.lastLookOk = performance.now();
    return { nodes, services, tasks, nodeAddress: new Map(nodes.map((n) => [n.id, n.address])) };
  }

  private async register(look: Look): Promise<void> {
    const saved = this.readState();
    const manager = look.nodes.find((n) => n.leader) ?? look.nodes[0];
    const body = {
      protocol: AGENT_PROTOCOL,
      name: this.nodeName,
      address: manager?.address && /^[0-9.]+$/.test(manager.address) ? manager.address : '127.0.0.1',
      // Its agent API: /v1/healthz (node monitor) and instance logs (`pilot logs`).
      apiUrl: await this.healthUrl(),
      agentToken: this.agentToken,
      labels: { [TARGET_LABEL]: this.o.target.name },
      runtimes: { docker: { available: true, version: 'swarm' } },
      ...(saved ? { credential: saved } : {}),
    };
    // With the admin token: after a leader failover this replica's bridge takes the node over (new
    // credential) from the old leader's, whose copy of it stayed in that replica's home.
    const res = await new ApiClient(this.o.server, this.o.adminToken).call<RegisterResponse>('POST', '/api/v1/agent/register', body);
    this.credential = res.credential;
    mkdirSync(dirname(this.o.stateFile), { recursive: true, mode: 0o700 });
    writeFileSync(this.o.stateFile, JSON.stringify({ credential: res.credential }), { mode: 0o600 });
    this.o.log.info({ target: this.o.target.name, node: this.nodeName }, 'swarm target registered as a node');
  }

  private readState(): string | undefined {
    try {
      return (JSON.parse(readFileSync(this.o.stateFile, 'utf8')) as { credential?: string }).credential;
    } catch {
      return undefined;
    }
  }

  private async sync(instances: InstanceStatus[], waitMs: number): Promise<{ instances: InstanceSpec[]; stop: string[] }> {
    const client = new ApiClient(this.o.server, this.credential!);
    try {
      const r = await client.call<{ instances: InstanceSpec[]; stop?: string[] }>(
        'POST',
        '/api/v1/agent/sync',
        { protocol: AGENT_PROTOCOL, instances, waitMs },
        { timeoutMs: waitMs + 30_000 },
      );
      return { instances: r.instances, stop: r.stop ?? [] };
    } catch (err) {
      // The control plane forgot this node (its state was reset): register again next pass.
      if ((err as { code?: string }).code === 'unauthorized') this.credential = undefined;
      throw err;
    }
  }

  /** Every instance a slot of this target's services serves, from its slot's tasks. */
  private statuses(look: Look): InstanceStatus[] {
    const out: InstanceStatus[] = [];
    for (const svc of look.services) {
      for (const [slot, id] of svc.slots) {
        out.push(
          instanceStatus({
            instanceId: id,
            app: svc.app,
            revision: svc.revision,
            serviceId: svc.id,
            slot,
            block: svc.block,
            tasks: look.tasks,
            nodeAddress: look.nodeAddress,
          }),
        );
      }
    }
    return out;
  }

  /** Make the services what the control plane wants: one per revision, slots for its instances. */
  private async apply(look: Look, desired: readonly InstanceSpec[], stop: ReadonlySet<string>): Promise<void> {
    const target = this.o.target.name;
    const byRevision = new Map<string, InstanceSpec[]>();
    for (const d of desired) {
      if (d.kind === 'release') continue; // refused at deploy (runtime docker has no release phase)
      const key = serviceName(target, d.app, d.revision);
      byRevision.set(key, [...(byRevision.get(key) ?? []), d]);
    }
    const blocks = new Set(look.services.map((s) => s.block));
    for (const [name, specs] of byRevision) {
      const svc = look.services.find((s) => s.name === name);
      const plan = assignSlots(
        svc?.slots ?? new Map(),
        svc?.replicas ?? 0,
        specs.map((s) => s.id),
        stop,
      );
      if (!svc) {
        const block = freeBlock(this.o.target.ports, blocks, this.lastBlock ?? Math.max(...blocks, -1));
        if (block === undefined)
          throw fail.swarmPortsExhausted({ target, range: `${this.o.target.ports.from}-${this.o.target.ports.to + 99}` });
        blocks.add(block);
        this.lastBlock = block;
        await this.create(name, specs[0]!, block, plan.slots, plan.replicas);
        continue;
      }
      const same = plan.replicas === svc.replicas && sameMap(plan.slots, svc.slots);
      if (!same) await this.o.swarm.updateSlots(svc, plan.slots, plan.replicas);
    }
    let removed = false;
    // Services none of whose slots serves an instance any more (their instances stopped): removed.
    for (const svc of look.services) {
      if (byRevision.has(svc.name)) continue;
      const left = [...svc.slots.values()].filter((id) => !stop.has(id));
      if (left.length > 0) {
        if (left.length !== svc.slots.size) {
          const kept = new Map([...svc.slots].filter(([, id]) => !stop.has(id)));
          await this.o.swarm.updateSlots(svc, kept, svc.replicas);
        }
        continue; // instances the control plane does not know: orphans, kept running
      }
      await this.o.swarm.removeService(svc);
      removed = true;
      this.o.log.info({ target, service: svc.name }, 'swarm service removed (no instance of its revision left)');
    }
    // The env loader goes with the last service that used it; one still in use (tasks stopping) is tried again next pass.
    if (removed || this.configsLeft) this.configsLeft = (await this.o.swarm.removeUnusedConfigs(target)) > 0;
  }

  private async create(
    name: string,
    spec: InstanceSpec,
    block: number,
    slots: ReadonlyMap<number, string>,
    replicas: number,
  ): Promise<void> {
    const s = this.o.swarm;
    const secretKeys = (spec.secretNames ?? []).filter((k) => spec.env[k] !== undefined);
    const secrets = new Map<string, { id: string; name: string }>();
    const nonce = randomBytes(4).toString('hex');
    for (const key of secretKeys) {
      const sname = secretName(name, key, nonce);
      secrets.set(key, {
        id: await s.createSecret(sname, spec.env[key]!, { [LABEL.target]: this.o.target.name, [LABEL.service]: name }),
        name: sname,
      });
    }
    const loader =
      secrets.size > 0
        ? await s.ensureConfig(`${this.o.target.name}-pilot-env-loader`, LOADER_SOURCE, {
            [LABEL.target]: this.o.target.name,
            [LABEL.loader]: '1',
          })
        : undefined;
    await s.createService(
      buildServiceSpec({ target: this.o.target.name, spec, block, replicas, slots, secrets, loader }),
      spec.registryAuth,
    );
    this.o.log.info({ target: this.o.target.name, service: name, block, replicas }, 'swarm service created');
  }

  private taskViews(look: Look): SwarmTaskView[] {
    const host = new Map(look.nodes.map((n) => [n.id, n.hostname]));
    const out: SwarmTaskView[] = [];
    for (const svc of look.services) {
      const slotsSeen = new Set(look.tasks.filter((t) => t.serviceId === svc.id).map((t) => t.slot));
      for (const slot of slotsSeen) {
        for (const t of slotHistory(look.tasks, svc.id, slot)) {
          out.push({
            id: t.id,
            service: svc.name,
            app: svc.app,
            revision: svc.revision,
            slot,
            instance: svc.slots.get(slot),
            state: t.state,
            desiredState: t.desiredState,
            node: host.get(t.nodeId) ?? t.nodeId,
            port: slotPort(svc.block, slot),
            error: t.error,
            exitCode: t.exitCode,
            containerId: t.containerId,
            updatedAt: t.updatedAt,
          });
        }
      }
    }
    return out;
  }

  private async report(s: TargetStatus): Promise<void> {
    await this.admin.call('PUT', `/api/v1/targets/${this.o.target.name}/status`, s, { timeoutMs: 10_000 });
  }
}

function sameMap(a: ReadonlyMap<number, string>, b: ReadonlyMap<number, string>): boolean {
  return a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);
}
