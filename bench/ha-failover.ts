/**
 * Leader fail-over of `pilot server` replicas on PostgreSQL (issue #16, "Measured"): three replicas
 * on one PostgreSQL 15 (started and stopped by this script), the leader killed with -9 `kills`
 * times (restarted as a follower after each), while a client reads the API of a follower every
 * 20 ms. Prints the fail-over time (kill → another replica holds the lease, as a follower's
 * `/api/v1/cluster` says) p50/p99/max, and that client's latency p50/p99/max and failures.
 *
 *   npm run build && PILOT_LEASE_MS=3000 node dist/bench/ha-failover.js [kills=8]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allocatePort } from '../src/os/ports.js';
import { startPostgres } from '../src/store/test-postgres.js';

const KILLS = Number(process.argv[2] ?? 8);
const LEASE_MS = process.env.PILOT_LEASE_MS ?? '3000';
const PILOT = new URL('../../bin/pilot.js', import.meta.url).pathname;
const pct = (xs: number[], p: number): number =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Replica {
  home: string;
  api: string;
  apiPort: number;
  routerPort: number;
  proc?: ChildProcess;
}

const root = mkdtempSync(join(tmpdir(), 'pilot-bench-ha-'));
const pg = await startPostgres();
const url = await pg.createDatabase();
const replicas: Replica[] = [];
let token = '';

async function start(r: Replica): Promise<void> {
  let out = '';
  const p = spawn(
    process.execPath,
    [
      PILOT,
      'server',
      '--store',
      url,
      '--artifacts',
      join(root, 'artifacts'),
      '--api-port',
      String(r.apiPort),
      '--router-port',
      String(r.routerPort),
    ],
    { env: { ...process.env, PILOT_HOME: r.home, PILOT_LEASE_MS: LEASE_MS }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  r.proc = p;
  const end = Date.now() + 60_000;
  while (!out.includes('pilot is up')) {
    if (p.exitCode !== null || Date.now() > end) throw new Error(`replica did not start: ${out}`);
    await sleep(50);
  }
}

async function leaderOf(r: Replica): Promise<string | undefined> {
  try {
    const res = await fetch(`${r.api}/api/v1/cluster`, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(2000),
    });
    const v = (await res.json()) as { leader: { url: string; expired: boolean } | null };
    return v.leader && !v.leader.expired ? v.leader.url : undefined;
  } catch {
    return undefined;
  }
}

try {
  for (let i = 0; i < 3; i++) {
    const home = join(root, `r${i}`);
    mkdirSync(home, { recursive: true, mode: 0o700 });
    if (i > 0)
      for (const f of ['admin-token', 'join-token', 'router-token', 'secret.key']) copyFileSync(join(root, 'r0', f), join(home, f));
    const apiPort = await allocatePort('127.0.0.1');
    const r: Replica = { home, api: `http://127.0.0.1:${apiPort}`, apiPort, routerPort: await allocatePort('127.0.0.1') };
    replicas.push(r);
    await start(r);
    if (i === 0) token = readFileSync(join(home, 'admin-token'), 'utf8').trim();
  }
  const failovers: number[] = [];
  const apiLatency: number[] = [];
  let apiFailed = 0;
  for (let k = 0; k < KILLS; k++) {
    let leaderUrl: string | undefined;
    while (!(leaderUrl = await leaderOf(replicas[0]!)) && !(leaderUrl = await leaderOf(replicas[1]!))) await sleep(100);
    const leader = replicas.find((r) => r.api === leaderUrl)!;
    const others = replicas.filter((r) => r !== leader);
    // A client of a follower, reading the API through the fail-over.
    let reading = true;
    const client = (async () => {
      while (reading) {
        const t = performance.now();
        try {
          const res = await fetch(`${others[0]!.api}/api/v1/apps`, {
            headers: { authorization: `Bearer ${token}` },
            signal: AbortSignal.timeout(5000),
          });
          await res.text();
          if (res.status === 200) apiLatency.push(performance.now() - t);
          else apiFailed++;
        } catch {
          apiFailed++;
        }
        await sleep(20);
      }
    })();
    await sleep(300);
    const t0 = performance.now();
    leader.proc!.kill('SIGKILL');
    for (;;) {
      const now = await leaderOf(others[0]!);
      if (now !== undefined && now !== leader.api) break;
      await sleep(20);
    }
    failovers.push(performance.now() - t0);
    reading = false;
    await client;
    await start(leader); // back as a follower
    process.stdout.write(`kill ${k + 1}: new leader after ${Math.round(failovers.at(-1)!)} ms\n`);
  }
  const f = (xs: number[], p: number): string => pct(xs, p).toFixed(0);
  console.log(
    `leader fail-over (lease ${LEASE_MS} ms, ${KILLS} kills): p50 ${f(failovers, 50)} ms, p99 ${f(failovers, 99)} ms, max ${Math.round(Math.max(...failovers))} ms`,
  );
  console.log(
    `API of a follower during fail-overs: ${apiLatency.length} reads, p50 ${pct(apiLatency, 50).toFixed(1)} ms, p99 ${pct(apiLatency, 99).toFixed(1)} ms, max ${Math.max(...apiLatency).toFixed(1)} ms, failed ${apiFailed}`,
  );
} finally {
  for (const r of replicas) {
    try {
      r.proc?.kill('SIGKILL');
    } catch {
      // gone
    }
    const f = join(r.home, 'router', 'router.json');
    if (existsSync(f)) {
      try {
        process.kill((JSON.parse(readFileSync(f, 'utf8')) as { pid: number }).pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  await pg.stop();
  rmSync(root, { recursive: true, force: true });
}
