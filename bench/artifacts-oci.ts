/**
 * Artifacts in an OCI registry: upload and download MB/s of one 200 MB blob through
 *
 *   oci     OciBlobStore on a real docker-registry (127.0.0.1): HEAD, POST, one streamed PUT with
 *           the digest (hashed on the way), the manifest; download hashed and checked
 *   peer    the same registry with a plain streamed HTTP PUT/GET (POST, PUT ?digest=, GET), no
 *           hashing, no manifest: what the registry itself does, the ceiling for the adapter
 *   fs      FsBlobStore (the embedded default): hashed, fsynced, linked; download a file stream
 *
 * in interleaved rounds (the order rotates, so the noise of 2 shared cores and a shared disk falls on
 * all alike); each upload goes to a fresh repository (the registry would otherwise skip it).
 *
 *   npm run build && node dist/bench/artifacts-oci.js [rounds=3] [MB=200]
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { FsBlobStore } from '../src/artifacts/blob-store.js';
import { OciBlobStore } from '../src/artifacts/oci-blob-store.js';
import { startRegistry } from '../src/docker/test-registry.js';
import { Agent, request } from '../src/http/undici.js';

const ROUNDS = Number(process.argv[2] ?? 3);
const MB = 1024 * 1024;
const SIZE = Number(process.argv[3] ?? 200) * MB;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const range = (xs: number[]): string => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;

async function timed(f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await f();
  return SIZE / MB / ((performance.now() - t0) / 1000);
}

async function drain(r: Readable | AsyncIterable<unknown>): Promise<number> {
  let n = 0;
  for await (const c of r) n += (c as Buffer).length;
  if (n !== SIZE) throw new Error(`read ${n} bytes of ${SIZE}`);
  return n;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'pilot-bench-oci-'));
  const reg = await startRegistry();
  const dispatcher = new Agent({ connections: 4 });
  try {
    const file = join(dir, 'blob');
    const hash = createHash('sha256');
    const fh = await open(file, 'w');
    for (let i = 0; i < SIZE / MB; i++) {
      const chunk = randomBytes(MB);
      hash.update(chunk);
      await fh.write(chunk);
    }
    await fh.close();
    const digest = `sha256:${hash.digest('hex')}`;
    const src = (): Readable => createReadStream(file, { highWaterMark: MB });
    const oci = (repo: string) =>
      new OciBlobStore({ target: { origin: reg.url, repo, display: `oci+http://${reg.address}/${repo}` }, dispatcher: new Agent() });

    const figures: Record<string, number[]> = {};
    const add = (k: string, v: number) => (figures[k] ??= []).push(v);
    for (let round = 0; round < ROUNDS; round++) {
      const fsRoot = join(dir, `fs-${round}`);
      const runs: [string, () => Promise<void>][] = [
        [
          'oci',
          async () => {
            const s = oci(`bench/oci-${round}`);
            add('oci up', await timed(() => s.put(src(), { expectedDigest: digest })));
            add('oci down', await timed(async () => drain(await s.openRead(digest))));
            await s.close();
          },
        ],
        [
          'peer',
          async () => {
            const repo = `bench/peer-${round}`;
            add(
              'peer up',
              await timed(async () => {
                const post = await request(`${reg.url}/v2/${repo}/blobs/uploads/`, { method: 'POST', dispatcher });
                await post.body.dump();
                const loc = new URL(String(post.headers.location), reg.url);
                loc.searchParams.set('digest', digest);
                const put = await request(loc, { method: 'PUT', body: src(), dispatcher, headers: { 'content-length': String(SIZE) } });
                await put.body.dump();
                if (put.statusCode !== 201) throw new Error(`peer PUT ${put.statusCode}`);
              }),
            );
            add(
              'peer down',
              await timed(async () => {
                const get = await request(`${reg.url}/v2/${repo}/blobs/${digest}`, { dispatcher });
                await drain(get.body);
              }),
            );
          },
        ],
        [
          'fs',
          async () => {
            const s = new FsBlobStore(fsRoot);
            add('fs up', await timed(() => s.put(src(), { expectedDigest: digest })));
            add('fs down', await timed(async () => drain(await s.openRead(digest))));
            await rm(fsRoot, { recursive: true, force: true });
          },
        ],
      ];
      for (let i = 0; i < runs.length; i++) await runs[(i + round) % runs.length]![1]();
    }
    const ratio = (a: string, b: string) => figures[a]!.map((x, i) => x / figures[b]![i]!);
    console.log(`# artifacts through an OCI registry: ${SIZE / MB} MB blob, ${ROUNDS} rounds, MB/s median (range)`);
    for (const dirn of ['up', 'down']) {
      console.log(
        `${dirn.padEnd(5)} oci ${median(figures[`oci ${dirn}`]!).toFixed(0)} (${range(figures[`oci ${dirn}`]!)})` +
          `  peer ${median(figures[`peer ${dirn}`]!).toFixed(0)} (${range(figures[`peer ${dirn}`]!)})` +
          `  fs ${median(figures[`fs ${dirn}`]!).toFixed(0)} (${range(figures[`fs ${dirn}`]!)})` +
          `  oci/peer ${median(ratio(`oci ${dirn}`, `peer ${dirn}`)).toFixed(2)}  oci/fs ${median(ratio(`oci ${dirn}`, `fs ${dirn}`)).toFixed(2)}`,
      );
    }
  } finally {
    await dispatcher.close();
    await reg.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
