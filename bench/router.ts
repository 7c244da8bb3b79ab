/**
 * Router benchmark: requests/s and p50/p99 latency of a small GET through the Pilot router, against
 * the same upstream directly (the floor) and through nginx as a keep-alive reverse proxy (the peer),
 * with CONCURRENCY keep-alive clients for DURATION seconds. Upstream, router and nginx each run in
 * their own process; the load generator runs here. The ratio printed is Pilot over nginx.
 *
 * The Pilot router runs twice, side by side: recording into the traffic windows (what it does) and
 * through the old per-request prom-client counter and histogram (legacy-prom-metrics.ts), measured
 * alternately (new, old, new, old) so that a noisy machine favours neither. Before the load, the
 * recording cost alone is timed in this process: ns per request for each path.
 *
 * Load generators: an undici loop (always), and wrk as well when it is installed (a C generator
 * takes less CPU from the proxies on a small machine). nginx runs with one worker, like the
 * single-threaded router; it is skipped, and said so, when not installed.
 *
 *   npm run build && node dist/bench/router.js [seconds=5] [concurrency=32]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { RouterMetrics } from '../src/router/metrics.js';
import { startRouter } from '../src/router/proxy.js';
import { LegacyPromMetrics } from './legacy-prom-metrics.js';
import { RoutingTable } from '../src/router/routing-table.js';
import { waitListening } from './net-util.js';
import { allocatePort } from '../src/os/ports.js';

const HOST = 'bench.localhost';
const BODY = 'hello from the upstream\n';

interface Result {
  /** CPU time of the proxy process per request (µs), when its pid is known: steadier than req/s on a loaded machine. */
  readonly cpuUs?: number;
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
}

// ---- child roles: `--role upstream` and `--role router <upstreamPort> [windows|prom-client]` print {"port":N} and serve.

async function role(name: string, arg: string | undefined, variant = 'windows'): Promise<void> {
  let port: number;
  if (name === 'upstream') {
    const server = http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(BODY) });
      res.end(BODY);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as net.AddressInfo).port;
  } else {
    const table = new RoutingTable();
    table.set([
      {
        app: 'bench',
        hosts: [HOST],
        backends: [{ revision: 1, weight: 100, upstreams: [{ id: 'bench-1', host: '127.0.0.1', port: Number(arg) }] }],
      },
    ]);
    const metrics = variant === 'prom-client' ? new LegacyPromMetrics() : new RouterMetrics();
    port = (await startRouter({ host: '127.0.0.1', port: 0, table, metrics })).port;
  }
  process.stdout.write(`${JSON.stringify({ port })}\n`);
}

function spawnRole(args: string[]): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--role', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${args[0]} exited with ${code}`)));
    child.stdout!.once('data', (c: Buffer) => resolve({ child, port: (JSON.parse(c.toString()) as { port: number }).port }));
  });
}

/** nginx with its own prefix and config, one worker, keep-alive to the upstream; undefined if absent. */
async function startNginx(upstreamPort: number): Promise<{ child: ChildProcess; port: number; dir: string } | undefined> {
  if (spawnSync('nginx', ['-v']).error !== undefined) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'pilot-bench-nginx-'));
  mkdirSync(join(dir, 'tmp'));
  const port = await allocatePort('127.0.0.1');
  writeFileSync(
    join(dir, 'nginx.conf'),
    `
daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body; proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fcgi; uwsgi_temp_path ${dir}/tmp/uwsgi; scgi_temp_path ${dir}/tmp/scgi;
  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
    }
  }
}
`,
  );
  const child = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: 'inherit' });
  await waitListening(port);
  return { child, port, dir };
}

const TICK_MS = 1000 / Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100);
/** CPU time (user + system, ms) a process has used so far, from /proc/PID/stat; NaN when unreadable. */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS; // utime, stime (fields 14 and 15)
  } catch {
    return NaN;
  }
}

const percentile = (sorted: Float64Array, p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;

/** CONCURRENCY undici loops over one keep-alive pool for `seconds` (after a 1 s warm-up). */
async function undiciLoad(port: number, seconds: number, concurrency: number, pid?: number): Promise<Result> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: concurrency, pipelining: 1 });
  let samples = new Float64Array(1 << 20);
  let n = 0;
  let errors = 0;
  let recording = false;
  let stop = false;
  const worker = async () => {
    while (!stop) {
      const t0 = performance.now();
      try {
        const res = await pool.request({ path: '/', method: 'GET', headers: { host: HOST } });
        await res.body.dump();
        if (res.statusCode !== 200) errors++;
      } catch {
        errors++;
      }
      if (!recording) continue;
      if (n === samples.length) {
        const bigger = new Float64Array(samples.length * 2);
        bigger.set(samples);
        samples = bigger;
      }
      samples[n++] = performance.now() - t0;
    }
  };
  const workers = Array.from({ length: concurrency }, worker);
  await new Promise((r) => setTimeout(r, 1_000));
  recording = true;
  errors = 0;
  const t0 = performance.now();
  const cpu0 = cpuMs(pid);
  await new Promise((r) => setTimeout(r, seconds * 1_000));
  recording = false;
  const cpu = cpuMs(pid) - cpu0;
  const elapsed = (performance.now() - t0) / 1_000;
  stop = true;
  await Promise.all(workers);
  await pool.close();
  const sorted = samples.subarray(0, n).sort();
  return {
    rps: n / elapsed,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    errors,
    ...(Number.isFinite(cpu) ? { cpuUs: (cpu * 1000) / n } : {}),
  };
}

/** The same measurement with wrk (1 thread); undefined when wrk is not installed. */
function wrkLoad(port: number, seconds: number, concurrency: number, pid?: number): Result | undefined {
  const cpu0 = cpuMs(pid);
  const r = spawnSync(
    'wrk',
    ['-t1', `-c${concurrency}`, `-d${seconds}s`, '--latency', '-H', `Host: ${HOST}`, `http://127.0.0.1:${port}/`],
    { encoding: 'utf8' },
  );
  if (r.error !== undefined || r.status !== 0) return undefined;
  const ms = (label: string): number => {
    const m = new RegExp(`^\\s*${label}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(r.stdout);
    if (m === null) return NaN;
    return Number(m[1]) * ({ us: 0.001, ms: 1, s: 1000 } as Record<string, number>)[m[2]!]!;
  };
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? NaN);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(r.stdout)?.[1] ?? 0);
  const sockErr = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(r.stdout);
  const errors = non2xx + (sockErr === null ? 0 : sockErr.slice(1).reduce((s, x) => s + Number(x), 0));
  const cpu = cpuMs(pid) - cpu0;
  const total = Number(/(\d+) requests in/.exec(r.stdout)?.[1] ?? NaN);
  return { rps, p50: ms('50'), p99: ms('99'), errors, ...(Number.isFinite(cpu) && total > 0 ? { cpuUs: (cpu * 1000) / total } : {}) };
}

const NEW = 'Pilot router (windows)';
const OLD = 'Pilot router (prom-client, old)';

/** The recording alone, in this process: ns per request for the old labelled calls and the new recorder. */
function recordingCost(): void {
  const n = 2_000_000;
  const upstream = { id: 'bench-1', app: 'bench', revision: 7, host: '127.0.0.1', port: 1 };
  const codes = [200, 200, 200, 200, 200, 200, 200, 404, 500, 302];
  const time = (label: string, once: (i: number) => void): number => {
    for (let i = 0; i < 200_000; i++) once(i); // warm up the JIT
    const t0 = performance.now();
    for (let i = 0; i < n; i++) once(i);
    const ns = ((performance.now() - t0) * 1e6) / n;
    console.log(`  recording cost, ${label.padEnd(34)} ${ns.toFixed(0).padStart(5)} ns/request`);
    return ns;
  };
  const legacy = new LegacyPromMetrics();
  const windows = new RouterMetrics();
  // The old exchange called this at the end of each request.
  const oldNs = time('prom-client labels (old)', (i) =>
    legacy.request(upstream.app, upstream.revision, codes[i % 10]!, (0.3 + (i % 50) / 10) / 1000),
  );
  // The exchange asks for the recorder when it picks the upstream, then records on it.
  const newNs = time('traffic windows (revision recorder)', (i) =>
    windows.revision(upstream).record(codes[i % 10]!, 0.3 + (i % 50) / 10, i / 1000),
  );
  console.log(`  recording cost ratio windows/prom-client: ${(newNs / oldNs).toFixed(2)}x`);
}

function row(name: string, r: Result): string {
  return `  ${name.padEnd(31)} ${r.rps.toFixed(0).padStart(8)} req/s   p50 ${r.p50.toFixed(2).padStart(6)} ms   p99 ${r.p99.toFixed(2).padStart(6)} ms   errors ${r.errors}${r.cpuUs === undefined ? '' : `   router CPU ${r.cpuUs.toFixed(1).padStart(5)} µs/req`}`;
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 5);
  const concurrency = Number(process.argv[3] ?? 32);
  const children: ChildProcess[] = [];
  let nginxDir: string | undefined;
  try {
    const upstream = await spawnRole(['upstream']);
    children.push(upstream.child);
    const pilot = await spawnRole(['router', String(upstream.port), 'windows']);
    children.push(pilot.child);
    const legacy = await spawnRole(['router', String(upstream.port), 'prom-client']);
    children.push(legacy.child);
    const nginx = await startNginx(upstream.port);
    if (nginx !== undefined) {
      children.push(nginx.child);
      nginxDir = nginx.dir;
    }
    // New and old alternate, twice each: the figures compared are the better run of each.
    const targets: [string, number, number?][] = [
      ['direct to upstream', upstream.port],
      [NEW, pilot.port, pilot.child.pid],
      [OLD, legacy.port, legacy.child.pid],
      [NEW, pilot.port, pilot.child.pid],
      [OLD, legacy.port, legacy.child.pid],
    ];
    if (nginx !== undefined) targets.push(['through nginx (1 wkr)', nginx.port]);

    console.log(
      `router bench: GET of ${BODY.length} bytes, ${concurrency} keep-alive clients, ${seconds} s per target, ${cpus().length} CPUs, Node ${process.version}`,
    );
    recordingCost();
    if (nginx === undefined) console.log('  nginx: SKIPPED (not installed; `apt-get install -y nginx` to compare)');
    const generators: [string, (port: number, pid?: number) => Promise<Result | undefined>][] = [
      ['undici loop (this process)', (port, pid) => undiciLoad(port, seconds, concurrency, pid)],
      ['wrk -t1', async (port, pid) => wrkLoad(port, seconds, concurrency, pid)],
    ];
    for (const [generator, load] of generators) {
      console.log(`\nload generator: ${generator}`);
      const results = new Map<string, Result>();
      const cpu = new Map<string, number>();
      for (const [name, port, pid] of targets) {
        const r = await load(port, pid);
        if (r?.cpuUs !== undefined) cpu.set(name, Math.min(cpu.get(name) ?? Infinity, r.cpuUs));
        if (r === undefined) {
          console.log('  SKIPPED (wrk not installed)');
          break;
        }
        const had = results.get(name);
        if (had === undefined || r.rps > had.rps) results.set(name, r);
        console.log(row(name, r));
      }
      const p = results.get(NEW);
      const old = results.get(OLD);
      if (p !== undefined && old !== undefined) {
        console.log(
          `  windows/prom-client (best of 2 each): throughput ${(p.rps / old.rps).toFixed(3)}x, p50 ${(p.p50 / old.p50).toFixed(2)}x, p99 ${(p.p99 / old.p99).toFixed(2)}x`,
        );
        const c = cpu.get(NEW);
        const o = cpu.get(OLD);
        if (c !== undefined && o !== undefined)
          console.log(
            `  router CPU per request (lowest of 2 each): windows ${c.toFixed(1)} µs, prom-client ${o.toFixed(1)} µs: ${(c / o).toFixed(3)}x`,
          );
      }
      const n = results.get('through nginx (1 wkr)');
      if (p !== undefined && n !== undefined) {
        console.log(
          `  Pilot/nginx: throughput ${(p.rps / n.rps).toFixed(2)}x, p50 ${(p.p50 / n.p50).toFixed(2)}x, p99 ${(p.p99 / n.p99).toFixed(2)}x`,
        );
      }
    }
  } finally {
    // Each child by its own pid; nginx's master stops its worker on SIGTERM.
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((r) => {
            if (c.exitCode !== null || c.signalCode !== null) return r();
            c.removeAllListeners('exit');
            c.once('exit', () => r());
            process.kill(c.pid!, 'SIGTERM');
          }),
      ),
    );
    if (nginxDir !== undefined) rmSync(nginxDir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--role') await role(process.argv[3]!, process.argv[4], process.argv[5]);
else await main();
