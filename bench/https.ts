/**
 * HTTPS benchmark: new TLS handshakes per second and keep-alive requests per second over HTTPS,
 * through the Pilot router (its HTTPS listener), Pilot-driven HAProxy (one thread, its certificate
 * given through the Runtime API as in `pilot up --router haproxy`) and nginx (one worker, `ssl`), with the same
 * certificate (EC P-256), the same protocols (TLS 1.2–1.3) and cipher list, the same upstream.
 * Upstream, router and nginx each run in their own process; the load runs here (Node's TLS client),
 * rounds interleaved (Pilot, nginx, Pilot, nginx) so that a noisy machine favours neither; the
 * figures are printed as the range over the rounds.
 *
 *   npm run build && node dist/bench/https.js [seconds=3] [concurrency=16] [rounds=2]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { HaproxyRouter } from '../src/haproxy/haproxy-router.js';
import { startRouter } from '../src/router/proxy.js';
import { RoutingTable } from '../src/router/routing-table.js';
import { CertificateStore, TLS_CIPHERS } from '../src/router/tls.js';
import { allocatePort } from '../src/os/ports.js';
import { waitListening } from './net-util.js';
import { selfSigned } from '../src/os/test-certs.js';

const HOST = 'bench.localhost';
const BODY = 'hello from the upstream\n';

async function role(name: string, args: string[]): Promise<void> {
  if (name === 'upstream') {
    const server = http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(BODY) });
      res.end(BODY);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    process.stdout.write(JSON.stringify({ port: (server.address() as net.AddressInfo).port }) + '\n');
    return;
  }
  const [upstreamPort, certFile, keyFile, haproxyDir] = args as [string, string, string, string];
  const routes = [
    {
      app: 'bench',
      hosts: [HOST],
      backends: [{ revision: 1, weight: 100, upstreams: [{ id: 'u1', host: '127.0.0.1', port: Number(upstreamPort) }] }],
    },
  ];
  if (name === 'haproxy') {
    const { pino } = await import('pino');
    const r = await HaproxyRouter.start({
      dir: haproxyDir,
      host: '127.0.0.1',
      port: 0,
      https: { port: 0 },
      threads: 1,
      log: pino({ level: 'warn' }),
    });
    await r.apply(routes);
    await r.setTls({
      certs: [{ host: HOST, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') }],
      policies: {},
      challenges: {},
    });
    process.once('SIGTERM', () => void r.close().finally(() => process.exit(0)));
    process.stdout.write(JSON.stringify({ port: r.httpsPort }) + '\n');
    return;
  }
  const table = new RoutingTable();
  table.set(routes);
  const certs = new CertificateStore();
  certs.set(HOST, readFileSync(certFile, 'utf8'), readFileSync(keyFile, 'utf8'));
  const router = await startRouter({ host: '127.0.0.1', port: 0, table, https: { port: 0, certs } });
  process.stdout.write(JSON.stringify({ port: router.httpsPort }) + '\n');
}

function child(args: string[]): Promise<{ child: ChildProcess; port: number }> {
  const c = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    c.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n')) resolve({ child: c, port: (JSON.parse(line!) as { port: number }).port });
    });
    c.once('exit', (code) => reject(new Error(`${args[1]} exited with ${code}`)));
  });
}

async function startNginx(
  upstreamPort: number,
  certFile: string,
  keyFile: string,
  dir: string,
): Promise<{ child: ChildProcess; port: number }> {
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
    listen 127.0.0.1:${port} ssl;
    server_name ${HOST};
    ssl_certificate ${certFile};
    ssl_certificate_key ${keyFile};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ${TLS_CIPHERS.split(':')
      .filter((c) => !c.startsWith('TLS_'))
      .join(':')};
    ssl_session_cache off;
    ssl_session_tickets off;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
  }
}
`,
  );
  const c = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: 'inherit' });
  await waitListening(port);
  return { child: c, port };
}

/** Full handshakes (no resumption) per second: `concurrency` loops of connect, handshake, close. */
async function handshakes(port: number, ca: string, seconds: number, concurrency: number): Promise<{ perSec: number; errors: number }> {
  let done = 0;
  let errors = 0;
  const end = Date.now() + seconds * 1000;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port, servername: HOST, ca, session: undefined });
      s.once('secureConnect', () => {
        done++;
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        errors++;
        s.destroy();
        resolve();
      });
    });
  const start = Date.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) await one();
    }),
  );
  return { perSec: done / ((Date.now() - start) / 1000), errors };
}

/** Keep-alive GETs per second over `concurrency` HTTPS connections. */
async function requests(port: number, ca: string, seconds: number, concurrency: number): Promise<{ perSec: number; errors: number }> {
  const pool = new Pool(`https://127.0.0.1:${port}`, { connections: concurrency, pipelining: 1, connect: { servername: HOST, ca } });
  let done = 0;
  let errors = 0;
  const end = Date.now() + seconds * 1000;
  const start = Date.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) {
        try {
          const res = await pool.request({ path: '/', method: 'GET', headers: { host: HOST } });
          const text = await res.body.text();
          if (res.statusCode === 200 && text === BODY) done++;
          else errors++;
        } catch {
          errors++;
        }
      }
    }),
  );
  const perSec = done / ((Date.now() - start) / 1000);
  await pool.close();
  return { perSec, errors };
}

const range = (xs: number[]): string => {
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return lo === hi ? lo.toFixed(0) : `${lo.toFixed(0)}–${hi.toFixed(0)}`;
};

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 3);
  const concurrency = Number(process.argv[3] ?? 16);
  const rounds = Number(process.argv[4] ?? 2);
  const dir = mkdtempSync(join(tmpdir(), 'pilot-bench-https-'));
  const children: ChildProcess[] = [];
  try {
    const { certFile, keyFile, cert: ca } = selfSigned(dir, 'bench', [HOST], 2);
    const upstream = await child(['--role', 'upstream']);
    children.push(upstream.child);
    const pilot = await child(['--role', 'router', String(upstream.port), certFile, keyFile]);
    children.push(pilot.child);
    const targets: [string, number][] = [['pilot router', pilot.port]];
    if (spawnSync('/usr/sbin/haproxy', ['-v']).error === undefined) {
      const haproxy = await child(['--role', 'haproxy', String(upstream.port), certFile, keyFile, join(dir, 'haproxy')]);
      children.push(haproxy.child);
      targets.push(['pilot haproxy', haproxy.port]);
    } else console.log('haproxy: SKIPPED (not installed)');
    if (spawnSync('nginx', ['-v']).error === undefined) {
      const nginx = await startNginx(upstream.port, certFile, keyFile, dir);
      children.push(nginx.child);
      targets.push(['nginx (1 wkr)', nginx.port]);
    } else console.log('nginx: SKIPPED (not installed)');
    console.log(`HTTPS, ${seconds} s per measure, ${concurrency} clients, ${rounds} interleaved rounds, EC P-256, no session resumption`);
    const figures = new Map<string, { hs: number[]; rps: number[]; errors: number }>();
    for (let r = 0; r < rounds; r++) {
      for (const [name, port] of targets) {
        const f = figures.get(name) ?? { hs: [], rps: [], errors: 0 };
        const h = await handshakes(port, ca, seconds, concurrency);
        const q = await requests(port, ca, seconds, concurrency);
        f.hs.push(h.perSec);
        f.rps.push(q.perSec);
        f.errors += h.errors + q.errors;
        figures.set(name, f);
      }
    }
    for (const [name, f] of figures)
      console.log(
        `  ${name.padEnd(14)} handshakes/s ${range(f.hs).padStart(11)}   req/s ${range(f.rps).padStart(11)}   errors ${f.errors}`,
      );
    const n = figures.get('nginx (1 wkr)');
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    for (const [label, name] of [
      ['Pilot', 'pilot router'],
      ['HAProxy', 'pilot haproxy'],
    ] as const) {
      const p = figures.get(name);
      if (p && n)
        console.log(
          `  ${label}/nginx: handshakes ${(mean(p.hs) / mean(n.hs)).toFixed(2)}x, requests ${(mean(p.rps) / mean(n.rps)).toFixed(2)}x`,
        );
    }
  } finally {
    // SIGTERM, then wait: the HAProxy role stops its HAProxy before it exits.
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.pid === undefined || c.exitCode !== null) return resolve();
            const t = setTimeout(() => {
              c.kill('SIGKILL');
              resolve();
            }, 15_000);
            c.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
            process.kill(c.pid, 'SIGTERM');
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--role') await role(process.argv[3]!, process.argv.slice(4));
else await main();
