/**
 * Artifact repository throughput: upload and download a 100 MB random blob through the real
 * routes and ArtifactClient on 127.0.0.1, three times each, and print the median MB/s. When nginx
 * is installed, the same blob is served by a temporary nginx and downloaded by the same client,
 * as a yardstick for what the disk + loopback + client can do.
 *
 *   npx tsc -p . && node dist/bench/artifact-throughput.js
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import Fastify from 'fastify';
import { FsBlobStore } from '../src/artifacts/blob-store.js';
import { ArtifactClient } from '../src/artifacts/client.js';
import { installErrorHandling } from '../src/control/http-errors.js';
import { MemoryArtifactMetaStore } from '../src/artifacts/meta.js';
import { registerArtifactRoutes } from '../src/artifacts/routes.js';
import { allocatePort } from '../src/os/ports.js';

const MB = 1024 * 1024;
const SIZE = 100 * MB;
const RUNS = 3;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (xs: number[]): string => `${median(xs).toFixed(0)} MB/s (runs: ${xs.map((x) => x.toFixed(0)).join(', ')})`;

async function timed(f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await f();
  return SIZE / MB / ((performance.now() - t0) / 1000);
}

/** Write SIZE random bytes to file and return their digest. */
async function makeBlob(file: string): Promise<string> {
  const hash = createHash('sha256');
  const fh = await open(file, 'w');
  try {
    for (let i = 0; i < SIZE / MB; i++) {
      const chunk = randomBytes(MB);
      hash.update(chunk);
      await fh.write(chunk);
    }
  } finally {
    await fh.close();
  }
  return `sha256:${hash.digest('hex')}`;
}

async function downloads(client: ArtifactClient, digest: string, work: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const dest = join(work, `download-${i}`);
    out.push(await timed(() => client.download(digest, dest)));
    await rm(dest, { force: true });
  }
  return out;
}

async function waitForPort(port: number, child: ChildProcess, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`nginx exited with code ${child.exitCode}`);
    const ok = await new Promise<boolean>((res) => {
      const sock = connect(port, '127.0.0.1', () => {
        sock.destroy();
        res(true);
      });
      sock.on('error', () => res(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nginx did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
}

function nginxConf(prefix: string, storeRoot: string, port: number): string {
  const tmp = (name: string): string => `${name}_temp_path ${join(prefix, 'tmp', name)};`;
  return `daemon off;
worker_processes 1;
pid ${join(prefix, 'nginx.pid')};
error_log ${join(prefix, 'error.log')} warn;
${process.getuid?.() === 0 ? 'user root root; # the blob store folder is private to its owner' : ''}
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  ${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(tmp).join('\n  ')}
  server {
    listen 127.0.0.1:${port};
    location ~ "^/api/v1/artifacts/sha256:([a-f0-9]{64})$" {
      alias ${join(storeRoot, 'sha256')}/$1;
      add_header x-pilot-digest "sha256:$1";
    }
  }
}
`;
}

async function benchNginx(storeRoot: string, digest: string, work: string): Promise<number[] | string> {
  if (spawnSync('nginx', ['-v']).error !== undefined) return 'not installed (apt-get install -y nginx)';
  const prefix = join(work, 'nginx');
  await mkdir(join(prefix, 'tmp'), { recursive: true });
  const port = await allocatePort('127.0.0.1');
  const conf = join(prefix, 'nginx.conf');
  await writeFile(conf, nginxConf(prefix, storeRoot, port));
  const child = spawn('nginx', ['-p', prefix, '-e', join(prefix, 'error.log'), '-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = once(child, 'exit');
  try {
    await waitForPort(port, child);
    return await downloads(new ArtifactClient(`http://127.0.0.1:${port}`, 'bench'), digest, work);
  } finally {
    // SIGTERM to the master (by its pid) is nginx's fast shutdown; it takes its workers with it.
    if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGTERM');
    await exited;
  }
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'pilot-bench-artifacts-'));
  const app = Fastify({ logger: false, bodyLimit: MB });
  try {
    const file = join(work, 'blob.bin');
    const digest = await makeBlob(file);
    const storeRoot = join(work, 'store');
    const blobs = new FsBlobStore(storeRoot);
    installErrorHandling(app);
    registerArtifactRoutes(app, { blobs, meta: new MemoryArtifactMetaStore(), maxBytes: 1024 * MB });
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    const client = new ArtifactClient(url, 'bench');

    const up: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      await rm(blobs.path(digest), { force: true }); // each run must really send the bytes
      up.push(
        await timed(async () => {
          const r = await client.upload(file, digest);
          if (!r.uploaded) throw new Error('upload was skipped');
        }),
      );
    }
    const down = await downloads(client, digest, work);
    console.log(`artifact throughput, ${SIZE / MB} MB random blob, ${RUNS} runs, MB = 2^20 bytes, 127.0.0.1, Node ${process.version}`);
    console.log(`pilot upload   (PUT, verified, fsynced): ${fmt(up)}`);
    console.log(`pilot download (GET, client verifies):   ${fmt(down)}`);

    const nginx = await benchNginx(storeRoot, digest, work);
    if (typeof nginx === 'string') {
      console.log(`nginx: skipped, ${nginx}`);
    } else {
      console.log(`nginx download (same client, verifies):  ${fmt(nginx)}`);
      console.log(`pilot/nginx download ratio: ${(median(down) / median(nginx)).toFixed(2)}`);
    }
  } finally {
    await app.close();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
