/**
 * Integration-test harness: real `pilot` processes, real git repositories, real sockets. Every
 * process a test starts is tracked by pid and killed in `cleanup()`, even when the test fails.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { sharedTestRuntimeCache } from '../../src/node-runtime/test-runtimes.fixture.js';
import { isSameProcess } from '../../src/os/proc.js';

export const ROOT = new URL('../../../', import.meta.url).pathname;
export const PILOT = join(ROOT, 'bin/pilot.js');

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `pilot-it-${prefix}-`));
}

export async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastErr = err;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
}

export function git(cwd: string, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(
      'git',
      [
        '-c',
        'user.name=Pilot Test',
        '-c',
        'user.email=test@pilot.invalid',
        '-c',
        'commit.gpgsign=false',
        '-c',
        'init.defaultBranch=main',
        ...args,
      ],
      { cwd },
    );
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`git ${args.join(' ')}: ${err}`))));
  });
}

/** A new git repository holding a copy of `from`, committed. */
export async function makeRepo(from: string): Promise<string> {
  const dir = tempDir('repo');
  cpSync(from, dir, { recursive: true });
  await git(dir, 'init', '-q');
  await git(dir, 'add', '-A');
  await git(dir, 'commit', '-qm', 'first');
  return dir;
}

/** The parsed JSON of an answer, or its text when it is not JSON. */
export function jsonOrText(text: string): any {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export class Harness {
  readonly home = tempDir('home');
  private readonly procs = new Set<ChildProcess>();
  private readonly dirs: string[] = [this.home];
  private readonly agentHomes = new Set<string>();
  api = '';
  router = '';
  token = '';
  up: ChildProcess | undefined;

  track(dir: string): string {
    this.dirs.push(dir);
    return dir;
  }

  env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    // Node.js runtimes the tests pin are downloaded once per machine, not once per test (node-runtime README).
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PILOT_HOME: this.home,
      PILOT_RUNTIME_CACHE: process.env.PILOT_RUNTIME_CACHE ?? sharedTestRuntimeCache(),
      ...extra,
    };
    delete env.PILOT_SERVER;
    delete env.PILOT_TOKEN;
    return env;
  }

  /** Start `pilot up` (control plane, router, agent) on free ports and wait until it answers. */
  async startUp(
    extraEnv: Record<string, string> = {},
    command: 'up' | 'server' = 'up',
    ports: { api: number; router: number } = { api: 0, router: 0 },
    nodeArgs: readonly string[] = [],
    upArgs: readonly string[] = [],
  ): Promise<void> {
    rmSync(join(this.home, 'server.json'), { force: true });
    // The same V8 flag as `npm start`.
    const p = spawn(
      process.execPath,
      [
        '--max-semi-space-size=2',
        ...nodeArgs,
        PILOT,
        command,
        '--api-port',
        String(ports.api),
        '--router-port',
        String(ports.router),
        ...upArgs,
      ],
      { cwd: ROOT, env: this.env(extraEnv), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.procs.add(p);
    p.on('exit', () => this.procs.delete(p));
    let out = '';
    p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const info = await waitFor('pilot up to start', () => {
      if (p.exitCode !== null) throw new Error(`pilot up exited ${p.exitCode}: ${out}`);
      const f = join(this.home, 'server.json');
      if (!existsSync(f)) return undefined;
      const j = JSON.parse(readFileSync(f, 'utf8')) as { api: string; router: string; pid: number };
      return j.pid === p.pid && out.includes('pilot is up') ? j : undefined;
    });
    this.api = info.api;
    this.router = info.router;
    this.token = readFileSync(join(this.home, 'admin-token'), 'utf8').trim();
    this.up = p;
  }

  /** Run the pilot CLI to completion. */
  cli(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
    return new Promise((resolve) => {
      const p = spawn(process.execPath, [PILOT, ...args], {
        cwd: opts.cwd ?? ROOT,
        env: this.env(opts.env),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      this.procs.add(p);
      let stdout = '';
      let stderr = '';
      p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('close', (code) => {
        this.procs.delete(p);
        resolve({ code, stdout, stderr });
      });
    });
  }

  async apiCall(method: string, path: string, body?: unknown, token: string | null = this.token): Promise<{ status: number; json: any }> {
    const res = await request(this.api + path, {
      method: method as 'GET',
      headers: {
        ...(token === null ? {} : { authorization: `Bearer ${token}` }),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.statusCode, json: jsonOrText(await res.body.text()) };
  }

  async viaRouter(host: string, path = '/'): Promise<{ status: number; text: string }> {
    const res = await request(this.router + path, { headers: { host } });
    return { status: res.statusCode, text: await res.body.text() };
  }

  /** Start `pilot agent` as a separate node with its own $PILOT_HOME, joined to this harness's server. */
  async startAgent(
    name: string,
    address: string,
    home: string,
    extraEnv: Record<string, string> = {},
    more: { args?: readonly string[]; until?: string } = {},
  ): Promise<ChildProcess> {
    const join_ = readFileSync(join(this.home, 'join-token'), 'utf8').trim();
    // The join token through the environment, as the README says: on argv it would show in ps.
    const p = spawn(process.execPath, [PILOT, 'agent', '--server', this.api, '--name', name, '--address', address, ...(more.args ?? [])], {
      cwd: ROOT,
      env: { ...this.env(extraEnv), PILOT_HOME: home, PILOT_JOIN_TOKEN: join_ },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.procs.add(p);
    this.agentHomes.add(home);
    p.on('exit', () => this.procs.delete(p));
    let out = '';
    p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor(`agent ${name} to join`, () => {
      if (p.exitCode !== null) throw new Error(`agent exited ${p.exitCode}: ${out}`);
      return out.includes(more.until ?? 'joined') || undefined;
    });
    return p;
  }

  /** Pids of the app instances the agent runs (from its pid files). */
  instancePids(home = this.home): number[] {
    const dir = join(home, 'agent', 'instances');
    if (!existsSync(dir)) return [];
    const pids: number[] = [];
    for (const id of readdirSync(dir)) {
      try {
        pids.push((JSON.parse(readFileSync(join(dir, id, 'pid.json'), 'utf8')) as { pid: number }).pid);
      } catch {
        // no pid file: not running
      }
    }
    return pids;
  }

  async killUp(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.up;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await exited;
  }

  /** The router process `pilot up` runs (its pid from $PILOT_HOME/router/router.json), if any. */
  routerPid(): number | undefined {
    try {
      const f = JSON.parse(readFileSync(join(this.home, 'router', 'router.json'), 'utf8')) as { pid: number; startTime: string };
      return isSameProcess(f.pid, f.startTime) ? f.pid : undefined; // never a reused pid
    } catch {
      return undefined;
    }
  }

  /** Kill everything this harness started (pilot processes, the router process, app instances) and remove temp dirs. */
  async cleanup(): Promise<void> {
    for (const p of this.procs) p.kill('SIGKILL');
    const router = this.routerPid();
    if (router !== undefined) {
      try {
        process.kill(router, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    // HAProxy (`--router haproxy`) outlives a killed router process by design: stop it by its pid file.
    try {
      const master = Number(
        readFileSync(join(this.home, 'router', 'haproxy', 'haproxy.pid'), 'utf8')
          .trim()
          .split(/\s+/)[0],
      );
      if (Number.isInteger(master) && master > 1) process.kill(master, 'SIGKILL');
    } catch {
      // no HAProxy, or already gone
    }
    for (const pid of [this.home, ...this.agentHomes].flatMap((home) => this.instancePids(home))) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await sleep(100);
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true });
  }
}
