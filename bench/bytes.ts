/**
 * Bytes: artifact upload and download through a real `pilot server` on 127.0.0.1, side by side
 * with what the machine itself does with the same 100 MB file, in interleaved rounds:
 *
 *   upload    ArtifactClient.upload (PUT, digest verified, fsynced)  vs  dd bs=1M conv=fsync
 *             into the same folder (the disk's own fsync'd speed, measured in the same round)
 *             and curl -T (the server alone, no client in this process) to `pilot server` and to a
 *             bare node:http receiver doing the same writes (bench/upload-receiver.ts); for each
 *             upload, the CPU time per MB of the receiving process (/proc/PID/stat), a figure
 *             that survives a loaded machine where throughput ratios do not
 *   download  ArtifactClient.download (the agent's path: digest verified while writing)
 *             from pilot and from a temporary nginx (sendfile on) serving the same blob file;
 *             and curl -o /dev/null from both (the server alone, no client-side hashing or disk)
 *
 * Each round runs every measurement once, in an order that rotates, so the machine's noise (2
 * shared cores, a shared disk) falls on all of them alike; ratios are per round, then the range.
 *
 *   npm run build && node dist/bench/bytes.js [rounds=5] [MB=100]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdir, open, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { ArtifactClient } from '../src/artifacts/client.js';
import { allocatePort } from '../src/os/ports.js';
import { Harness, tempDir } from '../test/integration/harness.js';

const ROUNDS = Number(process.argv[2] ?? 5);
const MB = 1024 * 1024;
const SIZE = Number(process.argv[3] ?? 100) * MB;

type Figures = Record<string, number[]>;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const range = (xs: number[], digits = 0): string =>
  xs.length === 0 ? '-' : `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;

/** MB/s of one run of f. */
async function timed(f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await f();
  return SIZE / MB / ((performance.now() - t0) / 1000);
}

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

/** Run a command to completion (argv, no shell); throws on a non-zero exit. */
async function run(cmd: string, args: string[]): Promise<void> {
  const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const [code] = (await once(p, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`${cmd} exited ${code}: ${err.slice(-500)}`);
}

async function waitForPort(port: number, child: ChildProcess, timeoutMs = 10_000): Promise<void> {
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

function nginxConf(prefix: string, blobDir: string, port: number): string {
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
      alias ${blobDir}/$1;
      add_header x-pilot-digest "sha256:$1";
    }
  }
}
`;
}

async function startNginx(work: string, blobDir: string): Promise<{ url: string; stop: () => Promise<void> } | undefined> {
  if (spawnSync('nginx', ['-v']).error !== undefined) return undefined;
  const prefix = join(work, 'nginx');
  await mkdir(join(prefix, 'tmp'), { recursive: true });
  const port = await allocatePort('127.0.0.1');
  const conf = join(prefix, 'nginx.conf');
  await writeFile(conf, nginxConf(prefix, blobDir, port));
  const child = spawn('nginx', ['-p', prefix, '-e', join(prefix, 'error.log'), '-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = once(child, 'exit');
  const stop = async (): Promise<void> => {
    // SIGTERM to the master (by its pid) is nginx's fast shutdown; it takes its workers with it.
    if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGTERM');
    await exited;
  };
  try {
    await waitForPort(port, child);
  } catch (e) {
    await stop();
    throw e;
  }
  return { url: `http://127.0.0.1:${port}`, stop };
}

/** CPU time (user + system, ms) a process has used so far; Linux /proc, clock ticks of 10 ms. */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10; // utime, stime (fields 14, 15)
}

/** The bare node:http receiver (bench/upload-receiver.ts), with the V8 flag `pilot server` gets. */
async function startReceiver(dir: string): Promise<{ url: string; pid: number; stop: () => Promise<void> }> {
  const script = new URL('./upload-receiver.js', import.meta.url).pathname;
  const child = spawn(process.execPath, ['--max-semi-space-size=2', script, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = once(child, 'exit');
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGTERM');
    await exited;
  };
  try {
    const [line] = (await Promise.race([once(child.stdout, 'data'), exited.then(() => [undefined])])) as [Buffer | undefined];
    if (line === undefined) throw new Error(`upload-receiver exited with code ${child.exitCode}`);
    const { port } = JSON.parse(line.toString()) as { port: number };
    return { url: `http://127.0.0.1:${port}`, pid: child.pid!, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

async function main(): Promise<void> {
  const h = new Harness();
  const work = h.track(tempDir('bytes'));
  let nginx: Awaited<ReturnType<typeof startNginx>>;
  let receiver: Awaited<ReturnType<typeof startReceiver>> | undefined;
  try {
    const file = join(work, 'blob.bin');
    const digest = await makeBlob(file);
    await h.startUp({}, 'server');
    const blobDir = join(h.home, 'artifacts', 'sha256');
    const stored = join(blobDir, digest.slice('sha256:'.length));
    const pilot = new ArtifactClient(h.api, h.token);
    await pilot.upload(file, digest); // the blob nginx serves, and the one downloads read
    nginx = await startNginx(work, blobDir);
    const curl = spawnSync('curl', ['--version']).error === undefined;
    const serverPid = h.up!.pid!;
    receiver = curl ? await startReceiver(join(h.home, 'artifacts', 'tmp')) : undefined;
    const curlPut = (url: string, headers: string[]): Promise<void> =>
      run('curl', [
        '-sf',
        '-o',
        '/dev/null',
        '-T',
        file,
        '-H',
        'content-type: application/octet-stream',
        ...headers.flatMap((x) => ['-H', x]),
        url,
      ]);
    /** CPU ms per MB of the receiving process (and of this process: the client) while `f` runs. */
    const cpu: Figures = {};
    const withCpu =
      (name: string, pid: number, f: () => Promise<void>, client = false) =>
      async (): Promise<void> => {
        const s0 = cpuMs(pid);
        const c0 = process.cpuUsage();
        await f();
        (cpu[`${name}: receiver`] ??= []).push((cpuMs(pid) - s0) / (SIZE / MB));
        if (client) {
          const c = process.cpuUsage(c0);
          (cpu[`${name}: client (this process)`] ??= []).push((c.user + c.system) / 1000 / (SIZE / MB));
        }
      };
    const ddOut = join(h.home, 'artifacts', 'tmp', 'dd.out'); // the blob store's own folder and disk
    const f: Figures = {};
    const add = (k: string, v: number): void => void (f[k] ??= []).push(v);
    const download = (client: ArtifactClient) => async (): Promise<void> => {
      const dest = join(work, 'download');
      await client.download(digest, dest);
      await rm(dest, { force: true });
    };
    const steps: [string, () => Promise<void>][] = [
      ['dd conv=fsync', () => run('dd', [`if=${file}`, `of=${ddOut}`, 'bs=1M', 'conv=fsync'])],
      [
        'pilot upload',
        withCpu(
          'pilot upload',
          serverPid,
          async () => {
            const r = await pilot.upload(file, digest);
            if (!r.uploaded) throw new Error('upload was skipped');
          },
          true,
        ),
      ],
      ...(receiver
        ? ([
            [
              'pilot upload (curl)',
              withCpu('pilot upload (curl)', serverPid, () =>
                curlPut(`${h.api}/api/v1/artifacts/${digest}`, [`authorization: Bearer ${h.token}`]),
              ),
            ],
            ['node:http upload (curl)', withCpu('node:http upload (curl)', receiver.pid, () => curlPut(`${receiver!.url}/`, []))],
          ] as [string, () => Promise<void>][])
        : []),
      ['pilot download', download(pilot)],
      ...(nginx ? ([['nginx download', download(new ArtifactClient(nginx.url, 'bench'))]] as [string, () => Promise<void>][]) : []),
      ...(curl
        ? ([
            [
              'pilot curl',
              () =>
                run('curl', ['-sf', '-o', '/dev/null', '-H', `authorization: Bearer ${h.token}`, `${h.api}/api/v1/artifacts/${digest}`]),
            ],
          ] as [string, () => Promise<void>][])
        : []),
      ...(curl && nginx
        ? ([['nginx curl', () => run('curl', ['-sf', '-o', '/dev/null', `${nginx!.url}/api/v1/artifacts/${digest}`])]] as [
            string,
            () => Promise<void>,
          ][])
        : []),
    ];
    for (let r = 0; r < ROUNDS; r++) {
      for (let i = 0; i < steps.length; i++) {
        const [name, step] = steps[(i + r) % steps.length]!;
        // Each upload must really send the bytes; the stored copy is put back before downloads.
        if (name.startsWith('pilot upload')) await rm(stored, { force: true });
        await rm(ddOut, { force: true });
        add(name, await timed(step));
      }
    }
    await rm(ddOut, { force: true });
    const ratio = (a: string, b: string): number[] => (f[a] ?? []).map((x, i) => x / f[b]![i]!);
    console.log(`bytes: ${SIZE / MB} MB random blob, ${ROUNDS} interleaved rounds, MB = 2^20 bytes, 127.0.0.1, Node ${process.version}`);
    console.log('| measurement | MB/s, median | range |');
    console.log('|---|---|---|');
    for (const [name] of steps) console.log(`| ${name} | ${median(f[name]!).toFixed(0)} | ${range(f[name]!)} |`);
    for (const name of ['pilot upload (curl)', 'node:http upload (curl)']) {
      if (f[name] === undefined) continue;
      const r = ratio(name, 'dd conv=fsync');
      console.log(`${name} / dd conv=fsync, per round: ${range(r, 2)} (median ${median(r).toFixed(2)})`);
    }
    console.log('| CPU time per MB, upload | ms/MB, median | range |');
    console.log('|---|---|---|');
    for (const [name, xs] of Object.entries(cpu)) console.log(`| ${name} | ${median(xs).toFixed(2)} | ${range(xs, 2)} |`);
    console.log(
      `upload / dd conv=fsync, per round: ${range(ratio('pilot upload', 'dd conv=fsync'), 2)} (median ${median(ratio('pilot upload', 'dd conv=fsync')).toFixed(2)})`,
    );
    if (nginx) {
      const d = ratio('pilot download', 'nginx download');
      console.log(`download / nginx (ArtifactClient, verified), per round: ${range(d, 2)} (median ${median(d).toFixed(2)})`);
      if (curl) {
        const c = ratio('pilot curl', 'nginx curl');
        console.log(`download / nginx (curl -o /dev/null), per round: ${range(c, 2)} (median ${median(c).toFixed(2)})`);
      }
    } else {
      console.log('nginx: not installed (apt-get install -y nginx), download not compared');
    }
  } finally {
    await nginx?.stop();
    await receiver?.stop();
    await h.cleanup();
  }
}

await main();
