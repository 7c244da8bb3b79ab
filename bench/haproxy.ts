/**
 * Pilot-driven HAProxy (src/haproxy: generated config, Runtime API, host map, pin and forwarding
 * rules) against a plain HAProxy with a minimal hand-written config, on the same upstream, with wrk
 * (1 thread, c=50, keep-alive), interleaved rounds. Goal: ≥ 0.95× plain's requests/s.
 * Pilot-driven HAProxy runs four times, one per traffic mode (PILOT_HAPROXY_TRAFFIC): `log`, the
 * default, with the per-request log line that feeds the traffic figures (haproxy/traffic-log.ts,
 * read by this process as the router process reads it); `stats`, the counters read every 2 s
 * (haproxy/traffic-stats.ts, also by this process); `auto` (one revision: the counters, plus the
 * per-request rule that decides); `off`, no figures. The order of the five rotates each round. Every HAProxy runs with the
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
import { HaproxyRouter, type TrafficMode } from '../src/haproxy/haproxy-router.js';
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
  const route = {
    app: 'bench',
    hosts: [HOST],
    backends: [{ revision: 1, weight: 100, upstreams: [{ id: 'b1', host: '127.0.0.1', port: upPort }] }],
  };
  // One Pilot-driven HAProxy per traffic mode, each with its own figures (read by this process).
  const modes: TrafficMode[] = ['log', 'stats', 'auto', 'off'];
  const driven = await Promise.all(
    modes.map(async (mode) => {
      const metrics = new RouterMetrics();
      const router = await HaproxyRouter.start({
        dir: join(dir, mode),
        host: '127.0.0.1',
        port: 0,
        log: pino({ level: 'silent' }),
        ...(mode === 'off' ? {} : { traffic: metrics, trafficMode: mode }),
        threads,
      });
      await router.apply([route]);
      return { name: mode, port: router.port, pid: () => router.health.pid, router, metrics };
    }),
  );
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
  const all = [{ name: 'plain', port: plainPort, pid: () => plain.pid }, ...driven];
  const got = new Map(all.map((v) => [v.name, { ratio: [] as number[], hap: [] as number[], reader: [] as number[] }]));
  const loads: string[] = [];
  const range = (xs: number[], d = 1): string => `${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)}`;
  try {
    for (let i = 0; i < rounds; i++) {
      // The order rotates: no variant always runs first (or last) in a round.
      const order = all.map((_, k) => all[(k + i) % all.length]!);
      const res = new Map<string, Awaited<ReturnType<typeof measure>>>();
      for (const v of order) res.set(v.name, await measure(v.port, v.pid()));
      loads.push(readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '));
      const p = res.get('plain')!;
      const parts: string[] = [];
      for (const v of all) {
        const m = res.get(v.name)!;
        const g = got.get(v.name)!;
        g.ratio.push(m.rps / p.rps);
        g.hap.push(m.hapUs);
        g.reader.push(m.readerUs);
        parts.push(
          `${v.name} ${m.rps.toFixed(0)} req/s (${(m.rps / p.rps).toFixed(3)}, p50 ${m.p50}, non-2xx ${m.errors}, ${m.hapUs.toFixed(1)} µs)`,
        );
      }
      console.log(`round ${i + 1}: ${parts.join(' | ')} | load ${loads[i]}`);
    }
    await new Promise((r) => setTimeout(r, 2_500)); // one more read of the counters
    console.log(`threads ${threads}; load average after each round: ${loads.join(' | ')}`);
    for (const v of driven) {
      const g = got.get(v.name)!;
      const counted = v.metrics.traffic(600_000, 'bench').reduce((n, t) => n + t.summary.requests, 0);
      console.log(
        `${v.name}: req/s ratio to plain ${range(g.ratio, 3)}; CPU µs per request: HAProxy ${range(g.hap)}` +
          (v.name === 'off' ? '' : ` + ${range(g.reader)} in this process (the router's part); counted ${counted} requests`),
      );
    }
    console.log(`plain: CPU µs per request ${range(got.get('plain')!.hap)} (goal: pilot-driven ≥ 0.95× plain's req/s)`);
  } finally {
    plain.kill('SIGTERM');
    upstream.kill('SIGTERM');
    await Promise.all(driven.map((v) => v.router.close()));
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
