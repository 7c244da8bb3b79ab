/**
 * `router: haproxy`: Pilot runs Debian's HAProxy (master-worker, `-W -S master.sock`) with a
 * generated configuration (config.ts) and keeps it in step with the routing table:
 *
 * - a rollout (instances come and go, weights move, a revision is pinned or drained) goes through
 *   the Runtime API only: `set server B/sK addr|weight|state`, `add|set|del map pins.map`. No reload.
 * - a change of structure (an app or a host added or removed, a sticky split started or ended, an
 *   app outgrowing its server slots) rewrites the configuration, checks it (`haproxy -c`) and
 *   reloads hitlessly (`reload` on the master socket: the new worker takes over the listening
 *   socket, the old one finishes its connections).
 * - HAProxy missing: start-up fails with how to install it. HAProxy exiting: logged, counted, and
 *   started again (with the configuration of the last table) after 500 ms.
 *
 * State lives in this object (the slots), and the configuration is always written from it, so a
 * reload or a restart starts with what was served.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { fail } from '../core/errors.js';
import { cleanRouteHttp, type Route } from '../core/routes.js';
import { allocatePort } from '../os/ports.js';
import type { TlsBundle } from '../router/tls.js';
import {
  MAP_HOST_RE,
  PIN_BACKENDS,
  TOKEN_RE,
  hostsMap,
  mixName,
  pinName,
  renderConfig,
  serverWeight,
  structureOf,
  timeoutFile,
  unavailableFile,
  type AppLayout,
  type Slot,
} from './config.js';
import { parseStat, runtimeCommand, runtimeErrors } from './runtime.js';
import { InstanceRevisions, TrafficLog, addressKey, type TrafficLineSink } from './traffic-log.js';
import { STAT_COLUMNS, TrafficStats, appOfBackend } from './traffic-stats.js';
import { HaproxyTls } from './tls-files.js';

export const DEFAULT_HAPROXY_BIN = '/usr/sbin/haproxy';
/**
 * Runtime API commands per connection (joined by ";" on one line, which HAProxy reads into one
 * buffer of tune.bufsize = 16 KiB: 100 commands of ~60 bytes fit). 2,000 commands take ~70 ms.
 */
export const RUNTIME_BATCH = 100;

/**
 * How HAProxy's traffic figures reach the router process's windows (README "HAProxy as the
 * router", `PILOT_HAPROXY_TRAFFIC`): `log`, a line per request (exact codes and latencies; the
 * default); `stats`, `show stat` counters read every few seconds (status classes, average latencies,
 * no per-request cost); `auto`, the log for an app while two of its revisions share its traffic (a
 * canary, an experiment: what analysis reads), the counters otherwise, switched by the Runtime API
 * (`traced.map`) without a reload; `off`, no figures (canary analysis and the autoscaler see no traffic).
 */
export type TrafficMode = 'log' | 'stats' | 'auto' | 'off';
export const TRAFFIC_MODES: readonly TrafficMode[] = ['log', 'stats', 'auto', 'off'];

/** Mode `auto`: the apps logged request by request, those with two revisions or more taking traffic. */
export function tracedApps(routes: readonly Route[]): Set<string> {
  return new Set(routes.filter((r) => r.backends.filter((b) => b.weight > 0 && b.upstreams.length > 0).length >= 2).map((r) => r.app));
}
/** The mode `PILOT_HAPROXY_TRAFFIC` names (unset or empty: `log`); anything else is refused with the choices. */
export function trafficModeOf(value: string | undefined): TrafficMode {
  if (value === undefined || value === '') return 'log';
  const m = TRAFFIC_MODES.find((x) => x === value.trim().toLowerCase());
  if (m === undefined) throw fail.haproxyTrafficMode({ value });
  return m;
}
/** How often `stats` reads the counters. */
export const STATS_INTERVAL_MS = 2_000;

export interface HaproxyHealth {
  /** HAProxy answers on its runtime socket. */
  readonly up: boolean;
  readonly pid: number | undefined;
  readonly restarts: number;
  readonly reloads: number;
  /** Runtime API batches applied (rollouts without a reload). */
  readonly runtimeUpdates: number;
  readonly lastError: string | undefined;
  /** Traffic log lines (haproxy/traffic-log.ts) the kernel dropped: the router process was busy longer than its socket queue lasted. */
  readonly trafficLines?: { readonly lost: number };
}

interface AppState {
  app: string;
  hosts: string[];
  sticky: AppLayout['sticky'];
  capacity: number;
  mix: (Slot | undefined)[];
  pins: (Slot | undefined)[][];
  /** The revision each pin backend serves. */
  pinRev: (number | undefined)[];
  http: AppLayout['http'];
}

type Desired = Omit<Slot, 'state'> & { state: 'ready' | 'maint' };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Fit `desired` into `slots`: kept ids stay in their slot, gone ones drain, new ones take free slots. */
export function assignSlots(
  slots: readonly (Slot | undefined)[],
  desired: readonly Desired[],
): { slots: (Slot | undefined)[]; overflow: boolean } {
  const want = new Map(desired.map((d) => [d.id, d]));
  const next: (Slot | undefined)[] = slots.map((s) => {
    if (s === undefined) return undefined;
    const d = want.get(s.id);
    if (d !== undefined) {
      want.delete(s.id);
      return { ...d };
    }
    return s.state === 'maint' ? undefined : { ...s, state: 'drain' };
  });
  let overflow = false;
  for (const d of want.values()) {
    const free = next.indexOf(undefined);
    if (free === -1) overflow = true;
    else next[free] = { ...d };
  }
  return { slots: next, overflow };
}

function capacityFor(n: number): number {
  let c = 4;
  while (c < n * 2) c *= 2;
  return Math.min(c, 1024);
}

export class HaproxyRouter {
  readonly url: string;
  readonly port: number;
  readonly #dir: string;
  readonly #bin: string;
  readonly #host: string;
  readonly #trusted: readonly string[];
  readonly #log: Logger;
  readonly #threads: number | undefined;
  /** The per-request log for the traffic figures, when a sink was given (mode `log`). */
  #traffic: TrafficLog | undefined;
  /** The counters read for the traffic figures (mode `stats`), their instance revisions and timer. */
  #stats: TrafficStats | undefined;
  readonly #statsRevisions = new InstanceRevisions();
  #statsTimer: NodeJS.Timeout | undefined;
  /** Mode `auto`: the apps logged request by request (traced.map); undefined in the other modes. */
  #traced: Set<string> | undefined;
  #apps = new Map<string, AppState>();
  #structure = '[]';
  #child: ChildProcess | undefined;
  #closing = false;
  #restarts = 0;
  #reloads = 0;
  #runtimeUpdates = 0;
  #lastError: string | undefined;
  #up = false;
  #pins = new Map<string, string>();
  /** Apps whose unavailable-/timeout- files are written. */
  readonly #errorFiles = new Set<string>();
  /** A pending write of the files after a Runtime API change. */
  #writeTimer: NodeJS.Timeout | undefined;
  /** Applies run one at a time. */
  #queue: Promise<void> = Promise.resolve();
  /** Certificates, HTTPS policy and ACME answers (tls-files.ts). */
  readonly #tls: HaproxyTls;
  /** The HTTPS port, when HAProxy serves HTTPS. */
  readonly httpsPort: number | undefined;

  private constructor(o: {
    dir: string;
    bin: string;
    host: string;
    port: number;
    trusted: readonly string[];
    log: Logger;
    threads: number | undefined;
    httpsPort: number | undefined;
  }) {
    this.#threads = o.threads;
    this.httpsPort = o.httpsPort;
    this.#tls = new HaproxyTls(o.dir, o.httpsPort !== undefined);
    this.#dir = o.dir;
    this.#bin = o.bin;
    this.#host = o.host;
    this.port = o.port;
    this.#trusted = o.trusted;
    this.#log = o.log;
    this.url = `http://${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port}`;
  }

  /** Start HAProxy on host:port (0: a free port) with an empty table; its files live in `dir`. */
  static async start(o: {
    dir: string;
    host: string;
    port: number;
    log: Logger;
    trusted?: readonly string[];
    bin?: string;
    /** HAProxy's threads (default: one per CPU). */
    threads?: number;
    /** Per-request figures (requests, status, latency per app and revision) go here. */
    traffic?: TrafficLineSink;
    /** How they are taken (default `log`; `off`: `traffic` is not fed). */
    trafficMode?: TrafficMode;
    /** `stats`: how often the counters are read (default STATS_INTERVAL_MS). */
    statsIntervalMs?: number;
    /** Serve HTTPS on this port (0: a free one) with the certificates given to `setTls`. */
    https?: { port: number };
    /** Certificates, policies and ACME answers to start with (a router process's saved ones). */
    tls?: TlsBundle;
  }): Promise<HaproxyRouter> {
    const bin = o.bin ?? process.env.PILOT_HAPROXY_BIN ?? DEFAULT_HAPROXY_BIN;
    if (!existsSync(bin)) throw fail.haproxyMissing({ bin });
    mkdirSync(o.dir, { recursive: true, mode: 0o700 });
    chmodSync(o.dir, 0o700); // it holds certificate keys: private whatever made it
    const port = o.port === 0 ? await allocatePort(o.host) : o.port;
    const httpsPort = o.https === undefined ? undefined : o.https.port === 0 ? await allocatePort(o.host) : o.https.port;
    const r = new HaproxyRouter({
      dir: o.dir,
      bin,
      host: o.host,
      port,
      trusted: o.trusted ?? [],
      log: o.log,
      threads: o.threads,
      httpsPort,
    });
    if (o.tls) r.#tls.plan(o.tls); // files only: HAProxy is not running yet
    const mode = o.trafficMode ?? 'log';
    if (o.traffic !== undefined && (mode === 'log' || mode === 'auto')) r.#traffic = await TrafficLog.start(o.traffic);
    if (o.traffic !== undefined && (mode === 'stats' || mode === 'auto')) r.#stats = new TrafficStats(o.traffic);
    if (o.traffic !== undefined && mode === 'auto') r.#traced = new Set();
    r.#writeFiles();
    try {
      await r.#spawn();
    } catch (err) {
      r.#traffic?.close();
      throw err;
    }
    if (r.#stats !== undefined) {
      r.#statsTimer = setInterval(() => {
        const run = r.#queue.then(() => r.#readStats());
        r.#queue = run.catch(() => undefined);
      }, o.statsIntervalMs ?? STATS_INTERVAL_MS);
      r.#statsTimer.unref();
    }
    return r;
  }

  get health(): HaproxyHealth {
    return {
      up: this.#up,
      pid: this.#child?.pid,
      restarts: this.#restarts,
      reloads: this.#reloads,
      runtimeUpdates: this.#runtimeUpdates,
      lastError: this.#lastError,
      ...(this.#traffic !== undefined ? { trafficLines: { lost: this.#traffic.lost() } } : {}),
    };
  }

  /**
   * `stats`: count what HAProxy's counters grew by since the last read. Run before a table moves a
   * slot to another instance (so the slot's requests count for the instance that served them) and
   * on a timer. A failed read counts nothing (the next one counts the growth).
   */
  async #readStats(rows?: Record<string, string>[]): Promise<void> {
    if (this.#stats === undefined || !this.#up) return;
    try {
      rows ??= parseStat(await runtimeCommand(this.#admin, ['show stat'], 2_000), STAT_COLUMNS);
    } catch {
      return;
    }
    this.#stats.count(
      rows,
      (backend, server) => {
        const app = appOfBackend(backend);
        const a = app === undefined ? undefined : this.#apps.get(app);
        const k = Number(/^s(\d+)$/.exec(server)?.[1]) - 1;
        if (a === undefined || !(k >= 0)) return undefined;
        const pin = /^pin(\d+)_/.exec(backend);
        const slot = (pin === null ? a.mix : a.pins[Number(pin[1])])?.[k];
        if (slot === undefined) return undefined;
        return { app: a.app, revision: this.#statsRevisions.revisionOf(a.app, addressKey(slot.host, slot.port)) };
      },
      this.#traced,
    );
  }

  get #admin(): string {
    return join(this.#dir, 'admin.sock');
  }

  get #cfg(): string {
    return join(this.#dir, 'haproxy.cfg');
  }

  #layouts(): AppLayout[] {
    return [...this.#apps.values()].map((a) => ({
      app: a.app,
      hosts: a.hosts,
      sticky: a.sticky,
      mix: { name: mixName(a.app), slots: a.mix },
      pins: a.pins.map((slots, k) => ({ name: pinName(a.app, k), slots })),
      http: a.http,
    }));
  }

  #writeFiles(): void {
    const write = (name: string, text: string): void => {
      const file = join(this.#dir, name);
      writeFileSync(file + '.tmp', text, { mode: 0o600 });
      renameSync(file + '.tmp', file);
    };
    const layouts = this.#layouts();
    this.#tls.writeFiles(write);
    write('hosts.map', hostsMap(layouts));
    write('pins.map', [...this.#pins].map(([k, v]) => `${k} ${v}\n`).join(''));
    write('traced.map', [...(this.#traced ?? [])].map((a) => `${a} 1\n`).join(''));
    // An app's error files depend on its name alone: written once per app, not at every table
    // (at 1,000 apps, rewriting them made a weight change take ~1.5 s instead of ~0.1 s).
    for (const a of layouts) {
      if (this.#errorFiles.has(a.app) && existsSync(join(this.#dir, `timeout-${a.app}.http`))) continue;
      write(`unavailable-${a.app}.http`, unavailableFile(a.app));
      write(`timeout-${a.app}.http`, timeoutFile(a.app));
      this.#errorFiles.add(a.app);
    }
    write(
      'haproxy.cfg',
      renderConfig({
        bind: { host: this.#host, port: this.port },
        dir: this.#dir,
        apps: layouts,
        trusted: this.#trusted,
        ...(this.#threads !== undefined ? { threads: this.#threads } : {}),
        ...(this.#traffic !== undefined
          ? { trafficLog: { port: this.#traffic.port, key: this.#traffic.key, onlyTraced: this.#traced !== undefined } }
          : {}),
        ...(this.httpsPort !== undefined ? { https: { port: this.httpsPort } } : {}),
      }),
    );
  }

  /** `haproxy -c`: the generated configuration is valid (a failure is a bug: the old one stays). */
  #check(): void {
    const res = spawnSync(this.#bin, ['-c', '-q', '-f', this.#cfg], { encoding: 'utf8', timeout: 30_000 });
    if (res.status !== 0) throw fail.haproxyConfigRejected({ output: `${res.stderr ?? ''}${res.stdout ?? ''}`.trim().slice(-2000) });
  }

  async #workerPid(): Promise<number | undefined> {
    try {
      const info = await runtimeCommand(this.#admin, ['show info'], 2_000);
      const m = /^Pid: (\d+)$/m.exec(info);
      return m ? Number(m[1]) : undefined;
    } catch {
      return undefined;
    }
  }

  get #pidFile(): string {
    return join(this.#dir, 'haproxy.pid');
  }

  /**
   * A master left by a router process that was killed (SIGKILL leaves HAProxy serving, which is
   * what a data plane should do) is stopped before a new one starts on the same folder: its pid
   * file names it, and it is ours only when its command line names this configuration.
   */
  async #stopLeftover(): Promise<void> {
    let pid: number;
    try {
      pid = Number(readFileSync(this.#pidFile, 'utf8').trim().split(/\s+/)[0]);
    } catch {
      return;
    }
    if (!Number.isInteger(pid) || pid <= 1) return;
    const ours = (): boolean => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(this.#cfg);
      } catch {
        return false;
      }
    };
    if (!ours()) return;
    this.#log.warn({ pid }, 'an HAProxy of an earlier router process is still running: stopping it');
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return;
    }
    const end = performance.now() + 5_000;
    while (ours() && performance.now() < end) await sleep(50);
    if (ours()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }

  async #spawn(): Promise<void> {
    await this.#stopLeftover();
    const child = spawn(this.#bin, ['-W', '-S', `${join(this.#dir, 'master.sock')},mode,600`, '-p', this.#pidFile, '-f', this.#cfg], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#child = child;
    let output = '';
    const collect = (d: Buffer): void => {
      output = (output + d.toString('utf8')).slice(-4000);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    let exited: number | null | undefined;
    child.once('exit', (code, signal) => {
      exited = code;
      this.#up = false;
      if (this.#child !== child || this.#closing) return;
      this.#restarts++;
      this.#lastError = `haproxy exited (${code ?? signal ?? '?'}): ${output.trim().split('\n').slice(-3).join(' | ')}`;
      this.#log.error({ err: this.#lastError, restarts: this.#restarts }, 'haproxy exited; starting it again');
      void this.#respawnLater();
    });
    const end = performance.now() + 30_000;
    while (performance.now() < end) {
      if (exited !== undefined) throw fail.haproxyStartFailed({ output: output.trim().slice(-2000) || `exit code ${exited}` });
      if ((await this.#workerPid()) !== undefined) {
        this.#up = true;
        this.#stats?.reset(); // a new master and worker: counters from 0
        return;
      }
      await sleep(50);
    }
    child.kill('SIGKILL');
    throw fail.haproxyStartFailed({ output: `no answer on ${this.#admin} within 30 s. ${output.trim().slice(-1000)}` });
  }

  async #respawnLater(): Promise<void> {
    while (!this.#closing) {
      await sleep(500);
      if (this.#closing) return;
      try {
        this.#writeFiles();
        await this.#spawn();
        this.#log.info({ pid: this.#child?.pid }, 'haproxy started again');
        return;
      } catch (err) {
        this.#lastError = (err as Error).message;
        this.#log.error({ err: this.#lastError }, 'haproxy could not be started again; retrying');
      }
    }
  }

  /** Apply a (admitted) routing table. Resolves once HAProxy serves it. */
  apply(routes: readonly Route[]): Promise<void> {
    const run = this.#queue.then(() => this.#apply(routes));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #apply(routes: readonly Route[]): Promise<void> {
    // What the slots served so far counts for their instances before the table moves them.
    await this.#readStats();
    const instances = routes.flatMap((r) =>
      r.backends.flatMap((b) => b.upstreams.map((u) => ({ app: r.app, revision: b.revision, host: u.host, port: u.port }))),
    );
    this.#traffic?.revisions.update(instances, performance.now());
    if (this.#stats !== undefined) this.#statsRevisions.update(instances, performance.now());
    const tracedBefore = this.#traced;
    if (this.#traced !== undefined) this.#traced = tracedApps(routes);
    const before = new Map([...this.#apps].map(([k, v]) => [k, { ...v, mix: [...v.mix], pins: v.pins.map((p) => [...p]) }]));
    const next = new Map<string, AppState>();
    let overflow = false;
    const pins = new Map<string, string>();
    for (const r of routes) {
      const old = this.#apps.get(r.app);
      const by = r.sticky?.by;
      const stickyName = by === undefined ? undefined : 'cookie' in by ? by.cookie : by.header;
      const sticky = by !== undefined && stickyName !== undefined && TOKEN_RE.test(stickyName) ? by : undefined;
      const mixDesired: Desired[] = r.backends.flatMap((b) =>
        b.upstreams.map((u) => {
          const weight = serverWeight(b.weight, b.upstreams.length);
          return { id: u.id, host: u.host, port: u.port, weight, state: weight > 0 ? ('ready' as const) : ('maint' as const) };
        }),
      );
      const capacity = old?.capacity ?? capacityFor(mixDesired.length);
      const empty = (): (Slot | undefined)[] => Array.from({ length: capacity }, () => undefined);
      const mix = assignSlots(old?.mix ?? empty(), mixDesired);
      overflow ||= mix.overflow;
      // Pin backends: a revision keeps its pin backend while it has upstreams; new ones take a free one.
      const withUpstreams = r.backends.filter((b) => b.upstreams.length > 0);
      const pinRev: (number | undefined)[] = (old?.pinRev ?? Array.from({ length: PIN_BACKENDS }, () => undefined)).map((rev) =>
        withUpstreams.some((b) => b.revision === rev) ? rev : undefined,
      );
      for (const b of withUpstreams) {
        if (pinRev.includes(b.revision)) continue;
        const free = pinRev.indexOf(undefined);
        if (free !== -1) pinRev[free] = b.revision;
        else this.#log.warn({ app: r.app, revision: b.revision }, 'more revisions than pin backends: this one cannot be pinned');
      }
      const pinSlots = pinRev.map((rev, k) => {
        const b = withUpstreams.find((x) => x.revision === rev);
        const desired: Desired[] = (b?.upstreams ?? []).map((u) => ({ id: u.id, host: u.host, port: u.port, weight: 1, state: 'ready' }));
        const res = assignSlots(old?.pins[k] ?? empty(), desired);
        overflow ||= res.overflow;
        if (rev !== undefined) pins.set(`${r.app}/${rev}`, pinName(r.app, k));
        return res.slots;
      });
      next.set(r.app, {
        app: r.app,
        hosts: r.hosts.filter((h) => MAP_HOST_RE.test(h)),
        sticky,
        capacity,
        mix: mix.slots,
        pins: pinSlots,
        pinRev,
        // Numbers only reach the configuration text: malformed limits are dropped (core/routes.ts).
        http: cleanRouteHttp(r.http),
      });
    }
    const structure =
      structureOf(
        [...next.values()].map((a) => ({
          app: a.app,
          hosts: a.hosts,
          backends: [],
          ...(a.sticky ? { sticky: { by: a.sticky, seed: '' } } : {}),
          ...(a.http ? { http: a.http } : {}),
        })),
      ) + JSON.stringify([...next.values()].map((a) => [a.app, a.capacity]).sort());
    if (overflow || structure !== this.#structure || !this.#up) {
      if (overflow) {
        // Grow the slots of every app that needs it, then assign again from scratch (a reload).
        for (const [app, s] of next) {
          const r = routes.find((x) => x.app === app)!;
          const need = r.backends.reduce((n, b) => n + b.upstreams.length, 0);
          const capacity = capacityFor(Math.max(need, s.mix.filter(Boolean).length));
          if (capacity > s.capacity) {
            const grow = (slots: (Slot | undefined)[]): (Slot | undefined)[] => [
              ...slots,
              ...Array.from({ length: capacity - slots.length }, () => undefined),
            ];
            this.#apps.set(app, {
              ...(before.get(app) ?? s),
              capacity,
              mix: grow(before.get(app)?.mix ?? []),
              pins: (before.get(app)?.pins ?? s.pins.map(() => [])).map(grow),
            });
          }
        }
        return this.#apply(routes);
      }
      this.#apps = next;
      this.#pins = pins;
      this.#structure = structure;
      await this.#reload();
      return;
    }
    // A rollout: only the Runtime API.
    const cmds: string[] = [];
    for (const [app, s] of next) {
      const old = before.get(app)!;
      diffSlots(mixName(app), old.mix, s.mix, cmds);
      s.pins.forEach((slots, k) => diffSlots(pinName(app, k), old.pins[k] ?? [], slots, cmds));
    }
    const mapFile = join(this.#dir, 'pins.map');
    for (const [k, v] of pins) {
      const was = this.#pins.get(k);
      if (was === undefined) cmds.push(`add map ${mapFile} ${k} ${v}`);
      else if (was !== v) cmds.push(`set map ${mapFile} ${k} ${v}`);
    }
    for (const k of this.#pins.keys()) if (!pins.has(k)) cmds.push(`del map ${mapFile} ${k}`);
    if (this.#traced !== undefined && tracedBefore !== undefined) {
      const traced = join(this.#dir, 'traced.map');
      for (const a of this.#traced) if (!tracedBefore.has(a)) cmds.push(`add map ${traced} ${a} 1`);
      for (const a of tracedBefore) if (!this.#traced.has(a)) cmds.push(`del map ${traced} ${a}`);
    }
    this.#apps = next;
    this.#pins = pins;
    if (cmds.length === 0) return;
    const ordered = upsFirst(cmds);
    const errors: string[] = [];
    for (let i = 0; i < ordered.length; i += RUNTIME_BATCH) {
      const answer = await runtimeCommand(this.#admin, ordered.slice(i, i + RUNTIME_BATCH));
      errors.push(...runtimeErrors(answer));
    }
    // The files follow a little later (a restart and a reload write them first anyway): rendering
    // haproxy.cfg for 1,000 apps at every weight change doubled its time.
    this.#scheduleWrite();
    this.#runtimeUpdates++;
    if (errors.length > 0) {
      this.#lastError = errors.slice(0, 3).join(' | ');
      this.#log.error({ errors: errors.slice(0, 10) }, 'haproxy refused runtime commands; reloading with the full configuration');
      await this.#reload();
    }
  }

  /**
   * Serve these certificates, HTTPS policies and ACME answers (what the control plane sends). No
   * reload: certificates through the Runtime API's `new|set|commit ssl cert` and `add|del ssl
   * crt-list` (HAProxy 2.6 has them: a renewal is served at the next handshake, connections in
   * progress keep theirs), policies and answers through `add|set|del map`. A command refused: a
   * reload from the files, which always hold the whole state. Without HTTPS only the ACME answers
   * are used. Resolves once HAProxy serves them.
   */
  setTls(bundle: TlsBundle): Promise<void> {
    const run = this.#queue.then(() => this.#setTls(bundle));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #setTls(bundle: TlsBundle): Promise<void> {
    const change = this.#tls.plan(bundle);
    if (change.skipped.length > 0) this.#log.warn({ skipped: change.skipped }, 'haproxy: certificates or ACME answers left out');
    if (!this.#up) {
      this.#writeFiles(); // a restart or the first start is under way: it reads these files
      this.#tls.afterSteps();
      return;
    }
    const errors: string[] = [];
    for (const step of change.steps) {
      try {
        errors.push(...(await step(this.#admin)));
      } catch (err) {
        // The socket failed mid-way: what HAProxy has is unknown, the files say what it should have.
        errors.push((err as Error).message);
        break;
      }
    }
    this.#tls.afterSteps();
    // At once (certificates change seldom): a restart a moment later starts from these files.
    this.#writeFiles();
    if (change.steps.length > 0) this.#runtimeUpdates++;
    if (errors.length > 0) {
      this.#lastError = errors.slice(0, 3).join(' | ');
      this.#log.error({ errors: errors.slice(0, 10) }, 'haproxy refused certificate commands; reloading from the files');
      await this.#reload();
    }
  }

  #scheduleWrite(): void {
    if (this.#writeTimer !== undefined) return;
    this.#writeTimer = setTimeout(() => {
      this.#writeTimer = undefined;
      try {
        this.#writeFiles();
      } catch (err) {
        this.#log.error({ err }, 'haproxy: could not write its files; the next reload or restart writes them');
      }
    }, 1_000);
    this.#writeTimer.unref();
  }

  async #reload(): Promise<void> {
    clearTimeout(this.#writeTimer);
    this.#writeTimer = undefined;
    this.#writeFiles();
    this.#check();
    if (!this.#up) return; // a restart is under way (or the first start): it reads these files
    const before = await this.#workerPid();
    await runtimeCommand(join(this.#dir, 'master.sock'), ['reload'], 10_000);
    const end = performance.now() + 30_000;
    while (performance.now() < end) {
      const pid = await this.#workerPid();
      if (pid !== undefined && pid !== before) {
        // The new worker counts from 0; what the old one serves from now on is not counted.
        this.#stats?.reset();
        this.#reloads++;
        this.#log.info({ worker: pid, reloads: this.#reloads }, 'haproxy reloaded');
        return;
      }
      await sleep(50);
    }
    throw fail.haproxyStartFailed({ output: 'the reload did not bring up a new worker within 30 s' });
  }

  /**
   * Requests in flight (queued or being served) per upstream id, from `show stat`. Draining slots
   * with nothing left are freed (state maint) here: that is when the drain is over.
   */
  async inflightAll(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    let rows: Record<string, string>[];
    try {
      rows = parseStat(await runtimeCommand(this.#admin, ['show stat'], 5_000), STAT_COLUMNS);
    } catch {
      return out;
    }
    // Before a drained slot is freed: its last requests count for its instance.
    await this.#readStats(rows);
    const byServer = new Map(rows.map((r) => [`${r.pxname}/${r.svname}`, Number(r.scur || 0) + Number(r.qcur || 0)]));
    const freed: string[] = [];
    for (const a of this.#apps.values()) {
      const visit = (name: string, slots: (Slot | undefined)[]): void =>
        slots.forEach((s, k) => {
          if (s === undefined) return;
          const n = byServer.get(`${name}/s${k + 1}`) ?? 0;
          if (n > 0) out[s.id] = (out[s.id] ?? 0) + n;
          else if (s.state === 'drain') {
            slots[k] = undefined;
            freed.push(`set server ${name}/s${k + 1} state maint`);
          }
        });
      visit(mixName(a.app), a.mix);
      a.pins.forEach((p, k) => visit(pinName(a.app, k), p));
    }
    if (freed.length > 0) await runtimeCommand(this.#admin, freed).catch(() => undefined);
    return out;
  }

  /** Stop HAProxy (the master stops its workers). */
  async close(): Promise<void> {
    clearInterval(this.#statsTimer);
    if (this.#stats !== undefined) {
      // The last counts, while HAProxy still answers (after what is queued, for at most 5 s).
      await Promise.race([this.#queue, sleep(5_000)]);
      await this.#readStats();
    }
    this.#closing = true;
    clearTimeout(this.#writeTimer);
    const child = this.#child;
    if (child !== undefined && child.exitCode === null && child.signalCode === null)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        child.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        child.kill('SIGUSR1'); // soft stop: finish what is in flight
      });
    this.#traffic?.close(); // after HAProxy: the lines of what it finished are counted
  }
}

/**
 * The commands that take serving capacity away (a server to weight 0 or to maint) after all the
 * others, each group in its order. HAProxy serves requests between two commands of one batch, so a
 * blue-green switch sent slot by slot (old to maint, then new to ready) left a moment with no usable
 * server in the backend: 502 "no ready instance" under load. New servers are ready first now.
 */
export function upsFirst(cmds: readonly string[]): string[] {
  const down = (c: string): boolean => / weight 0$/.test(c) || / state maint$/.test(c);
  return [...cmds.filter((c) => !down(c)), ...cmds.filter(down)];
}

/** Runtime commands that turn slots `a` into slots `b` of backend `name`. */
export function diffSlots(name: string, a: readonly (Slot | undefined)[], b: readonly (Slot | undefined)[], cmds: string[]): void {
  b.forEach((s, k) => {
    const o = a[k];
    const srv = `${name}/s${k + 1}`;
    if (s === undefined) {
      if (o !== undefined && o.state !== 'maint') cmds.push(`set server ${srv} state maint`);
      return;
    }
    if (o === undefined || o.host !== s.host || o.port !== s.port) cmds.push(`set server ${srv} addr ${s.host} port ${s.port}`);
    if (o === undefined || o.weight !== s.weight) cmds.push(`set server ${srv} weight ${s.weight}`);
    if (o === undefined || o.state !== s.state || o.id !== s.id) cmds.push(`set server ${srv} state ${s.state}`);
  });
}

/** HAProxy's health as Prometheus text (the router process appends it to its /metrics). */
export function haproxyMetricsText(h: HaproxyHealth): string {
  return [
    '# HELP pilot_haproxy_up 1 when HAProxy answers on its runtime socket.',
    '# TYPE pilot_haproxy_up gauge',
    `pilot_haproxy_up ${h.up ? 1 : 0}`,
    '# HELP pilot_haproxy_restarts_total Times HAProxy exited and was started again.',
    '# TYPE pilot_haproxy_restarts_total counter',
    `pilot_haproxy_restarts_total ${h.restarts}`,
    '# HELP pilot_haproxy_reloads_total Hitless reloads (an app, a host or a sticky split added or removed).',
    '# TYPE pilot_haproxy_reloads_total counter',
    `pilot_haproxy_reloads_total ${h.reloads}`,
    '# HELP pilot_haproxy_runtime_updates_total Tables applied through the Runtime API alone (no reload).',
    '# TYPE pilot_haproxy_runtime_updates_total counter',
    `pilot_haproxy_runtime_updates_total ${h.runtimeUpdates}`,
    ...(h.trafficLines === undefined
      ? []
      : [
          '# HELP pilot_haproxy_traffic_lines_lost_total Per-request log lines lost before the router process read them (the traffic figures miss those requests).',
          '# TYPE pilot_haproxy_traffic_lines_lost_total counter',
          `pilot_haproxy_traffic_lines_lost_total ${h.trafficLines.lost}`,
        ]),
    '',
  ].join('\n');
}
