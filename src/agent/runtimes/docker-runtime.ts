/**
 * The docker runtime: each instance is a container, created and watched through the Engine API.
 * Host networking (the app listens on $PORT of this machine, as a process would), an init process
 * (tini, `--init`) so that SIGTERM reaches the app instead of a PID 1 that ignores it, memory and
 * CPU limits, labels saying whose it is, and a name fixed per instance so that the engine itself
 * refuses a second container for one instance. State comes from the engine's event stream (die,
 * oom) plus inspect, never from polling each container. See ../README.md "Runtime docker".
 */
import { mkdir } from 'node:fs/promises';
import { constants } from 'node:os';
import { join, posix } from 'node:path';
import type Docker from 'dockerode';
import { PilotError, fail } from '../../core/errors.js';
import type { Engine } from '../../docker/engine.js';
import { ContainerLogs, timestampNanos } from './docker-logs.js';
import { EngineEvents, type ContainerEvent } from './docker-events.js';
import type { ExitInfo, InstanceHandle, LogFiles, Runtime, StartRequest } from './runtime.js';

/** Labels on every container Pilot starts. */
export const LABELS = {
  app: 'dev.pilot.app',
  revision: 'dev.pilot.revision',
  instance: 'dev.pilot.instance',
  node: 'dev.pilot.node',
  /** The agent's folder for the instance: two agents on one engine never adopt each other's. */
  stateDir: 'dev.pilot.state-dir',
} as const;

const KILL_WAIT_MS = 10_000;
/** How long stop waits for the log stream to deliver the last lines before removing the container. */
const LOG_DRAIN_MS = 2_000;
/** Safety net besides the event stream: one list call for all containers of this node. */
const RESYNC_MS = 10_000;
/** Bound on remembered containers: a crash-looping instance adds one per restart. */
const MAX_TRACKED = 10_000;

interface Tracked {
  readonly id: string;
  readonly stateDir: string;
  running: boolean;
  exit: ExitInfo | undefined;
  logs: ContainerLogs | undefined;
}

export interface DockerRuntimeOptions {
  readonly engine: Engine;
  /** This node's name: label of its containers and part of their names. */
  readonly node: string;
}

type Inspect = Docker.ContainerInspectInfo;

const statusOf = (e: unknown): number | undefined => (e as { statusCode?: number }).statusCode;
const engineMessage = (e: unknown): string => {
  const json = (e as { json?: { message?: string } }).json;
  return (json?.message ?? (e as Error).message ?? String(e)).trim();
};

const SIGNALS = new Map(Object.entries(constants.signals).map(([name, n]) => [n, name]));

/** Exit code and signal as a process would report them: the engine says 128+N for signal N. */
export function exitOf(info: Inspect): ExitInfo {
  const code = info.State.ExitCode;
  const sig = code > 128 && code < 160 ? SIGNALS.get(code - 128) : undefined;
  const base: ExitInfo = sig ? { code: null, signal: sig } : { code, signal: null };
  if (!info.State.OOMKilled) return base;
  const mb = Math.round((info.HostConfig.Memory ?? 0) / 1024 / 1024);
  return { ...base, oomKilled: true, reason: `killed: out of memory${mb > 0 ? ` (limit ${mb} MB)` : ''}` };
}

/** Engine-side container name for an instance: fixed, so a second create for it is refused. */
export function containerName(node: string, instanceId: string): string {
  return `pilot-${node}-${instanceId}`.replace(/[^a-zA-Z0-9_.-]/g, '_');
}

function handleOf(instanceId: string, info: Inspect): InstanceHandle {
  const ns = timestampNanos(info.State.StartedAt) ?? 0n;
  return { instanceId, pid: info.State.Pid, startTime: String(ns), startedAt: Number(ns / 1_000_000n), containerId: info.Id };
}

export class DockerRuntime implements Runtime {
  private readonly engine: Engine;
  private readonly node: string;
  private readonly tracked = new Map<string, Tracked>();
  private readonly events: EngineEvents;
  private resyncTimer: NodeJS.Timeout | undefined;

  constructor(opts: DockerRuntimeOptions) {
    this.engine = opts.engine;
    this.node = opts.node;
    this.events = new EngineEvents(
      this.engine,
      { type: ['container'], event: ['die', 'oom', 'destroy'], label: [`${LABELS.node}=${this.node}`] },
      (e) => this.onEvent(e),
      () => void this.resync(),
    );
  }

  /** Create and start the instance's container; the image must be on the engine already. */
  async start(req: StartRequest): Promise<InstanceHandle> {
    if (req.image === undefined) throw fail.instanceWithoutImage({ instanceId: req.instanceId });
    await this.watch();
    const name = containerName(this.node, req.instanceId);
    const existing = await this.inspect(name);
    if (existing?.State.Running) {
      throw fail.instanceAlreadyRunsContainer({ instanceId: req.instanceId, Id: existing.Id.slice(0, 12), name });
    }
    if (existing) await this.removeContainer(existing.Id); // a crashed one left behind: its output is in the log files
    await mkdir(req.stateDir, { recursive: true });
    const memory = req.limits?.memoryMb ? Math.round(req.limits.memoryMb * 1024 * 1024) : undefined;
    await this.ensureVolumes(req);
    let container: Docker.Container;
    try {
      container = await this.engine.createContainer({
        name,
        Image: req.image,
        ...(req.argv.length > 0 ? { Cmd: [...req.argv] } : {}),
        Env: Object.entries(req.env).map(([k, v]) => `${k}=${v}`),
        Labels: { ...req.labels, [LABELS.instance]: req.instanceId, [LABELS.node]: this.node, [LABELS.stateDir]: req.stateDir },
        Tty: false,
        OpenStdin: false,
        AttachStdin: false,
        AttachStdout: false,
        AttachStderr: false,
        HostConfig: {
          NetworkMode: 'host',
          Init: true,
          RestartPolicy: { Name: 'no' }, // the agent restarts, with its back-off, and counts
          ...(memory ? { Memory: memory, MemorySwap: memory } : {}),
          ...(req.limits?.cpu ? { NanoCpus: Math.round(req.limits.cpu * 1e9) } : {}),
          LogConfig: { Type: 'json-file', Config: { 'max-size': '10m', 'max-file': '3' } },
          ...(req.volumes?.length
            ? { Mounts: req.volumes.map((v) => ({ Type: 'volume' as const, Source: v.source, Target: v.target })) }
            : {}),
        },
      });
    } catch (e) {
      if (statusOf(e) === 409) throw fail.containerNamedAlreadyExists({ name, reason: engineMessage(e) }, { cause: e });
      if (statusOf(e) === 404) throw fail.imageNotOnEngine({ image: req.image, instanceId: req.instanceId }, { cause: e });
      throw fail.cannotCreateContainerInstance({ instanceId: req.instanceId, reason: engineMessage(e) }, { cause: e });
    }
    const t: Tracked = { id: container.id, stateDir: req.stateDir, running: true, exit: undefined, logs: undefined };
    try {
      await this.checkCommand(container, req);
      this.tracked.set(container.id, t);
      await container.start();
    } catch (e) {
      this.tracked.delete(container.id);
      await container.remove({ force: true }).catch(() => undefined);
      if (e instanceof PilotError) throw e;
      throw fail.cannotStartContainerInstance({ instanceId: req.instanceId, reason: engineMessage(e) }, { cause: e });
    }
    const info = await container.inspect();
    if (!info.State.Running && t.exit === undefined) {
      t.exit = exitOf(info);
      t.running = false;
    }
    this.follow(t);
    return handleOf(req.instanceId, info);
  }

  /** The running container labelled with this node, instance and stateDir, if there is one. */
  async adopt(instanceId: string, stateDir: string): Promise<InstanceHandle | undefined> {
    await this.watch();
    let list: Docker.ContainerInfo[];
    try {
      list = await this.engine.listContainers({
        all: true,
        filters: { label: [`${LABELS.node}=${this.node}`, `${LABELS.instance}=${instanceId}`] },
      });
    } catch (e) {
      throw fail.cannotListContainers({ reason: engineMessage(e) }, { cause: e });
    }
    const found = list.find((c) => c.Labels[LABELS.stateDir] === stateDir);
    if (!found) return undefined;
    const info = await this.inspect(found.Id);
    if (!info?.State.Running) return undefined;
    let t = this.tracked.get(info.Id);
    if (!t) {
      t = { id: info.Id, stateDir, running: true, exit: undefined, logs: undefined };
      this.tracked.set(info.Id, t);
      this.follow(t);
    }
    return handleOf(instanceId, info);
  }

  /** From the state the event stream keeps current. */
  isRunning(h: InstanceHandle): boolean {
    return h.containerId !== undefined && this.tracked.get(h.containerId)?.running === true;
  }

  /** How the container ended (the engine keeps it, so also for adopted ones). */
  exitInfo(h: InstanceHandle): ExitInfo | undefined {
    const t = h.containerId === undefined ? undefined : this.tracked.get(h.containerId);
    return t && !t.running ? t.exit : undefined;
  }

  /** SIGTERM, up to graceMs, SIGKILL; then wait for the last log lines and remove the container. Idempotent. */
  async stop(h: InstanceHandle, graceMs: number): Promise<void> {
    const id = h.containerId;
    if (id === undefined) return;
    const t = this.tracked.get(id);
    const c = this.engine.getContainer(id);
    let info = await this.inspect(id);
    if (info?.State.Running) {
      await c.kill({ signal: 'SIGTERM' }).catch(() => undefined);
      if (!(await this.waitStopped(c, graceMs))) {
        await c.kill({ signal: 'SIGKILL' }).catch(() => undefined);
        if (!(await this.waitStopped(c, KILL_WAIT_MS))) {
          throw fail.containerDidNotStop({ id: id.slice(0, 12), instanceId: h.instanceId });
        }
      }
      info = await this.inspect(id);
    }
    if (t) {
      if (t.running || t.exit === undefined) t.exit = info ? exitOf(info) : t.exit;
      t.running = false;
      if (t.logs) await Promise.race([t.logs.done, new Promise((r) => setTimeout(r, LOG_DRAIN_MS).unref())]);
      t.logs?.close();
    }
    if (info) await this.removeContainer(id);
  }

  /** Same layout as the process runtime: the agent's logs API reads them. */
  logFiles(stateDir: string): LogFiles {
    return { stdout: join(stateDir, 'stdout.log'), stderr: join(stateDir, 'stderr.log') };
  }

  /** Detach from the engine; containers keep running and can be adopted again. */
  async close(): Promise<void> {
    this.events.close();
    clearInterval(this.resyncTimer);
    this.resyncTimer = undefined;
    for (const t of this.tracked.values()) t.logs?.close();
    await Promise.resolve();
  }

  /** Open the event stream before the first container is touched, so no death goes unseen. */
  private async watch(): Promise<void> {
    if (this.resyncTimer === undefined) {
      this.resyncTimer = setInterval(() => void this.resync(), RESYNC_MS);
      this.resyncTimer.unref();
    }
    await this.events.ready(2_000);
  }

  private onEvent(e: ContainerEvent): void {
    const t = this.tracked.get(e.id);
    if (!t || !t.running) return;
    if (e.action === 'die' || e.action === 'destroy') void this.refresh(t, e.attributes.exitCode);
  }

  /** Re-read a container; state and exit change together, so exitInfo is known once isRunning is false. */
  private async refresh(t: Tracked, exitCode?: string): Promise<void> {
    const info = await this.inspect(t.id).catch(() => undefined);
    if (!t.running) return;
    if (info?.State.Running) return;
    t.exit = info ? exitOf(info) : { code: exitCode === undefined ? null : Number(exitCode), signal: null };
    t.running = false;
  }

  /** After a reconnect and every RESYNC_MS: one list call, then inspect only what changed. */
  private async resync(): Promise<void> {
    const running = [...this.tracked.values()].filter((t) => t.running);
    if (running.length === 0) return;
    try {
      const list = await this.engine.listContainers({ all: true, filters: { label: [`${LABELS.node}=${this.node}`] } });
      const live = new Set(list.filter((c) => c.State === 'running').map((c) => c.Id));
      await Promise.all(running.filter((t) => !live.has(t.id)).map((t) => this.refresh(t)));
      // A log stream cut while its container runs on (the engine restarted): attach again; the
      // saved position keeps lines from repeating.
      for (const t of running) if (t.running && live.has(t.id) && t.logs?.ended) this.follow(t);
    } catch {
      // the engine is away; the next resync or the reopened event stream catches up
    }
  }

  private follow(t: Tracked): void {
    const logs = new ContainerLogs(this.engine, t.id, this.logFiles(t.stateDir), join(t.stateDir, 'logs.pos.json'));
    t.logs = logs;
    void logs.start();
  }

  /**
   * The command must exist in the image: with an init process the engine would start the
   * container anyway and the init would exit 127, which reads as a crash instead of a bad command.
   */
  /**
   * Create the request's named volumes that do not exist yet, labelled with the node and app (a
   * create of an existing name returns it unchanged: idempotent). A new volume mounted on a folder
   * of the image takes that folder's owner and contents (Docker's copy-up): the generated
   * Dockerfile creates the volume paths owned by the app's user.
   */
  private async ensureVolumes(req: StartRequest): Promise<void> {
    for (const v of req.volumes ?? []) {
      try {
        await this.engine.createVolume({
          Name: v.source,
          Labels: { [LABELS.node]: this.node, ...(req.labels?.[LABELS.app] ? { [LABELS.app]: req.labels[LABELS.app] } : {}) },
        });
      } catch (e) {
        throw fail.cannotCreateVolume({ source: v.source, instanceId: req.instanceId, reason: engineMessage(e) }, { cause: e });
      }
    }
  }

  private async checkCommand(c: Docker.Container, req: StartRequest): Promise<void> {
    const cfg = (await c.inspect()).Config;
    const cmd0 = (cfg.Entrypoint && cfg.Entrypoint.length > 0 ? cfg.Entrypoint : (cfg.Cmd ?? []))[0];
    if (cmd0 === undefined || cmd0 === '') throw fail.imageWithoutCommand({ instanceId: req.instanceId });
    const pathVar =
      (cfg.Env ?? []).find((e) => e.startsWith('PATH='))?.slice(5) ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
    const candidates = cmd0.includes('/')
      ? [posix.resolve(cfg.WorkingDir || '/', cmd0)]
      : pathVar
          .split(':')
          .filter(Boolean)
          .map((d) => posix.join(d, cmd0));
    for (const p of candidates) {
      try {
        // A HEAD answered as a stream: drain it, or its socket stays open.
        const res = (await c.infoArchive({ path: p })) as NodeJS.ReadableStream;
        res.resume();
        return;
      } catch (e) {
        if (statusOf(e) !== 404) throw fail.cannotLookUpCommand({ cmd0, reason: engineMessage(e) }, { cause: e });
      }
    }
    throw fail.commandNotFoundInImage({ cmd0, image: req.image?.slice(0, 19), instanceId: req.instanceId, pathVar });
  }

  private async waitStopped(c: Docker.Container, ms: number): Promise<boolean> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), Math.max(1, ms));
    try {
      await c.wait({ condition: 'not-running', abortSignal: abort.signal });
      return true;
    } catch (e) {
      if (statusOf(e) === 404) return true;
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  private async inspect(idOrName: string): Promise<Inspect | undefined> {
    try {
      return await this.engine.getContainer(idOrName).inspect();
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw fail.cannotInspectContainer({ idOrName, reason: engineMessage(e) }, { cause: e });
    }
  }

  private async removeContainer(id: string): Promise<void> {
    try {
      await this.engine.getContainer(id).remove({ force: true });
    } catch (e) {
      // 404: gone already; 409: a removal is already in progress
      if (statusOf(e) !== 404 && statusOf(e) !== 409)
        throw fail.cannotRemoveContainer({ id: id.slice(0, 12), reason: engineMessage(e) }, { cause: e });
    }
    // The entry stays (not running, with its exit) so exitInfo still answers; bounded like the process runtime's.
    this.tracked.get(id)?.logs?.close();
    if (this.tracked.size > MAX_TRACKED) {
      const oldest = [...this.tracked.values()].find((t) => !t.running);
      if (oldest) this.tracked.delete(oldest.id);
    }
  }
}
