/**
 * Pilot-driven HAProxy (src/haproxy: generated config, Runtime API, host map, pin and forwarding
 * rules) against a plain HAProxy with a minimal hand-written config, on the same upstream, with wrk
 * (1 thread, c=50, keep-alive), interleaved rounds. Goal: ≥ 0.95× plain's requests/s.
 *
 *   npm run build && node dist/bench/haproxy.js [seconds=5] [rounds=3]
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { HaproxyRouter } from '../src/haproxy/haproxy-router.js';
import { allocatePort } from '../src/os/ports.js';

const seconds = Number(process.argv[2] ?? 5);
const rounds = Number(process.argv[3] ?? 3);
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

async function main(): Promise<void> {
  const body = Buffer.from('hello from the bench upstream\n');
  const upstream = http.createServer((_req, res) =>
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length }).end(body),
  );
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const upPort = (upstream.address() as AddressInfo).port;
  const dir = mkdtempSync(join(tmpdir(), 'pilot-bench-haproxy-'));
  const pilot = await HaproxyRouter.start({ dir: join(dir, 'pilot'), host: '127.0.0.1', port: 0, log: pino({ level: 'silent' }) });
  await pilot.apply([
    { app: 'bench', hosts: [HOST], backends: [{ revision: 1, weight: 100, upstreams: [{ id: 'b1', host: '127.0.0.1', port: upPort }] }] },
  ]);
  const plainPort = await allocatePort('127.0.0.1');
  writeFileSync(
    join(dir, 'plain.cfg'),
    [
      'defaults',
      '  mode http',
      '  option http-keep-alive',
      '  timeout connect 5s',
      '  timeout client 1m',
      '  timeout server 1m',
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
  try {
    for (let i = 0; i < rounds; i++) {
      const p = await wrk(plainPort);
      const d = await wrk(pilot.port);
      ratios.push(d.rps / p.rps);
      console.log(
        `round ${i + 1}: plain ${p.rps.toFixed(0)} req/s (p50 ${p.p50}, p99 ${p.p99}, non-2xx ${p.errors}) | ` +
          `pilot-driven ${d.rps.toFixed(0)} req/s (p50 ${d.p50}, p99 ${d.p99}, non-2xx ${d.errors}) | ratio ${(d.rps / p.rps).toFixed(3)}`,
      );
    }
    console.log(`ratio pilot-driven / plain: ${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)} (goal ≥ 0.95)`);
  } finally {
    plain.kill('SIGTERM');
    await pilot.close();
    upstream.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
