/**
 * The agent: one per machine. Registers with the control plane, then loops: report every local
 * instance, receive the full list of instances this node should run, and make it so (fetch the
 * artifact, start, probe, restart with back-off, stop what is no longer wanted). Level-triggered:
 * each sync carries the whole desired state, so a lost message is repaired by the next one.
 * Instances outlive the agent; on start-up it re-adopts them before its first report.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Log as Logger } from '../core/log.js';
import { ArtifactClient } from '../artifacts/client.js';
import { step, TAIL_EVERY_MS, type InstanceEffect, type InstanceEvent } from '../core/instance-machine.js';
import { PilotError, fail } from '../core/errors.js';
import { pnpNodeOptions, resolveRunCommand } from '../core/run-command.js';
import type { InstanceSpec, InstanceStatus } from '../core/types.js';
import { startAgentApi, type AgentApi } from './agent-api.js';
import { ControlPlaneLink } from './control-link.js';
import { ServerChooser } from '../api/failover.js';
import { NodeRuntimeCache } from './node-runtimes.js';
import { loadInstance, newLocalInstance, saveInstance, statusOf, type LocalInstance } from './instance.js';
import { rotateIfNeeded } from './log-rotate.js';
import { enforceAppLogBudget } from './log-budget.js';
import { detectIsolation, type AppIdentity, type IsolationSettings } from './isolation.js';
import { AppSandbox } from './app-sandbox.js';
import { sweepEmptyCgroups } from './cgroups.js';
import { CpuUsage } from './cpu-usage.js';
import { allocatePort } from '../os/ports.js';
import { httpProbe } from './probes.js';
import { elsewhereNote, listeningPorts, portOwnedBy } from './listening-ports.js';
import { ReleaseCache } from './releases.js';
import { LocalCacheGc, localGcFromEnv, type LocalGcResult } from './cache-gc.js';
import { createNetns, deleteNetns, existingNetns, killNetnsProcesses, netnsSupport, readNetns, wrapArgv } from './netns.js';
import { outputTail } from './output-tail.js';
import { keepLogs, keepPerAppFromEnv, pruneStopped } from './stopped-logs.js';
import { ProcessRuntime } from './runtimes/process-runtime.js';
import { readPidFile } from './runtimes/pid-file.js';
import { processVolumeEnv } from './volumes.js';
import { readPackageJson, stringScripts } from '../workspace/package-json.js';
import type { InstanceHandle, Runtime } from './runtimes/runtime.js';
import type { DockerNode } from './docker-node.js';
import { engineReport, probeEngine, type EngineStatus } from '../docker/probe.js';
import type { Engine } from '../docker/engine.js';

export interface AgentOptions {
  /** The control plane's URL, or its replicas' separated by commas (api/failover.ts). */
  server: string;
  joinToken: string;
  home: string;
  name: string;
  /** The address other machines (the router) reach this node's instances on. */
  address: string;
  apiHost?: string;
  apiPort?: number;
  log: Logger;
  runtime?: Runtime;
  labels?: Record<string, string>;
  /** How long a sync may be held by the control plane when nothing changes. */
  longPollMs?: number;
  /** Node.js runtime cache (default home/runtimes); `pilot up` shares the builder's, so one machine keeps one copy. */
  runtimesDir?: string;
  /** The Docker engine for `runtime: docker` instances; default DOCKER_HOST or /var/run/docker.sock. */
  dockerEngine?: Engine;
  /** How apps are contained (default detectIsolation(): per-app uids and cgroups when root). */
  isolation?: IsolationSettings;
}

/** Marker file: this agent home has run containers (its Docker side loads at start, to adopt and sweep). */
const DOCKER_USED = 'docker-used';
const TICK_MS = 100;
const LONG_POLL_MS = 5000;
const LOG_MAX_BYTES = 10 * 1024 * 1024;
/** Kept logs of stopped instances older than this go at the cache GC (besides the newest 5 per app rule). */
const STOPPED_LOGS_MAX_AGE_MS = 24 * 3_600_000;
/** All log files of one app on this node (PILOT_LOG_APP_MAX_BYTES). */
const LOG_APP_MAX_BYTES = envInt('PILOT_LOG_APP_MAX_BYTES') ?? 100 * 1024 * 1024;
const mono = (): number => performance.now();

/** Cache keys (cache-gc.ts) of what the given instances use, each with its app. */
function cacheKeysInUse(instances: Iterable<LocalInstance>): Map<string, string> {
  const out = new Map<string, string>();
  for (const i of instances) {
    // Not `=== 'process'`: an instance saved before runtimes existed has none, and is a process.
    if (i.spec.runtime !== 'docker') out.set(`release:${i.spec.artifact.replace('sha256:', '')}`, i.spec.app);
    if (i.spec.node) out.set(`runtime:${i.spec.node.digest.replace('sha256:', '')}`, i.spec.app);
    if (i.spec.node?.npm) out.set(`runtime:${i.spec.node.npm.digest.replace('sha256:', '')}`, i.spec.app);
  }
  return out;
}

/** Where a release instance's wrapper writes its exit code: known even after an agent restart (adopted: no wait status). */
const RELEASE_EXIT_FILE = 'release-exit';
/**
 * A constant script (the command and the file are its arguments, never part of it): run the
 * command, write its exit code to the file, exit with it.
 */
const RELEASE_WRAPPER = 'f=$1; shift; "$@"; c=$?; echo "$c" > "$f"; exit "$c"';

/** The release command the control plane sent with a release instance, wrapped to record its exit code in `exitFile`. */
function releaseArgv(release: readonly string[] | undefined, exitFile: string): readonly string[] {
  if (!release || release.length === 0 || release[0] === '') throw fail.releaseInstanceWithoutRelease();
  return ['/bin/sh', '-c', RELEASE_WRAPPER, 'pilot-release', exitFile, ...release];
}

/** The exit code a release wrapper recorded, if any. */
function recordedExit(file: string): number | undefined {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

export class Agent {
  private readonly instances = new Map<string, LocalInstance>();
  /** Per starting instance refused on its port: where it listens instead, and when that was read. */
  private readonly listenNotes = new Map<string, { at: number; note: string | undefined }>();
  private readonly runtime: Runtime;
  private readonly releases: ReleaseCache;
  private readonly nodeRuntimes: NodeRuntimeCache;
  private readonly link: ControlPlaneLink;
  /** Where the control plane is: one chooser for the link and the downloads, so both stay on the address that works. */
  private readonly servers: ServerChooser;
  /** The Docker side, loaded on first need (dockerode costs ~30 MB of RSS): a docker instance, or a home that had one. */
  private docker: DockerNode | undefined;
  private dockerLoading: Promise<DockerNode> | undefined;
  private dockerStatus: EngineStatus = { available: false, error: 'not checked yet' };
  /** Whether fixed-port instances get their own network namespace here (netns.ts). */
  private netns: { available: boolean; error?: string } = { available: false, error: 'not checked yet' };
  private readonly keepStopped = keepPerAppFromEnv();
  private readonly cpu = new CpuUsage();
  private readonly cacheGc: LocalCacheGc;
  private readonly cacheGcSettings = localGcFromEnv();
  private readonly isolation: IsolationSettings;
  private readonly sandbox: AppSandbox;
  private api: AgentApi | undefined;
  private timers: NodeJS.Timeout[] = [];
  private syncing = false;
  private syncAgain = false;
  private closed = false;
  /**
   * Until every saved instance is adopted, nothing is reported: an answer received meanwhile would
   * make the instances not yet adopted look new, and start them a second time.
   */
  private adopting = true;

  constructor(private readonly opts: AgentOptions) {
    mkdirSync(join(opts.home, 'instances'), { recursive: true, mode: 0o700 });
    let isolation = opts.isolation ?? detectIsolation();
    let sandbox: AppSandbox;
    try {
      sandbox = new AppSandbox(opts.home, isolation.user);
    } catch (e) {
      // A home no app uid can reach: run apps as root rather than not at all, and say so.
      const reason = `apps run as root: ${(e as Error).message}`;
      isolation = {
        ...isolation,
        user: false,
        report: { ...isolation.report, user: false, reason: [reason, isolation.report.reason].filter(Boolean).join('; ') },
      };
      sandbox = new AppSandbox(opts.home, false);
    }
    this.isolation = isolation;
    this.sandbox = sandbox;
    this.runtime =
      opts.runtime ??
      new ProcessRuntime({
        cgroups: isolation.cgroups,
        logMaxBytes: envInt('PILOT_LOG_MAX_BYTES'),
        logKeep: envInt('PILOT_LOG_KEEP'),
        pidsMax: envInt('PILOT_APP_PIDS_MAX'),
      });
    this.servers = ServerChooser.from(opts.server, '--server', (server, why) =>
      opts.log.warn({ server, why }, 'control plane address failed; moving to the next'),
    );
    this.link = new ControlPlaneLink(this.servers, opts.joinToken, join(opts.home, 'node.json'), opts.log);
    const releasesDir = sandbox.releasesDir;
    this.releases = new ReleaseCache(releasesDir, () => new ArtifactClient(this.servers, this.link.credential()));
    // Apps under their own uid cannot reach the builder's cache (private, in $PILOT_HOME): the agent keeps its own then.
    const ownRuntimes = sandbox.users || opts.runtimesDir === undefined ? sandbox.runtimesDir : undefined;
    this.nodeRuntimes = new NodeRuntimeCache(
      ownRuntimes ?? opts.runtimesDir!,
      () => new ArtifactClient(this.servers, this.link.credential()),
    );
    this.cacheGc = new LocalCacheGc({
      stateFile: join(opts.home, 'cache-gc.json'),
      releasesDir,
      // A runtime cache shared with the builder (`pilot up`) is the builder's to keep.
      runtimesDir: ownRuntimes,
      inUse: () => cacheKeysInUse(this.instances.values()),
      busy: (kind, digest) => (kind === 'release' ? this.releases.fetching(digest) : this.nodeRuntimes.fetching(digest)),
      policy: this.cacheGcSettings.policy,
    });
  }

  /** Remove cached releases, runtimes and images no local instance needs (cache-gc.ts); runs every PILOT_CACHE_GC_INTERVAL (10 min). */
  async collectCache(now = Date.now()): Promise<LocalGcResult & { images: string[] }> {
    const r = await this.cacheGc.collect(now);
    const logs = pruneStopped(this.opts.home, this.keepStopped, now, STOPPED_LOGS_MAX_AGE_MS);
    if (logs > 0) this.opts.log.info({ removed: logs }, 'removed kept logs of stopped instances');
    // Images only where the Docker side runs: an agent that never ran a container fetched none.
    const images = !this.docker
      ? []
      : await this.docker.collectImages(
          () => new Set([...this.instances.values()].flatMap((i) => (i.spec.image ? [i.spec.image.id] : []))),
          now,
          this.cacheGcSettings.policy,
        );
    if (r.removed.length > 0 || images.length > 0)
      this.opts.log.info({ removed: r.removed, images }, 'removed unused cached releases, runtimes and images');
    return { ...r, images };
  }

  /** The Docker side, loading it first if needed; a marker in the home loads it at the next start too. */
  private dockerNode(): Promise<DockerNode> {
    this.dockerLoading ??= (async () => {
      const { DockerNode } = await import('./docker-node.js');
      const docker = new DockerNode({
        engine: this.opts.dockerEngine,
        node: this.opts.name,
        home: this.opts.home,
        artifacts: () => new ArtifactClient(this.servers, this.link.credential()),
      });
      await docker.check(); // its report takes over from the probe's: never a moment of "not checked yet"
      writeFileSync(join(this.opts.home, DOCKER_USED), '');
      this.docker = docker;
      return docker;
    })();
    return this.dockerLoading;
  }

  /**
   * The runtime an instance runs in: containers for `runtime: docker`, else processes. A docker
   * instance has a handle only after the Docker side was loaded (startContainer, adoptAll).
   */
  private rt(inst: LocalInstance): Runtime {
    if (inst.spec.runtime !== 'docker') return this.runtime;
    if (!this.docker) throw fail.dockerSideNotLoaded({ id: inst.spec.id });
    return this.docker.runtime;
  }

  get nodeId(): string | undefined {
    return this.link.nodeId;
  }

  /** What isolation this node gives process instances (reported as runtimes.process.isolation). */
  get isolationReport(): IsolationSettings['report'] {
    return this.isolation.report;
  }

  /**
   * The uid/gid an app's processes run as on this node (allocated on first use, stable across
   * restarts), or undefined when apps run as the agent's own user. Folders an app must write to
   * (volumes) are chown'ed to it.
   */
  appIdentity(app: string): AppIdentity | undefined {
    return this.sandbox.identity(app);
  }

  /** Re-adopt, start the agent API, register, and begin the loops. */
  async start(): Promise<void> {
    this.netns = this.opts.runtime ? { available: false, error: 'not the process runtime' } : await netnsSupport();
    if (this.opts.dockerEngine || existsSync(join(this.opts.home, DOCKER_USED))) await this.dockerNode();
    // Adopt first: the check sweeps containers of instances this agent does not have.
    await this.adoptAll();
    this.adopting = false;
    await this.checkDocker();
    const agentToken = randomBytes(24).toString('base64url');
    this.api = await startAgentApi({
      host: this.opts.apiHost ?? this.opts.address,
      port: this.opts.apiPort ?? 0,
      token: agentToken,
      instances: this.instances,
      runtime: this.runtime,
      home: this.opts.home,
    });
    const swept = sweepEmptyCgroups(this.isolation.cgroups, 10 * 60_000);
    if (swept > 0) this.opts.log.info({ removed: swept }, 'removed empty instance cgroups left behind');
    if (this.isolation.report.reason !== undefined)
      this.opts.log.warn({ isolation: this.isolation.report }, `app isolation incomplete: ${this.isolation.report.reason}`);
    await this.link.register({
      name: this.opts.name,
      address: this.opts.address,
      apiUrl: this.api.url,
      agentToken,
      ...(this.opts.labels ? { labels: this.opts.labels } : {}),
      runtimes: this.runtimesReport(),
    });
    await this.sync();
    const every = (ms: number, fn: () => void): void => {
      const t = setInterval(fn, ms);
      t.unref();
      this.timers.push(t);
    };
    void this.pollLoop().catch((err: unknown) => this.opts.log.error({ err }, 'sync loop ended unexpectedly'));
    every(TICK_MS, () => this.supervise());
    every(
      10_000,
      () =>
        void this.rotateLogs().catch((err: unknown) =>
          this.opts.log.warn({ err: (err as Error).message }, 'log rotation failed; will retry'),
        ),
    );
    // The engine may go away between the probe and the sweep: a failed check waits for the next one.
    every(
      10_000,
      () =>
        void this.checkDocker().catch((err: unknown) =>
          this.opts.log.warn({ err: (err as Error).message }, 'Docker engine check failed; will retry'),
        ),
    );
    if (this.cacheGcSettings.intervalMs > 0)
      every(
        this.cacheGcSettings.intervalMs,
        () => void this.collectCache().catch((err: unknown) => this.opts.log.error({ err }, 'cache GC failed')),
      );
  }

  /** Stop the loops and the API; instances keep running (they outlive the agent by design). */
  async close(): Promise<void> {
    this.closed = true;
    this.sandbox.close();
    if (!this.opts.runtime) await this.runtime.close?.(); // ours (its RSS poller); an injected one is the caller's
    for (const t of this.timers) clearInterval(t);
    await this.api?.close();
    await this.docker?.runtime.close();
  }

  /** Stop every instance and the agent (used by tests and `pilot up --stop-apps`). */
  async stopAll(): Promise<void> {
    await this.close();
    await Promise.all([...this.instances.values()].map((i) => (i.handle ? this.rt(i).stop(i.handle, 2000) : undefined)));
  }

  private async adoptAll(): Promise<void> {
    const dir = join(this.opts.home, 'instances');
    for (const id of readdirSync(dir)) {
      const stateDir = join(dir, id);
      const saved = loadInstance(stateDir);
      if (!saved) continue;
      const inst = newLocalInstance(saved.spec, stateDir, saved.restarts);
      inst.port = saved.port;
      inst.address = readNetns(stateDir)?.nsAddr;
      if (saved.finished) {
        // A release phase that already ended is never run again.
        this.apply(inst, { type: 'restored', ...saved.finished });
        this.instances.set(id, inst);
        continue;
      }
      if (inst.spec.runtime === 'docker') await this.dockerNode();
      // An engine that does not answer adopts nothing now; the start path adopts once it is back.
      inst.handle = await this.rt(inst)
        .adopt(id, stateDir)
        .catch(() => undefined);
      // kind release: ended while the agent was away when its exit code (or a stale pid file) is left behind.
      const releaseEnded =
        inst.spec.kind === 'release' &&
        !inst.handle &&
        (recordedExit(this.releaseExitFile(id, stateDir)) !== undefined || readPidFile(stateDir) !== undefined);
      await this.emit(inst, { type: 'adopted', running: inst.handle !== undefined, releaseEnded });
      if (inst.handle && inst.spec.kind !== 'release')
        this.opts.log.info(
          { instance: id, pid: inst.handle.pid, container: inst.handle.containerId, state: inst.machine.state },
          'instance re-adopted',
        );
      this.instances.set(id, inst);
    }
  }

  /**
   * The long poll: the control plane answers at once when it has something new for this node,
   * otherwise after LONG_POLL_MS. So new instances start without waiting for a timer, and an idle
   * node costs one request per LONG_POLL_MS.
   */
  private async pollLoop(): Promise<void> {
    while (!this.closed) {
      const t0 = mono();
      let ok = true;
      try {
        const desired = await this.link.sync(() => this.report(), this.opts.longPollMs ?? LONG_POLL_MS);
        if (desired && !this.closed) this.converge(desired.instances, desired.stop);
      } catch (err) {
        ok = false;
        this.opts.log.warn({ err: (err as Error).message }, 'sync with control plane failed; will retry');
      }
      // An answer that comes back at once (something changing) must not become a busy loop.
      const minGap = ok ? 100 : 1000;
      const spent = mono() - t0;
      if (spent < minGap) await new Promise((r) => setTimeout(r, minGap - spent));
    }
  }

  /** Every instance's status, with the CPU seconds of those running (for the autoscaler's targetCpu). */
  private report(): InstanceStatus[] {
    const all = [...this.instances.values()];
    let cpu: Map<number, number> = new Map();
    try {
      cpu = this.cpu.measure(all.flatMap((i) => (i.handle && i.handle.pid > 0 ? [i.handle.pid] : [])));
    } catch (err) {
      this.opts.log.debug({ err }, 'CPU use not measured');
    }
    return all.map((i) => {
      const s = statusOf(i);
      const used = i.handle ? cpu.get(i.handle.pid) : undefined;
      return used === undefined ? s : { ...s, cpuSeconds: Math.round(used * 1000) / 1000 };
    });
  }

  /** One immediate report (no waiting), after a local change. */
  private async sync(): Promise<void> {
    if (this.closed || this.adopting) return;
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    this.syncing = true;
    try {
      const desired = await this.link.sync(() => this.report());
      if (desired) this.converge(desired.instances, desired.stop);
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'sync with control plane failed; will retry');
    } finally {
      this.syncing = false;
      if (this.syncAgain) {
        this.syncAgain = false;
        setImmediate(() => this.syncSoon());
      }
    }
  }

  /**
   * Make local instances what the control plane wants. An instance it does not know is not one it
   * wants stopped: its database may be new or restored from an old backup. Such an instance keeps
   * running as an orphan, reported every sync, and stops only when its id comes back in `stop`
   * (`pilot orphans stop ID`). A control plane that sends no `stop` list gets the old rule.
   */
  private converge(desired: readonly InstanceSpec[], stop?: readonly string[]): void {
    const stopIds = stop === undefined ? undefined : new Set(stop);
    const want = new Map(desired.map((s) => [s.id, s]));
    for (const spec of desired) {
      if (this.instances.has(spec.id)) continue;
      const inst = newLocalInstance(spec, join(this.opts.home, 'instances', spec.id));
      saveInstance(inst);
      this.instances.set(spec.id, inst);
      this.opts.log.info({ instance: spec.id, app: spec.app, revision: spec.revision }, 'instance assigned');
    }
    for (const inst of this.instances.values()) {
      const id = inst.spec.id;
      // Only a log line comes out of this event: it completes at once.
      this.emit(inst, { type: 'desired', wanted: want.has(id), stopListed: stopIds === undefined || stopIds.has(id) }).catch(
        (err: unknown) => this.opts.log.error({ err, instance: id }, 'instance step failed'),
      );
    }
    this.supervise();
  }

  /**
   * One pass of the local state machines: each instance not busy gets `exited` (its process is
   * gone) or `tick`; the effects the machine returns run as one async step that marks it busy.
   */
  private supervise(): void {
    if (this.closed) return;
    for (const inst of this.instances.values()) {
      if (inst.busy) continue;
      const handle = inst.handle;
      const m = inst.machine;
      const gone = handle !== undefined && !m.removing && !m.finished && !this.rt(inst).isRunning(handle);
      const ev: InstanceEvent = gone ? { type: 'exited', exit: this.rt(inst).exitInfo(handle) } : { type: 'tick' };
      const effects = this.apply(inst, ev);
      if (effects.length > 0) this.run(inst, () => this.perform(inst, effects, gone ? handle : undefined));
    }
  }

  /** Apply one event to the instance's machine (now, synchronously); returns what to perform. */
  private apply(inst: LocalInstance, ev: InstanceEvent): readonly InstanceEffect[] {
    const { machine, effects } = step(inst.machine, ev, mono());
    inst.machine = machine;
    if (!machine.running) inst.handle = undefined;
    return effects;
  }

  /** Apply one event and perform its effects; `exited` is the handle of a process that just ended. */
  private async emit(inst: LocalInstance, ev: InstanceEvent, exited?: InstanceHandle): Promise<void> {
    await this.perform(inst, this.apply(inst, ev), exited);
  }

  /** Perform the machine's effects in order (the synchronous ones before the first await). */
  private async perform(inst: LocalInstance, effects: readonly InstanceEffect[], exited?: InstanceHandle): Promise<void> {
    for (const e of effects) {
      switch (e.type) {
        case 'start':
          await this.startInstance(inst);
          break;
        case 'probe':
          await this.probe(inst);
          break;
        case 'remove':
          await this.remove(inst, e.graceMs);
          break;
        case 'end-release':
          await this.releaseEnded(inst, e.timedOut, e.graceMs);
          break;
        case 'kill-leftovers':
          if (exited) this.killLeftovers(inst, exited);
          break;
        case 'fresh-port':
          inst.port = undefined;
          break;
        case 'capture-tail':
          await this.captureTail(inst, e.flush ? exited : undefined);
          break;
        case 'save':
          saveInstance(inst);
          break;
        case 'report':
          this.kick();
          break;
        case 'log':
          this.opts.log[e.level](
            {
              instance: inst.spec.id,
              app: inst.spec.app,
              state: inst.machine.state,
              restarts: inst.machine.restarts,
              error: inst.machine.lastError,
            },
            e.message,
          );
          break;
      }
    }
  }

  private run(inst: LocalInstance, fn: () => Promise<void>): void {
    inst.busy = true;
    fn()
      .catch((err: unknown) => this.opts.log.error({ err, instance: inst.spec.id }, 'instance step failed'))
      .finally(() => {
        inst.busy = false;
      });
  }

  /** The group leader died: whatever it left in its group (npm's child), or in its namespace, must not keep the port. */
  private killLeftovers(inst: LocalInstance, handle: InstanceHandle): void {
    void this.rt(inst)
      .stop(handle, 0)
      .catch(() => undefined);
    const ns = inst.address === undefined ? undefined : readNetns(inst.stateDir);
    if (ns) void killNetnsProcesses(ns.name).catch(() => undefined);
  }

  /** The release wrapper's exit-code file: in the instance's work folder when it runs as its own uid (it cannot write the state dir). */
  private releaseExitFile(instanceId: string, stateDir: string): string {
    return join(this.sandbox.workPath(instanceId) ?? stateDir, RELEASE_EXIT_FILE);
  }

  /** Read the instance's last lines of output into its report (once an exited one's are all written). */
  private async captureTail(inst: LocalInstance, exited?: InstanceHandle): Promise<void> {
    if (exited)
      await this.rt(inst)
        .logsFlushed?.(exited)
        .catch(() => undefined);
    const text = await outputTail(this.rt(inst).logFiles(inst.stateDir)).catch(() => undefined);
    await this.emit(inst, { type: 'tail', text });
  }

  /** kind release: the one-shot ended (or timed out: stopped first); how it ended goes to the machine. */
  private async releaseEnded(inst: LocalInstance, timedOut: boolean, graceMs: number): Promise<void> {
    const handle = inst.handle;
    if (timedOut && handle)
      await this.rt(inst)
        .stop(handle, graceMs)
        .catch(() => undefined);
    const recorded = recordedExit(this.releaseExitFile(inst.spec.id, inst.stateDir));
    const exit = (handle && this.rt(inst).exitInfo(handle)) ?? (recorded === undefined ? undefined : { code: recorded, signal: null });
    // Its last words (e.g. the shell's "not found") are read before its end is told: the report that
    // says "failed" carries them (read after, a sync in between reported the failure without them,
    // seen in CI). The capture-tail effect of the end reads them once more.
    if (handle) await this.captureTail(inst, handle);
    await this.emit(inst, { type: 'release-ended', exit, timedOut }, handle);
  }

  private async startInstance(inst: LocalInstance): Promise<void> {
    if (inst.spec.kind === 'release' && inst.spec.runtime === 'docker') {
      await this.startFailed(inst, fail.releasePhaseNeedsProcess());
      return;
    }
    if (inst.spec.runtime === 'docker') return this.startContainer(inst);
    const spec = inst.spec;
    try {
      const release = await this.releases.ensure(spec.artifact);
      // process runtime: the revision's pinned Node.js (docker instances get theirs from the image).
      const binDirs = spec.node ? await this.nodeRuntimes.binDirs(spec.node) : [];
      const nodeBin = binDirs.length > 0 ? binDirs.join(':') : undefined;
      if (inst.machine.removing) {
        this.kick();
        return;
      }
      this.sandbox.share(release);
      // The pinned runtime and its paired npm: readable and runnable by the app's user.
      for (const dir of binDirs) this.sandbox.share(dirname(dir));
      const user = this.appIdentity(spec.app);
      const isRelease = spec.kind === 'release';
      if (isRelease)
        inst.port = undefined; // it serves nothing: no PORT
      else if (inst.port === undefined) inst.port = await allocatePort();
      const procfile = await readFile(join(release, 'Procfile'), 'utf8').catch(() => undefined);
      const pkg = await readPackageJson(release).catch(() => undefined);
      let argv = isRelease
        ? releaseArgv(spec.release, this.releaseExitFile(spec.id, inst.stateDir))
        : resolveRunCommand(spec.run, procfile, pkg && stringScripts(pkg));
      if (!isRelease && spec.netns === true && spec.port !== undefined && this.netns.available) {
        // A fixed port: its own network namespace, so old and new revisions can both listen on it.
        const ns = (await existingNetns(inst.stateDir)) ?? (await createNetns(inst.stateDir));
        inst.address = ns.nsAddr;
        argv = wrapArgv(ns, argv);
      }
      this.apply(inst, { type: 'spawning' });
      const env = this.envFor(inst, nodeBin, user);
      // yarn Plug'n'Play: no node_modules; node must load the release's .pnp.cjs (as `yarn node` does).
      const pnp = pnpNodeOptions(
        release,
        { pnp: existsSync(join(release, '.pnp.cjs')), loader: existsSync(join(release, '.pnp.loader.mjs')) },
        env['NODE_OPTIONS'],
      );
      if (pnp !== undefined) env['NODE_OPTIONS'] = pnp;
      const handle = await this.runtime.start({
        instanceId: spec.id,
        stateDir: inst.stateDir,
        cwd: release,
        argv,
        env,
        user,
        limits: spec.resources,
      });
      await this.started(inst, handle, { pid: handle.pid, port: inst.port, argv });
    } catch (err) {
      await this.startFailed(inst, err);
    }
  }

  private async started(inst: LocalInstance, handle: InstanceHandle, fields: Record<string, unknown>): Promise<void> {
    inst.handle = handle;
    this.opts.log.info({ instance: inst.spec.id, ...fields }, 'instance started');
    await this.emit(inst, { type: 'started' });
  }

  private async startFailed(inst: LocalInstance, err: unknown): Promise<void> {
    const error = err instanceof PilotError ? err.message : String((err as Error).message ?? err);
    await this.emit(inst, { type: 'start-failed', error });
  }

  /** runtime docker: image first, then the container; a container that survived is adopted, never doubled. */
  private async startContainer(inst: LocalInstance): Promise<void> {
    try {
      if (inst.port === undefined) inst.port = await allocatePort();
      const docker = await this.dockerNode();
      const req = await docker.request(inst, inst.port);
      if (inst.machine.removing) {
        this.kick();
        return;
      }
      this.apply(inst, { type: 'spawning' });
      const handle = (await docker.runtime.adopt(inst.spec.id, inst.stateDir)) ?? (await docker.runtime.start(req));
      await this.started(inst, handle, { container: handle.containerId, port: inst.port, image: req.image });
    } catch (err) {
      await this.startFailed(inst, err);
    }
  }

  /** What the node reports as `runtimes`: docker's engine, how process instances are isolated, and whether fixed ports get their own namespace. */
  private runtimesReport(): {
    docker: ReturnType<Agent['dockerReport']>;
    netns: { available: boolean; error?: string };
    process: { isolation: IsolationSettings['report'] };
  } {
    return { docker: this.dockerReport(), netns: this.netns, process: { isolation: this.isolation.report } };
  }

  /** What the node reports as `runtimes.docker`. */
  private dockerReport(): { available: boolean; version?: string; error?: string } {
    return this.docker ? this.docker.report : engineReport(this.dockerStatus);
  }

  /** Check the engine (without dockerode until the Docker side is needed); report a change with the next sync. */
  private async checkDocker(): Promise<void> {
    const before = JSON.stringify(this.dockerReport());
    if (this.docker) await this.docker.check();
    else this.dockerStatus = await probeEngine(undefined, 2000);
    if (JSON.stringify(this.dockerReport()) !== before && this.link.nodeId !== undefined) {
      this.opts.log.info({ docker: this.dockerReport() }, 'Docker engine availability changed');
      this.link.setRuntimes(this.runtimesReport());
      this.kick();
    }
    if (!this.docker) return;
    const stray = await this.docker.sweep(join(this.opts.home, 'instances'), new Set(this.instances.keys()));
    if (stray > 0) this.opts.log.warn({ removed: stray }, 'removed containers of instances this agent no longer has');
  }

  /** The app's own environment: nothing of the agent's (no tokens, no PILOT_* of ours). */
  private envFor(inst: LocalInstance, pinnedNodeBin?: string, user?: AppIdentity): Record<string, string> {
    // The pinned runtime's bin first (`node`, and npm's `#!/usr/bin/env node`, run on it), then its
    // paired npm's bin when the revision has one, then the agent's own node folder (its npm otherwise).
    const nodeBin = pinnedNodeBin === undefined ? dirname(process.execPath) : `${pinnedNodeBin}:${dirname(process.execPath)}`;
    const work = this.sandbox.workDir(inst.spec.id, user) ?? inst.stateDir;
    const home = join(work, 'home');
    mkdirSync(home, { recursive: true });
    // exec refuses a NUL in the environment with an error that quotes the value: fail first, by name.
    for (const [k, v] of Object.entries(inst.spec.env)) {
      if (v.includes('\u0000')) {
        throw fail.envValueHasNul({ k, app: inst.spec.app });
      }
    }
    return {
      PATH: `${nodeBin}:/usr/local/bin:/usr/bin:/bin`,
      HOME: home,
      NODE_ENV: 'production',
      npm_config_update_notifier: 'false',
      ...(work === inst.stateDir ? {} : { TMPDIR: join(work, 'tmp') }),
      ...inst.spec.env,
      ...(inst.port === undefined ? {} : { PORT: String(inst.port) }),
      PILOT_APP: inst.spec.app,
      PILOT_REVISION: String(inst.spec.revision),
      PILOT_COMMIT: inst.spec.commit,
      PILOT_INSTANCE: inst.spec.id,
      ...processVolumeEnv(this.opts.home, inst.spec.app, inst.spec.volumes, user),
    };
  }

  /** Probe it and tell the machine the answer (the machine decides ready, unhealthy, the tail and the next probe). */
  private async probe(inst: LocalInstance): Promise<void> {
    const h = inst.spec.health;
    let r = await httpProbe({ host: inst.address ?? '127.0.0.1', port: inst.port!, path: h.path, timeoutMs: h.timeoutMs });
    const handle = inst.handle;
    if (!handle || inst.machine.removing) return;
    const wasReady = inst.machine.state === 'ready';
    // Before the first ready: the answer must come from this instance, not from another app that
    // was handed the same port (agents on one machine allocate ports independently).
    if (
      r.ok &&
      !wasReady &&
      handle.containerId === undefined &&
      inst.address === undefined &&
      inst.spec.port === undefined &&
      inst.port !== undefined &&
      (await portOwnedBy(handle.pid, inst.port)) === false
    ) {
      r = {
        ...r,
        ok: false,
        error: `port ${inst.port} is held by another process, not this instance (it will get a new port if it fails to bind)`,
      };
    }
    let note: string | undefined;
    // Refused while starting: say so when the app listens on another port than the one it was
    // given. /proc is read at most every TAIL_EVERY_MS per instance; the note is kept in between.
    if (
      !r.ok &&
      r.code === 'ECONNREFUSED' &&
      !wasReady &&
      handle.containerId === undefined &&
      inst.port !== undefined &&
      inst.address === undefined
    ) {
      const t = mono();
      let seen = this.listenNotes.get(inst.spec.id);
      if (!seen || t - seen.at > TAIL_EVERY_MS) {
        seen = { at: t, note: elsewhereNote(await listeningPorts(handle.pid), inst.port) };
        this.listenNotes.set(inst.spec.id, seen);
      }
      note = seen.note;
    } else this.listenNotes.delete(inst.spec.id);
    await this.emit(inst, { type: 'probed', ok: r.ok, refused: r.code === 'ECONNREFUSED', error: r.error ?? `status ${r.status}`, note });
  }

  /** Stop it (if it runs), keep its logs, forget it. */
  private async remove(inst: LocalInstance, graceMs: number): Promise<void> {
    this.listenNotes.delete(inst.spec.id);
    if (inst.handle) {
      await this.rt(inst).stop(inst.handle, graceMs);
      this.opts.log.info({ instance: inst.spec.id }, 'instance stopped');
    }
    this.apply(inst, { type: 'stopped' });
    if (inst.address !== undefined || readNetns(inst.stateDir)) await deleteNetns(inst.stateDir);
    this.instances.delete(inst.spec.id);
    // Its output stays readable (`pilot logs APP --previous`) until the cache GC; the newest few per app.
    try {
      keepLogs(this.opts.home, inst.stateDir, {
        id: inst.spec.id,
        app: inst.spec.app,
        revision: inst.spec.revision,
        kind: inst.spec.kind ?? 'web',
        stoppedAt: Date.now(),
        lastError: inst.machine.lastError,
      });
      pruneStopped(this.opts.home, this.keepStopped, Date.now());
    } catch (err) {
      this.opts.log.warn({ err, instance: inst.spec.id }, 'could not keep the logs of a stopped instance');
    }
    rmSync(inst.stateDir, { recursive: true, force: true });
    this.sandbox.removeWork(inst.spec.id);
    this.kick();
  }

  /** Report a change soon rather than at the next interval. */
  private kick(): void {
    setImmediate(() => this.syncSoon());
  }

  /** sync() catches its own failures; anything that still escapes (a bug) is logged, never an unhandled rejection. */
  private syncSoon(): void {
    this.sync().catch((err: unknown) => this.opts.log.error({ err }, 'sync failed unexpectedly'));
  }

  /**
   * Container logs (docker-logs.ts appends to files): copy-truncate every 10 s. Process instances
   * bound theirs at every write (log-writer.ts); here each app is also held to its node-wide budget.
   */
  private async rotateLogs(): Promise<void> {
    const byApp = new Map<string, string[]>();
    for (const inst of this.instances.values()) {
      const dirs = byApp.get(inst.spec.app);
      if (dirs) dirs.push(inst.stateDir);
      else byApp.set(inst.spec.app, [inst.stateDir]);
      if (inst.spec.runtime !== 'docker' || !this.docker) continue;
      const files = this.docker.runtime.logFiles(inst.stateDir);
      await rotateIfNeeded(files.stdout, LOG_MAX_BYTES, 3).catch(() => false);
      await rotateIfNeeded(files.stderr, LOG_MAX_BYTES, 3).catch(() => false);
    }
    for (const [app, dirs] of byApp) {
      const removed = enforceAppLogBudget(dirs, LOG_APP_MAX_BYTES);
      if (removed.length > 0) this.opts.log.info({ app, removed: removed.length }, "removed old log files over the app's log budget");
    }
  }
}

/** A non-negative integer from the environment, or undefined (the default applies). */
function envInt(name: string): number | undefined {
  const v = process.env[name];
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}
