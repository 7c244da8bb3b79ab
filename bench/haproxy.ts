/**
 * Pilot-driven HAProxy (src/haproxy: generated config, Runtime API, host map, pin and forwarding
 * rules) against a plain HAProxy with a minimal hand-written config, on the same upstream, with wrk
 * (1 thread, c=50, keep-alive), interleaved rounds. Goal: ≥ 0.95× plain's requests/s.
 * Pilot-driven HAProxy runs three times, one per traffic mode (PILOT_HAPROXY_TRAFFIC): `log`, the
 * default, with the per-request log line that feeds the traffic figures (haproxy/traffic-log.ts,
 * read by this process as the router process reads it); `stats`, the counters read every 2 s
 * (haproxy/traffic-stats.ts, also by this process); `off`, no figures. Every HAProxy runs with the
 * same `nbthread` and the same timeouts and keep-alive; the plain one has no forwarding headers,
 * host routing or error pages. The upstream is a child process.
 *
 *   npm run build && node dist/bench/haproxy.js [seconds=5] [rounds=3] [threads=2]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { HaproxyRouter } from '../src/haproxy/haproxy-router.js';
import { RouterMetrics } from '../src/router/metrics.js';
import { allocatePort } from '../src/os/ports.js';

const seconds = Number(process.argv[2] ?? 5);
const rounds = Number(process.argv[3] ?? 3);
const threads = Number(process.argv[4] ?? 2);
const HOST = 'bench.localhost';

function run(cmd: string, args: string[], _o: object): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** wrk in a child process (async: the upstream runs in this process's event loop). */
async function wrk(port: number): Promise<{ rps: number; p50: string; p99: string; errors: number }> {
  const r = await run('wrk', ['-t1', '-c50', `-d${seconds}s`, '--latency', '-H', `Host: ${HOST}`, `http://127.0.0.1:${port}/`], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`wrk failed: ${r.stderr}`);
  const pct = (p: string): string => new RegExp(`^\\s*${p}%\\s+(\\S+)`, 'm').exec(r.stdout)?.[1] ?? '?';
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(r.stdout)?.[1] ?? 0);
  return { rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? NaN), p50: pct('50'), p99: pct('99'), errors: non2xx };
}

/** CPU time (ms) of a process and its children (HAProxy's master and worker), from /proc. */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  const one = (p: string): number => {
    try {
      const f = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime, USER_HZ = 100
    } catch {
      return 0;
    }
  };
  let children: string[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  } catch {
    children = [];
  }
  return one(String(pid)) + children.reduce((n, c) => n + one(c), 0);
}

/** wrk against a port, with the CPU µs per request of the HAProxy process tree (and of this process, which reads the log). */
async function measure(
  port: number,
  pid: number | undefined,
): Promise<Awaited<ReturnType<typeof wrk>> & { hapUs: number; readerUs: number }> {
  const h0 = cpuMs(pid);
  const r0 = process.cpuUsage();
  const w = await wrk(port);
  const r1 = process.cpuUsage(r0);
  const n = w.rps * seconds;
  return { ...w, hapUs: ((cpuMs(pid) - h0) * 1000) / n, readerUs: (r1.user + r1.system) / n };
}

async function main(): Promise<void> {
  // The upstream in a process of its own: this process reads the traffic log, as the router process does.
  const upstream = spawn(
    process.execPath,
    [
      '-e',
      `const body = Buffer.from('hello from the bench upstream\\n');
       const s = require('node:http').createServer((_q, r) => r.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length }).end(body));
       s.listen(0, '127.0.0.1', () => console.log(s.address().port));`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const upPort = await new Promise<number>((resolve) => upstream.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  const dir = mkdtempSync(join(tmpdir(), 'pilot-bench-haproxy-'));
  const metrics = new RouterMetrics();
  const route = {
    app: 'bench',
    hosts: [HOST],
    backends: [{ revision: 1, weight: 100, upstreams: [{ id: 'b1', host: '127.0.0.1', port: upPort }] }],
  };
  const pilot = await HaproxyRouter.start({
    dir: join(dir, 'pilot'),
    host: '127.0.0.1',
    port: 0,
    log: pino({ level: 'silent' }),
    traffic: metrics,
    threads,
  });
  await pilot.apply([route]);
  const statsMetrics = new RouterMetrics();
  const stats = await HaproxyRouter.start({
    dir: join(dir, 'stats'),
    host: '127.0.0.1',
    port: 0,
    log: pino({ level: 'silent' }),
    traffic: statsMetrics,
    trafficMode: 'stats',
    threads,
  });
  await stats.apply([route]);
  const bare = await HaproxyRouter.start({ dir: join(dir, 'bare'), host: '127.0.0.1', port: 0, log: pino({ level: 'silent' }), threads });
  await bare.apply([route]);
  const plainPort = await allocatePort('127.0.0.1');
  writeFileSync(
    join(dir, 'plain.cfg'),
    [
      'global',
      `  nbthread ${threads}`,
      // The same defaults as Pilot's (haproxy/config.ts): keep-alive, timeouts, retries.
      'defaults',
      '  mode http',
      '  option http-keep-alive',
      '  timeout connect 5s',
      '  timeout client 5m',
      '  timeout http-request 30s',
      '  timeout server 60s',
      '  timeout tunnel 1h',
      '  timeout client-fin 5s',
      '  retries 1',
      '  option redispatch 1',
      '  option abortonclose',
      'frontend f',
      `  bind 127.0.0.1:${plainPort}`,
      '  default_backend b',
      'backend b',
      `  server s1 127.0.0.1:${upPort}`,
      '',
    ].join('\n'),
  );
  const plain = spawn('/usr/sbin/haproxy', ['-f', join(dir, 'plain.cfg')], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 500));
  const ratios: number[] = [];
  const bareRatios: number[] = [];
  const statsRatios: number[] = [];
  const cpu = {
    plain: [] as number[],
    pilot: [] as number[],
    reader: [] as number[],
    bare: [] as number[],
    stats: [] as number[],
    statsReader: [] as number[],
  };
  const loads: string[] = [];
  const range = (xs: number[]): string => `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`;
  try {
    for (let i = 0; i < rounds; i++) {
      const p = await measure(plainPort, plain.pid);
      const d = await measure(pilot.port, pilot.health.pid);
      const b = await measure(bare.port, bare.health.pid);
      const s = await measure(stats.port, stats.health.pid);
      loads.push(readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '));
      cpu.stats.push(s.hapUs);
      cpu.statsReader.push(s.readerUs);
      statsRatios.push(s.rps / p.rps);
      cpu.plain.push(p.hapUs);
      cpu.pilot.push(d.hapUs);
      cpu.reader.push(d.readerUs);
      cpu.bare.push(b.hapUs);
      ratios.push(d.rps / p.rps);
      bareRatios.push(b.rps / p.rps);
      console.log(
        `round ${i + 1}: plain ${p.rps.toFixed(0)} req/s (p50 ${p.p50}, p99 ${p.p99}, non-2xx ${p.errors}) | ` +
          `pilot-driven ${d.rps.toFixed(0)} req/s (p50 ${d.p50}, p99 ${d.p99}, non-2xx ${d.errors}) ratio ${(d.rps / p.rps).toFixed(3)} | ` +
          `stats ${s.rps.toFixed(0)} req/s ratio ${(s.rps / p.rps).toFixed(3)} | ` +
          `off ${b.rps.toFixed(0)} req/s ratio ${(b.rps / p.rps).toFixed(3)} | load ${loads[i]}`,
      );
    }
    await new Promise((r) => setTimeout(r, 2_500)); // one more read of the counters
    const counted = metrics.traffic(600_000, 'bench').reduce((n, t) => n + t.summary.requests, 0);
    const countedStats = statsMetrics.traffic(600_000, 'bench').reduce((n, t) => n + t.summary.requests, 0);
    const r3 = (xs: number[]): string => `${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)}`;
    console.log(`threads ${threads}; load average after each round: ${loads.join(' | ')}`);
    console.log(`ratio pilot-driven (log) / plain: ${r3(ratios)} (goal ≥ 0.95)`);
    console.log(`ratio pilot-driven (stats) / plain: ${r3(statsRatios)}`);
    console.log(`ratio pilot-driven (off) / plain: ${r3(bareRatios)}`);
    console.log(`requests counted by the traffic figures (last 10 min of the window): log ${counted}, stats ${countedStats}`);
    console.log(
      `CPU µs per request: plain HAProxy ${range(cpu.plain)}; log ${range(cpu.pilot)} + ${range(cpu.reader)} reading its lines; ` +
        `stats ${range(cpu.stats)} + ${range(cpu.statsReader)} reading counters; off ${range(cpu.bare)}`,
    );
  } finally {
    plain.kill('SIGTERM');
    upstream.kill('SIGTERM');
    await Promise.all([pilot.close(), bare.close(), stats.close()]);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
