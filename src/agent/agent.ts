/**
 * The agent: one per machine. Registers with the control plane, then loops: report every local
 * instance, receive the full list of instances this node should run, and make it so (fetch the
 * artifact, start, probe, restart with back-off, stop what is no longer wanted). Level-triggered:
 * each sync carries the whole desired state, so a lost message is repaired by the next one.
 * Instances outlive the agent; on start-up it re-adopts them before its first report.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { ArtifactClient } from '../artifacts/client.js';
import { restartDelayMs } from '../core/backoff.js';
import { PilotError } from '../core/errors.js';
import { pnpNodeOptions, resolveRunCommand } from '../core/run-command.js';
import type { InstanceSpec } from '../core/types.js';
import { startAgentApi, type AgentApi } from './agent-api.js';
import { ControlPlaneLink } from './control-link.js';
import { NodeRuntimeCache } from './node-runtimes.js';
import { loadInstance, newLocalInstance, saveInstance, statusOf, type LocalInstance } from './instance.js';
import { rotateIfNeeded } from './log-rotate.js';
import { allocatePort } from './ports.js';
import { httpProbe } from './probes.js';
import { ReleaseCache } from './releases.js';
import { LocalCacheGc, localGcFromEnv, type LocalGcResult } from './cache-gc.js';
import { ProcessRuntime } from './runtimes/process-runtime.js';
import { readPackageJson, stringScripts } from '../pipeline/workspace-facts.js';
import type { Runtime } from './runtimes/runtime.js';
import type { DockerNode } from './docker-node.js';
import { engineReport, probeEngine, type EngineStatus } from '../docker/probe.js';
import type { Engine } from '../docker/engine.js';

export interface AgentOptions {
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
}

/** Marker file: this agent home has run containers (its Docker side loads at start, to adopt and sweep). */
const DOCKER_USED = 'docker-used';
const TICK_MS = 100;
const LONG_POLL_MS = 5000;
const STABLE_MS = 30_000;
const UNHEALTHY_AFTER = 3;
const LOG_MAX_BYTES = 10 * 1024 * 1024;
const mono = (): number => performance.now();

/** Cache keys (cache-gc.ts) of what the given instances use, each with its app. */
function cacheKeysInUse(instances: Iterable<LocalInstance>): Map<string, string> {
  const out = new Map<string, string>();
  for (const i of instances) {
    // Not `=== 'process'`: an instance saved before runtimes existed has none, and is a process.
    if (i.spec.runtime !== 'docker') out.set(`release:${i.spec.artifact.replace('sha256:', '')}`, i.spec.app);
    if (i.spec.node) out.set(`runtime:${i.spec.node.digest.replace('sha256:', '')}`, i.spec.app);
  }
  return out;
}

export class Agent {
  private readonly instances = new Map<string, LocalInstance>();
  private readonly runtime: Runtime;
  private readonly releases: ReleaseCache;
  private readonly nodeRuntimes: NodeRuntimeCache;
  private readonly link: ControlPlaneLink;
  /** The Docker side, loaded on first need (dockerode costs ~30 MB of RSS): a docker instance, or a home that had one. */
  private docker: DockerNode | undefined;
  private dockerLoading: Promise<DockerNode> | undefined;
  private dockerStatus: EngineStatus = { available: false, error: 'not checked yet' };
  private readonly cacheGc: LocalCacheGc;
  private readonly cacheGcSettings = localGcFromEnv();
  private api: AgentApi | undefined;
  private timers: NodeJS.Timeout[] = [];
  private syncing = false;
  private syncAgain = false;
  private closed = false;

  constructor(private readonly opts: AgentOptions) {
    this.runtime = opts.runtime ?? new ProcessRuntime();
    mkdirSync(join(opts.home, 'instances'), { recursive: true });
    this.link = new ControlPlaneLink(opts.server, opts.joinToken, join(opts.home, 'node.json'), opts.log);
    this.releases = new ReleaseCache(join(opts.home, 'releases'), () => new ArtifactClient(opts.server, this.link.credential()));
    this.nodeRuntimes = new NodeRuntimeCache(opts.runtimesDir ?? join(opts.home, 'runtimes'), () => new ArtifactClient(opts.server, this.link.credential()));
    this.cacheGc = new LocalCacheGc({
      stateFile: join(opts.home, 'cache-gc.json'),
      releasesDir: join(opts.home, 'releases'),
      // A runtime cache shared with the builder (`pilot up`) is the builder's to keep.
      runtimesDir: opts.runtimesDir === undefined ? join(opts.home, 'runtimes') : undefined,
      inUse: () => cacheKeysInUse(this.instances.values()),
      busy: (kind, digest) => (kind === 'release' ? this.releases.fetching(digest) : this.nodeRuntimes.fetching(digest)),
      policy: this.cacheGcSettings.policy,
    });
  }

  /** Remove cached releases, runtimes and images no local instance needs (cache-gc.ts); runs every PILOT_CACHE_GC_INTERVAL (10 min). */
  async collectCache(now = Date.now()): Promise<LocalGcResult & { images: string[] }> {
    const r = await this.cacheGc.collect(now);
    // Images only where the Docker side runs: an agent that never ran a container fetched none.
    const images = !this.docker ? [] : await this.docker.collectImages(() => new Set([...this.instances.values()].flatMap((i) => (i.spec.image ? [i.spec.image.id] : []))), now, this.cacheGcSettings.policy);
    if (r.removed.length > 0 || images.length > 0) this.opts.log.info({ removed: r.removed, images }, 'removed unused cached releases, runtimes and images');
    return { ...r, images };
  }

  /** The Docker side, loading it first if needed; a marker in the home loads it at the next start too. */
  private dockerNode(): Promise<DockerNode> {
    this.dockerLoading ??= (async () => {
      const { DockerNode } = await import('./docker-node.js');
      const docker = new DockerNode({ engine: this.opts.dockerEngine, node: this.opts.name, home: this.opts.home, artifacts: () => new ArtifactClient(this.opts.server, this.link.credential()) });
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
    if (!this.docker) throw new PilotError('internal', `instance ${inst.spec.id} runs in docker but the Docker side is not loaded`);
    return this.docker.runtime;
  }

  get nodeId(): string | undefined {
    return this.link.nodeId;
  }

  /** Re-adopt, start the agent API, register, and begin the loops. */
  async start(): Promise<void> {
    if (this.opts.dockerEngine || existsSync(join(this.opts.home, DOCKER_USED))) await this.dockerNode();
    // Adopt first: the check sweeps containers of instances this agent does not have.
    await this.adoptAll();
    await this.checkDocker();
    const agentToken = randomBytes(24).toString('base64url');
    this.api = await startAgentApi({ host: this.opts.apiHost ?? this.opts.address, port: this.opts.apiPort ?? 0, token: agentToken, instances: this.instances, runtime: this.runtime });
    await this.link.register({ name: this.opts.name, address: this.opts.address, apiUrl: this.api.url, agentToken, ...(this.opts.labels ? { labels: this.opts.labels } : {}), runtimes: { docker: this.dockerReport() } });
    await this.sync();
    const every = (ms: number, fn: () => void): void => {
      const t = setInterval(fn, ms);
      t.unref();
      this.timers.push(t);
    };
    void this.pollLoop();
    every(TICK_MS, () => this.supervise());
    every(10_000, () => void this.rotateLogs());
    // The engine may go away between the probe and the sweep: a failed check waits for the next one.
    every(10_000, () => void this.checkDocker().catch((err: unknown) => this.opts.log.warn({ err: (err as Error).message }, 'Docker engine check failed; will retry')));
    if (this.cacheGcSettings.intervalMs > 0) every(this.cacheGcSettings.intervalMs, () => void this.collectCache().catch((err: unknown) => this.opts.log.error({ err }, 'cache GC failed')));
  }

  /** Stop the loops and the API; instances keep running (they outlive the agent by design). */
  async close(): Promise<void> {
    this.closed = true;
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
      const inst = newLocalInstance(saved.spec, stateDir);
      inst.port = saved.port;
      inst.restarts = saved.restarts;
      if (inst.spec.runtime === 'docker') await this.dockerNode();
      // An engine that does not answer adopts nothing now; the start path adopts once it is back.
      inst.handle = await this.rt(inst).adopt(id, stateDir).catch(() => undefined);
      if (inst.handle) {
        inst.state = 'starting';
        // Probe now so that the first report already says "ready": the router keeps routing to it.
        await this.probe(inst);
        this.opts.log.info({ instance: id, pid: inst.handle.pid, container: inst.handle.containerId, state: inst.state }, 'instance re-adopted');
      } else {
        inst.state = 'backoff';
      }
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
        const desired = await this.link.sync([...this.instances.values()].map(statusOf), this.opts.longPollMs ?? LONG_POLL_MS);
        if (desired && !this.closed) this.converge(desired);
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

  /** One immediate report (no waiting), after a local change. */
  private async sync(): Promise<void> {
    if (this.closed) return;
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    this.syncing = true;
    try {
      const desired = await this.link.sync([...this.instances.values()].map(statusOf));
      if (desired) this.converge(desired);
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'sync with control plane failed; will retry');
    } finally {
      this.syncing = false;
      if (this.syncAgain) {
        this.syncAgain = false;
        setImmediate(() => void this.sync());
      }
    }
  }

  private converge(desired: readonly InstanceSpec[]): void {
    const want = new Map(desired.map((s) => [s.id, s]));
    for (const spec of desired) {
      if (this.instances.has(spec.id)) continue;
      const inst = newLocalInstance(spec, join(this.opts.home, 'instances', spec.id));
      saveInstance(inst);
      this.instances.set(spec.id, inst);
      this.opts.log.info({ instance: spec.id, app: spec.app, revision: spec.revision }, 'instance assigned');
    }
    for (const inst of this.instances.values()) {
      if (!want.has(inst.spec.id) && !inst.removing) inst.removing = true;
    }
    this.supervise();
  }

  /** One pass of the local state machine; every async step marks the instance busy. */
  private supervise(): void {
    if (this.closed) return;
    const now = mono();
    for (const inst of this.instances.values()) {
      if (inst.busy) continue;
      if (inst.removing) {
        this.run(inst, () => this.remove(inst));
      } else if (inst.handle && !this.rt(inst).isRunning(inst.handle)) {
        this.crashed(inst, now);
      } else if (!inst.handle && (inst.state === 'pending' || inst.state === 'backoff' || inst.state === 'failed') && now >= inst.nextStartAt) {
        this.run(inst, () => this.startInstance(inst));
      } else if (inst.handle && now >= inst.nextProbeAt) {
        this.run(inst, () => this.probe(inst));
      }
    }
  }

  private run(inst: LocalInstance, fn: () => Promise<void>): void {
    inst.busy = true;
    fn().catch((err: unknown) => this.opts.log.error({ err, instance: inst.spec.id }, 'instance step failed')).finally(() => {
      inst.busy = false;
    });
  }

  private crashed(inst: LocalInstance, now: number): void {
    const handle = inst.handle!;
    const exit = this.rt(inst).exitInfo(handle);
    // The group leader died; anything it left in its group (npm's child) must not keep the port.
    void this.rt(inst).stop(handle, 0).catch(() => undefined);
    inst.lastError = exit?.reason ?? (exit ? `exited with ${exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`}` : 'process exited');
    if (inst.readySince !== undefined && now - inst.readySince > STABLE_MS) inst.consecutiveCrashes = 0;
    inst.consecutiveCrashes++;
    inst.restarts++;
    inst.handle = undefined;
    inst.readySince = undefined;
    inst.state = 'backoff';
    inst.nextStartAt = now + restartDelayMs(inst.consecutiveCrashes);
    saveInstance(inst);
    this.opts.log.warn({ instance: inst.spec.id, restarts: inst.restarts, error: inst.lastError }, 'instance crashed; restarting after back-off');
    this.kick();
  }

  private async startInstance(inst: LocalInstance): Promise<void> {
    if (inst.spec.runtime === 'docker') return this.startContainer(inst);
    const spec = inst.spec;
    try {
      const release = await this.releases.ensure(spec.artifact);
      // process runtime: the revision's pinned Node.js (docker instances get theirs from the image).
      const nodeBin = spec.node ? await this.nodeRuntimes.binDir(spec.node) : undefined;
      if (inst.removing) return;
      if (inst.port === undefined) inst.port = await allocatePort();
      const procfile = await readFile(join(release, 'Procfile'), 'utf8').catch(() => undefined);
      const pkg = await readPackageJson(release).catch(() => undefined);
      const argv = resolveRunCommand(spec.run, procfile, pkg && stringScripts(pkg));
      inst.state = 'starting';
      const env = this.envFor(inst, nodeBin);
      // yarn Plug'n'Play: no node_modules; node must load the release's .pnp.cjs (as `yarn node` does).
      const pnp = pnpNodeOptions(release, { pnp: existsSync(join(release, '.pnp.cjs')), loader: existsSync(join(release, '.pnp.loader.mjs')) }, env['NODE_OPTIONS']);
      if (pnp !== undefined) env['NODE_OPTIONS'] = pnp;
      inst.handle = await this.runtime.start({ instanceId: spec.id, stateDir: inst.stateDir, cwd: release, argv, env });
      inst.nextProbeAt = mono() + 50;
      inst.probeFailures = 0;
      saveInstance(inst);
      this.opts.log.info({ instance: spec.id, pid: inst.handle.pid, port: inst.port, argv }, 'instance started');
    } catch (err) {
      this.startFailed(inst, err);
    }
    this.kick();
  }

  private startFailed(inst: LocalInstance, err: unknown): void {
    inst.handle = undefined;
    inst.state = 'failed';
    inst.lastError = err instanceof PilotError ? err.message : String((err as Error).message ?? err);
    inst.consecutiveCrashes++;
    inst.nextStartAt = mono() + restartDelayMs(inst.consecutiveCrashes);
    this.opts.log.error({ instance: inst.spec.id, error: inst.lastError }, 'instance could not start');
  }

  /** runtime docker: image first, then the container; a container that survived is adopted, never doubled. */
  private async startContainer(inst: LocalInstance): Promise<void> {
    try {
      if (inst.port === undefined) inst.port = await allocatePort();
      const docker = await this.dockerNode();
      const req = await docker.request(inst, inst.port);
      if (inst.removing) return;
      inst.state = 'starting';
      inst.handle = await docker.runtime.adopt(inst.spec.id, inst.stateDir) ?? await docker.runtime.start(req);
      inst.nextProbeAt = mono() + 50;
      inst.probeFailures = 0;
      saveInstance(inst);
      this.opts.log.info({ instance: inst.spec.id, container: inst.handle.containerId, port: inst.port, image: req.image }, 'instance started');
    } catch (err) {
      this.startFailed(inst, err);
    }
    this.kick();
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
      this.link.setRuntimes({ docker: this.dockerReport() });
      this.kick();
    }
    if (!this.docker) return;
    const stray = await this.docker.sweep(join(this.opts.home, 'instances'), new Set(this.instances.keys()));
    if (stray > 0) this.opts.log.warn({ removed: stray }, 'removed containers of instances this agent no longer has');
  }

  /** The app's own environment: nothing of the agent's (no tokens, no PILOT_* of ours). */
  private envFor(inst: LocalInstance, pinnedNodeBin?: string): Record<string, string> {
    // The pinned runtime's bin first (`node`, and npm's `#!/usr/bin/env node`, run on it), then the
    // agent's own node folder, where npm is.
    const nodeBin = pinnedNodeBin === undefined ? dirname(process.execPath) : `${pinnedNodeBin}:${dirname(process.execPath)}`;
    const home = join(inst.stateDir, 'home');
    mkdirSync(home, { recursive: true });
    // exec refuses a NUL in the environment with an error that quotes the value: fail first, by name.
    for (const [k, v] of Object.entries(inst.spec.env)) {
      if (v.includes('\u0000')) {
        throw new PilotError('deploy_failed', `the environment variable ${k} contains a NUL byte and cannot be passed to a process (the value is not shown)`, {
          hint: `Set it again without NUL: \`pilot secrets set ${inst.spec.app} ${k} < FILE\`, or fix it in pilot.yaml.`,
        });
      }
    }
    return {
      PATH: `${nodeBin}:/usr/local/bin:/usr/bin:/bin`,
      HOME: home,
      NODE_ENV: 'production',
      npm_config_update_notifier: 'false',
      ...inst.spec.env,
      PORT: String(inst.port),
      PILOT_APP: inst.spec.app,
      PILOT_REVISION: String(inst.spec.revision),
      PILOT_COMMIT: inst.spec.commit,
      PILOT_INSTANCE: inst.spec.id,
    };
  }

  private async probe(inst: LocalInstance): Promise<void> {
    const h = inst.spec.health;
    const r = await httpProbe({ host: '127.0.0.1', port: inst.port!, path: h.path, timeoutMs: h.timeoutMs });
    if (!inst.handle || inst.removing) return;
    const wasReady = inst.state === 'ready';
    if (r.ok) {
      inst.probeFailures = 0;
      if (!wasReady) {
        inst.state = 'ready';
        inst.readySince = mono();
        inst.lastError = undefined;
        this.kick();
      }
    } else {
      inst.probeFailures++;
      inst.lastError = `health check GET ${h.path} failed: ${r.error ?? `status ${r.status}`}`;
      // A refused connection is definite (nothing listens): out of the routing table at once, within
      // one probe interval. Timeouts and 5xx may be a slow moment: they need UNHEALTHY_AFTER in a row.
      const definite = r.code === 'ECONNREFUSED';
      if (wasReady && (definite || inst.probeFailures >= UNHEALTHY_AFTER)) {
        inst.state = 'unhealthy';
        inst.readySince = undefined;
        this.kick();
      }
    }
    // Until it is ready, probe often: readiness latency is deploy latency.
    inst.nextProbeAt = mono() + (inst.state === 'ready' ? h.intervalMs : Math.min(100, h.intervalMs));
  }

  private async remove(inst: LocalInstance): Promise<void> {
    if (inst.handle) {
      inst.state = 'stopping';
      this.kick();
      await this.rt(inst).stop(inst.handle, inst.spec.stopTimeoutMs);
      this.opts.log.info({ instance: inst.spec.id }, 'instance stopped');
    }
    inst.handle = undefined;
    inst.state = 'stopped';
    this.instances.delete(inst.spec.id);
    rmSync(inst.stateDir, { recursive: true, force: true });
    this.kick();
  }

  /** Report a change soon rather than at the next interval. */
  private kick(): void {
    setImmediate(() => void this.sync());
  }

  private async rotateLogs(): Promise<void> {
    for (const inst of this.instances.values()) {
      const files = this.runtime.logFiles(inst.stateDir);
      await rotateIfNeeded(files.stdout, LOG_MAX_BYTES, 3).catch(() => false);
      await rotateIfNeeded(files.stderr, LOG_MAX_BYTES, 3).catch(() => false);
    }
  }
}

