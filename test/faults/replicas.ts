/**
 * Test support for the fault tests of several `pilot server` replicas on one PostgreSQL (issue #16):
 * starting a replica (its own home, API and router ports, the shared store and artifacts), calling
 * its API, asking a replica who leads, and stopping a replica and its router process by pid.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { allocatePort } from '../../src/os/ports.js';
import { PILOT, ROOT, tempDir, waitFor, type Harness } from '../integration/harness.js';

export interface Replica {
  name: string;
  home: string;
  api: string;
  /** The address of its router process. */
  router: string;
  proc: ChildProcess;
  out: string;
}

export interface ReplicaSetup {
  h: Harness;
  /** The PostgreSQL database URL every replica shares. */
  store: string;
  /** The artifacts location every replica shares. */
  artifacts: string;
  leaseMs: number;
  env?: Record<string, string>;
}

/**
 * Start a replica. The first one (no `from`) makes the tokens and sealing key in the harness's home;
 * the others get a copy of them (README: "Running Pilot highly available").
 */
export async function startReplica(s: ReplicaSetup, name: string, from?: Replica): Promise<Replica> {
  const home = from === undefined ? s.h.home : s.h.track(tempDir(name));
  mkdirSync(home, { recursive: true, mode: 0o700 });
  if (from !== undefined)
    for (const f of ['admin-token', 'join-token', 'router-token', 'secret.key']) copyFileSync(join(from.home, f), join(home, f));
  const [api, router] = [await allocatePort('127.0.0.1'), await allocatePort('127.0.0.1')];
  const p = spawn(
    process.execPath,
    [
      '--max-semi-space-size=2',
      PILOT,
      'server',
      '--store',
      s.store,
      '--artifacts',
      s.artifacts,
      '--api-port',
      String(api),
      '--router-port',
      String(router),
    ],
    {
      cwd: ROOT,
      env: s.h.env({ ...s.env, PILOT_HOME: home, PILOT_CD_QUIET_MS: '200', PILOT_LEASE_MS: String(s.leaseMs) }),
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const r: Replica = { name, home, api: `http://127.0.0.1:${api}`, router: `http://127.0.0.1:${router}`, proc: p, out: '' };
  p.stdout!.on('data', (d: Buffer) => (r.out += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (r.out += d.toString()));
  await waitFor(`replica ${name} to start`, () => {
    if (p.exitCode !== null) throw new Error(`replica ${name} exited ${p.exitCode}: ${r.out}`);
    return r.out.includes('pilot is up') || undefined;
  });
  if (from === undefined) s.h.token = readFileSync(join(home, 'admin-token'), 'utf8').trim();
  return r;
}

export async function call(h: Harness, r: Replica, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await request(r.api + path, {
    method: method as 'GET',
    headers: { authorization: `Bearer ${h.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    headersTimeout: 5000,
    bodyTimeout: 5000,
  });
  const text = await res.body.text();
  return { status: res.statusCode, json: text.startsWith('{') ? JSON.parse(text) : text };
}

/** The leader as a live replica's cluster view says (undefined: none, or the lease expired). */
export async function leaderSeenBy(
  h: Harness,
  replicas: readonly Replica[],
  r: Replica,
): Promise<{ replica: Replica; token: number } | undefined> {
  try {
    const v = (await call(h, r, 'GET', '/api/v1/cluster')).json;
    if (!v.leader || v.leader.expired) return undefined;
    const replica = replicas.find((x) => x.api === v.leader.url);
    return replica && { replica, token: v.leader.token as number };
  } catch {
    return undefined;
  }
}

/** Kill a process by pid, waking it first if stopped; never throws. */
export function killPid(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, 'SIGCONT');
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

/** Kill a replica and its router process (which outlives its server by design: stopped by its recorded pid). */
export function killReplica(r: Replica): void {
  killPid(r.proc.pid);
  const f = join(r.home, 'router', 'router.json');
  if (existsSync(f)) killPid((JSON.parse(readFileSync(f, 'utf8')) as { pid: number }).pid);
}
