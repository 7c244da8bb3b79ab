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
 *
 * Side by side (issue #14): `node dist/bench/router.js --side-by-side [rounds=4] [seconds=3]`
 * measures, with wrk, the router against nginx on the same upstream in interleaved rounds (the
 * order rotates every round): req/s at c=50, p50/p99 at c=1 and c=50, and the CPU each proxy
 * spends per request; 1 worker each, then 2 vs 2 (the router's 2 workers are a bench-only
 * node:cluster of two routers sharing the port: the product runs one). It prints every round,
 * then ranges: never a single number on a shared machine.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import cluster from 'node:cluster';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool, type Dispatcher } from 'undici';
import { RouterMetrics } from '../src/router/metrics.js';
import { startRouter } from '../src/router/proxy.js';
import { LegacyPromMetrics } from './legacy-prom-metrics.js';
import { RoutingTable } from '../src/router/routing-table.js';
import { waitListening } from './net-util.js';
import { allocatePort } from '../src/os/ports.js';
import { pino } from 'pino';
import { DEFAULT_HAPROXY_BIN, HaproxyRouter } from '../src/haproxy/haproxy-router.js';

const HAPROXY = process.env['PILOT_HAPROXY_BIN'] ?? DEFAULT_HAPROXY_BIN;

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
  } else if (name.startsWith('floor-')) {
    port = await floorProxy(name, Number(arg));
  } else if (name === 'router-cluster' || name === 'router-cluster-fast') {
    // Bench only: N routers in worker processes sharing one listening port (node:cluster hands
    // out connections round-robin), each with the same table.
    const workers = Number(variant);
    const fork = (): Promise<number> =>
      new Promise((resolve) =>
        cluster
          .fork({ PILOT_BENCH_UPSTREAM: arg, PILOT_ROUTER_ENGINE: name === 'router-cluster-fast' ? 'fast' : 'node' })
          .once('message', (m: { port: number }) => resolve(m.port)),
      );
    const first = await fork();
    for (let i = 1; i < workers; i++) await fork();
    port = first;
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
    // 'fast': the experimental fast engine (fast-path.ts); otherwise node:http, whatever PILOT_ROUTER_ENGINE says.
    const engine = variant === 'fast' ? 'fast' : 'node';
    port = (await startRouter({ host: '127.0.0.1', port: 0, table, metrics, engine })).port;
  }
  process.stdout.write(`${JSON.stringify({ port })}\n`);
}

function spawnRole(args: string[], script = fileURLToPath(import.meta.url)): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [script, '--role', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${args[0]} exited with ${code}`)));
    child.stdout!.once('data', (c: Buffer) => resolve({ child, port: (JSON.parse(c.toString()) as { port: number }).port }));
  });
}

/** A plain HAProxy with a minimal hand-written config (keep-alive both sides) and `threads` threads; undefined if absent. */
async function startPlainHaproxy(
  upstreamPort: number,
  threads: number,
): Promise<{ child: ChildProcess; port: number; dir: string } | undefined> {
  if (spawnSync(HAPROXY, ['-v']).error !== undefined) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'pilot-bench-haproxy-'));
  const port = await allocatePort('127.0.0.1');
  writeFileSync(
    join(dir, 'plain.cfg'),
    [
      'global',
      `  nbthread ${threads}`,
      'defaults',
      '  mode http',
      '  option http-keep-alive',
      '  timeout connect 5s',
      '  timeout client 1m',
      '  timeout server 1m',
      'frontend f',
      `  bind 127.0.0.1:${port}`,
      '  option forwardfor',
      '  default_backend b',
      'backend b',
      `  server s1 127.0.0.1:${upstreamPort}`,
      '',
    ].join('\n'),
  );
  const child = spawn(HAPROXY, ['-f', join(dir, 'plain.cfg')], { stdio: 'inherit' });
  await waitListening(port);
  return { child, port, dir };
}

/** HAProxy as Pilot drives it (src/haproxy: generated config, host map, pins, forwarding rules), `threads` threads. */
async function startPilotHaproxy(upstreamPort: number, threads: number): Promise<{ router: HaproxyRouter; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-bench-pilot-haproxy-'));
  const router = await HaproxyRouter.start({ dir, host: '127.0.0.1', port: 0, log: pino({ level: 'silent' }), threads });
  await router.apply([
    {
      app: 'bench',
      hosts: [HOST],
      backends: [{ revision: 1, weight: 100, upstreams: [{ id: 'bench-1', host: '127.0.0.1', port: upstreamPort }] }],
    },
  ]);
  await waitListening(router.port);
  return { router, dir };
}

/** nginx with its own prefix and config, one worker, keep-alive to the upstream; undefined if absent. */
async function startNginx(upstreamPort: number, workers = 1): Promise<{ child: ChildProcess; port: number; dir: string } | undefined> {
  if (spawnSync('nginx', ['-v']).error !== undefined) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'pilot-bench-nginx-'));
  mkdirSync(join(dir, 'tmp'));
  const port = await allocatePort('127.0.0.1');
  writeFileSync(
    join(dir, 'nginx.conf'),
    `
daemon off;
worker_processes ${workers};
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

/**
 * Floors, bench only (PILOT_BENCH_FLOORS=1): the least a Node proxy can do per request on a
 * node:http server, with three upstream clients and none of the router's features (no routing,
 * header rules, retries, timeouts, metrics; content-length responses only for `floor-raw`).
 * They answer what the router's CPU per request could become at best, and which client costs least.
 */
async function floorProxy(kind: string, upstreamPort: number): Promise<number> {
  let handler: http.RequestListener;
  if (kind === 'floor-undici') {
    const pool = new Pool(`http://127.0.0.1:${upstreamPort}`, { pipelining: 1 });
    handler = (req, res) => {
      const h: Dispatcher.DispatchHandler = {
        onConnect: () => {},
        onHeaders: (status: number, raw: Buffer[]) => {
          const out: string[] = [];
          for (let i = 0; i < raw.length; i += 2) out.push(raw[i]!.toString('latin1'), raw[i + 1]!.toString('latin1'));
          res.writeHead(status, out);
          return true;
        },
        onData: (c: Buffer) => res.write(c),
        onComplete: () => res.end(),
        onError: () => res.destroy(),
      };
      pool.dispatch({ path: req.url!, method: req.method!, headers: req.rawHeaders, body: null }, h);
    };
  } else if (kind === 'floor-http') {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
    handler = (req, res) => {
      http
        .request({ host: '127.0.0.1', port: upstreamPort, path: req.url, method: req.method, headers: req.headers, agent }, (up) => {
          res.writeHead(up.statusCode!, up.rawHeaders);
          up.pipe(res);
        })
        .on('error', () => res.destroy())
        .end();
    };
  } else {
    // A hand-written keep-alive pool: one string write per request, a minimal response parser.
    const idle: net.Socket[] = [];
    handler = (req, res) => {
      const socket = idle.pop() ?? net.connect(upstreamPort, '127.0.0.1').setNoDelay(true);
      let head = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) head += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      socket.write(`${head}\r\n`, 'latin1');
      let buf: Buffer | undefined;
      const onData = (chunk: Buffer): void => {
        buf = buf === undefined ? chunk : Buffer.concat([buf, chunk]);
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const lines = buf.toString('latin1', 0, end).split('\r\n');
        const out: string[] = [];
        let length = 0;
        for (let i = 1; i < lines.length; i++) {
          const colon = lines[i]!.indexOf(':');
          const name = lines[i]!.slice(0, colon);
          const value = lines[i]!.slice(colon + 1).trim();
          if (name.length === 14 && name.toLowerCase() === 'content-length') length = Number(value);
          out.push(name, value);
        }
        if (buf.length < end + 4 + length) return;
        socket.off('data', onData);
        res.writeHead(Number(lines[0]!.slice(9, 12)), out);
        res.end(buf.subarray(end + 4, end + 4 + length));
        idle.push(socket);
      };
      socket.on('data', onData);
    };
  }
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as net.AddressInfo).port;
}

/** Pids of a process's direct children (nginx's workers), from /proc. */
function childPids(pid: number | undefined): number[] {
  if (pid === undefined) return [];
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** wrk at `concurrency` for `seconds`, with the CPU of all `pids` (the proxy's processes) per request. */
function wrkRun(port: number, seconds: number, concurrency: number, pids: readonly number[]): Result | undefined {
  // The CPU of a proxy's processes is read around the run, so they cannot be missed (nginx starts its workers late).
  const sum = () => pids.reduce((s, p) => s + cpuMs(p), 0);
  const cpu0 = sum();
  const r = wrkLoad(port, seconds, concurrency);
  if (r === undefined) return undefined;
  const cpu = sum() - cpu0;
  return { ...r, ...(pids.length > 0 && Number.isFinite(cpu) ? { cpuUs: (cpu * 1000) / (r.rps * seconds) } : {}) };
}

interface Target {
  readonly name: string;
  readonly port: number;
  /** The processes that do the proxying, for CPU per request (for the upstream: its own, a bare node:http server's). */
  readonly pids: () => readonly number[];
}

const range = (xs: readonly number[], digits: number): string => {
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return lo.toFixed(digits) === hi.toFixed(digits) ? lo.toFixed(digits) : `${lo.toFixed(digits)}–${hi.toFixed(digits)}`;
};

/** Pilot vs nginx, same upstream, wrk, interleaved rounds (see the header comment). */
async function sideBySide(rounds: number, seconds: number): Promise<void> {
  if (spawnSync('wrk', ['-v']).error !== undefined) throw new Error('wrk is not installed: apt-get install -y wrk');
  const children: ChildProcess[] = [];
  const dirs: string[] = [];
  const haproxies: HaproxyRouter[] = [];
  try {
    const upstream = await spawnRole(['upstream']);
    children.push(upstream.child);
    const pilot1 = await spawnRole(['router', String(upstream.port), 'windows']);
    children.push(pilot1.child);
    const pilot2 = await spawnRole(['router-cluster', String(upstream.port), '2']);
    children.push(pilot2.child);
    const fast1 = await spawnRole(['router', String(upstream.port), 'fast']);
    children.push(fast1.child);
    const fast2 = await spawnRole(['router-cluster-fast', String(upstream.port), '2']);
    children.push(fast2.child);
    const nginx1 = await startNginx(upstream.port, 1);
    const nginx2 = await startNginx(upstream.port, 2);
    if (nginx1 === undefined || nginx2 === undefined) throw new Error('nginx is not installed: apt-get install -y nginx-light');
    children.push(nginx1.child, nginx2.child);
    dirs.push(nginx1.dir, nginx2.dir);
    const groups: Target[][] = [
      [
        { name: 'direct to upstream', port: upstream.port, pids: () => [upstream.child.pid!] },
        { name: 'Pilot router, 1 worker', port: pilot1.port, pids: () => [pilot1.child.pid!] },
        { name: 'nginx, 1 worker', port: nginx1.port, pids: () => childPids(nginx1.child.pid) },
        { name: 'Pilot fast engine, 1 w', port: fast1.port, pids: () => [fast1.child.pid!] },
      ],
      [
        { name: 'Pilot router, 2 workers', port: pilot2.port, pids: () => childPids(pilot2.child.pid) },
        { name: 'nginx, 2 workers', port: nginx2.port, pids: () => childPids(nginx2.child.pid) },
        { name: 'Pilot fast engine, 2 w', port: fast2.port, pids: () => childPids(fast2.child.pid) },
      ],
    ];
    // HAProxy, plain and as Pilot drives it (`router: haproxy`), 1 and 2 threads, in the same groups
    // (skipped, and said so, when HAProxy is not installed).
    const plain1 = await startPlainHaproxy(upstream.port, 1);
    const plain2 = await startPlainHaproxy(upstream.port, 2);
    if (plain1 === undefined || plain2 === undefined)
      console.log('HAProxy is not installed (apt-get install -y haproxy): its rows are left out');
    else {
      children.push(plain1.child, plain2.child);
      dirs.push(plain1.dir, plain2.dir);
      const driven1 = await startPilotHaproxy(upstream.port, 1);
      const driven2 = await startPilotHaproxy(upstream.port, 2);
      haproxies.push(driven1.router, driven2.router);
      dirs.push(driven1.dir, driven2.dir);
      groups[0]!.push(
        { name: 'HAProxy plain, 1 thread', port: plain1.port, pids: () => [plain1.child.pid!] },
        { name: 'HAProxy by Pilot, 1 thr', port: driven1.router.port, pids: () => childPids(driven1.router.health.pid) },
      );
      groups[1]!.push(
        { name: 'HAProxy plain, 2 threads', port: plain2.port, pids: () => [plain2.child.pid!] },
        { name: 'HAProxy by Pilot, 2 thr', port: driven2.router.port, pids: () => childPids(driven2.router.health.pid) },
      );
    }
    // Another build of this bench (PILOT_BENCH_BASELINE=/elsewhere/dist/bench/router.js): its
    // router joins the first group, to measure a change against what it replaces in one run.
    const baseline = process.env['PILOT_BENCH_BASELINE'];
    if (baseline !== undefined && baseline !== '') {
      const b = await spawnRole(['router', String(upstream.port), 'windows'], baseline);
      children.push(b.child);
      groups[0]!.push({ name: 'Pilot router, baseline', port: b.port, pids: () => [b.child.pid!] });
    }
    if (process.env['PILOT_BENCH_FLOORS'] === '1') {
      for (const kind of ['floor-undici', 'floor-http', 'floor-raw']) {
        const f = await spawnRole([kind, String(upstream.port)]);
        children.push(f.child);
        groups[0]!.push({ name: `${kind} (no features)`, port: f.port, pids: () => [f.child.pid!] });
      }
    }
    console.log(
      `router side by side: GET of ${BODY.length} bytes, wrk -t1, ${rounds} interleaved rounds of ${seconds} s per target and concurrency, ${cpus().length} CPUs, Node ${process.version}`,
    );
    const all = new Map<string, { c50: Result[]; c1: Result[] }>();
    const ratios = {
      rps1: [] as number[],
      rps2: [] as number[],
      fast1: [] as number[],
      fast2: [] as number[],
      addedFast: [] as number[],
      added: [] as number[],
      addedNginx: [] as number[],
      driven1: [] as number[],
      driven2: [] as number[],
      drivenNginx: [] as number[],
    };
    for (let round = 0; round < rounds; round++) {
      console.log(`round ${round + 1}`);
      const byName = new Map<string, { c50: Result; c1: Result }>();
      for (const group of groups) {
        // Rotate the order every round so that neither side always runs first (or after the other).
        const order = group.map((_, i) => group[(i + round) % group.length]!);
        for (const t of order) {
          wrkRun(t.port, 1, 50, []); // warm-up: connections, JIT
          const c50 = wrkRun(t.port, seconds, 50, t.pids())!;
          const c1 = wrkRun(t.port, seconds, 1, t.pids())!;
          byName.set(t.name, { c50, c1 });
          const entry = all.get(t.name) ?? { c50: [], c1: [] };
          entry.c50.push(c50);
          entry.c1.push(c1);
          all.set(t.name, entry);
          console.log(
            `  ${t.name.padEnd(24)} c=50 ${c50.rps.toFixed(0).padStart(6)} req/s p50 ${(c50.p50 * 1000).toFixed(0).padStart(5)} µs p99 ${(c50.p99 * 1000).toFixed(0).padStart(6)} µs` +
              `${c50.cpuUs === undefined ? '' : ` CPU ${c50.cpuUs.toFixed(1)} µs/req`}   c=1 p50 ${(c1.p50 * 1000).toFixed(0).padStart(4)} µs p99 ${(c1.p99 * 1000).toFixed(0).padStart(5)} µs errors ${c50.errors + c1.errors}`,
          );
        }
      }
      const g = (n: string) => byName.get(n)!;
      ratios.rps1.push(g('Pilot router, 1 worker').c50.rps / g('nginx, 1 worker').c50.rps);
      ratios.rps2.push(g('Pilot router, 2 workers').c50.rps / g('nginx, 2 workers').c50.rps);
      ratios.fast1.push(g('Pilot fast engine, 1 w').c50.rps / g('nginx, 1 worker').c50.rps);
      ratios.fast2.push(g('Pilot fast engine, 2 w').c50.rps / g('nginx, 2 workers').c50.rps);
      ratios.addedFast.push((g('Pilot fast engine, 1 w').c1.p50 - g('direct to upstream').c1.p50) * 1000);
      ratios.added.push((g('Pilot router, 1 worker').c1.p50 - g('direct to upstream').c1.p50) * 1000);
      ratios.addedNginx.push((g('nginx, 1 worker').c1.p50 - g('direct to upstream').c1.p50) * 1000);
      if (byName.has('HAProxy plain, 1 thread')) {
        ratios.driven1.push(g('HAProxy by Pilot, 1 thr').c50.rps / g('HAProxy plain, 1 thread').c50.rps);
        ratios.driven2.push(g('HAProxy by Pilot, 2 thr').c50.rps / g('HAProxy plain, 2 threads').c50.rps);
        ratios.drivenNginx.push(g('HAProxy by Pilot, 1 thr').c50.rps / g('nginx, 1 worker').c50.rps);
      }
    }
    console.log(`\nranges over ${rounds} rounds (min–max):`);
    for (const [name, r] of all) {
      const cpu = r.c50.flatMap((x) => (x.cpuUs === undefined ? [] : [x.cpuUs]));
      console.log(
        `  ${name.padEnd(24)} c=50 ${range(
          r.c50.map((x) => x.rps),
          0,
        )} req/s, p50 ${range(
          r.c50.map((x) => x.p50 * 1000),
          0,
        )} µs, p99 ${range(
          r.c50.map((x) => x.p99 * 1000),
          0,
        )} µs` +
          `${cpu.length === 0 ? '' : `, CPU ${range(cpu, 1)} µs/req`}; c=1 p50 ${range(
            r.c1.map((x) => x.p50 * 1000),
            0,
          )} µs, p99 ${range(
            r.c1.map((x) => x.p99 * 1000),
            0,
          )} µs`,
      );
    }
    console.log(`  Pilot/nginx req/s at c=50, 1 vs 1: ${range(ratios.rps1, 2)}x; 2 vs 2: ${range(ratios.rps2, 2)}x (per round)`);
    console.log(
      `  Pilot fast engine/nginx req/s at c=50, 1 vs 1: ${range(ratios.fast1, 2)}x; 2 vs 2: ${range(ratios.fast2, 2)}x (per round)`,
    );
    console.log(
      `  added p50 at c=1 over direct: Pilot ${range(ratios.added, 0)} µs, fast engine ${range(ratios.addedFast, 0)} µs, nginx ${range(ratios.addedNginx, 0)} µs (per round)`,
    );
    if (ratios.driven1.length > 0)
      console.log(
        `  Pilot-driven HAProxy / plain HAProxy req/s at c=50: 1 thread ${range(ratios.driven1, 2)}x, 2 threads ${range(ratios.driven2, 2)}x; Pilot-driven HAProxy (1 thread) / nginx (1 worker): ${range(ratios.drivenNginx, 2)}x`,
      );
  } finally {
    await Promise.all(haproxies.map((h) => h.close()));
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
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

if (cluster.isWorker) {
  const table = new RoutingTable();
  table.set([
    {
      app: 'bench',
      hosts: [HOST],
      backends: [
        { revision: 1, weight: 100, upstreams: [{ id: 'bench-1', host: '127.0.0.1', port: Number(process.env['PILOT_BENCH_UPSTREAM']) }] },
      ],
    },
  ]);
  // Port 0 in a cluster worker: the primary allocates one port and every worker shares it.
  const router = await startRouter({ host: '127.0.0.1', port: 0, table, metrics: new RouterMetrics() });
  process.send!({ port: router.port });
} else if (process.argv[2] === '--role') await role(process.argv[3]!, process.argv[4], process.argv[5]);
else if (process.argv[2] === '--side-by-side') await sideBySide(Number(process.argv[3] ?? 4), Number(process.argv[4] ?? 3));
else await main();
