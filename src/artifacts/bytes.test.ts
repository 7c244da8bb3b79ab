/**
 * The byte paths of the artifact repository (upload: one-pass hash + writev + fsync; download: two
 * reused buffers straight to the socket; the client's verified download), at the sizes where
 * chunking can go wrong, with ranges, conditional requests, clients that leave, and a guard that
 * nothing grows per transfer.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { ArtifactClient } from './client.js';
import { SEND_CHUNK } from '../http/send-file.js';
import { startTestServer, type TestServer } from './test-server.fixture.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const KiB = 1024;
const MiB = 1024 * 1024;

describe('artifact bytes', () => {
  let srv: TestServer;
  let client: ArtifactClient;
  const blob = randomBytes(3 * MiB + 17); // spans several send chunks, ends mid-chunk
  const digest = sha(blob);
  const url = (): string => `${srv.url}/api/v1/artifacts/${digest}`;
  const openFds = (): number => readdirSync('/proc/self/fd').length;
  const tmpFiles = async (): Promise<string[]> => readdir(join(srv.root, 'store', 'tmp'));

  before(async () => {
    srv = await startTestServer({ maxBytes: 64 * MiB });
    client = new ArtifactClient(srv.url, 'test');
    assert.equal((await client.upload(await writeTemp(srv, 'blob', blob), digest)).uploaded, true);
  });
  after(async () => {
    await srv.close();
  });

  it('round-trips every size where chunking can go wrong, byte for byte', async () => {
    const sizes = [0, 1, 64 * KiB - 1, 64 * KiB, 64 * KiB + 1, SEND_CHUNK - 1, SEND_CHUNK, SEND_CHUNK + 1, 10 * MiB + 3];
    for (const size of sizes) {
      const bytes = randomBytes(size);
      const d = sha(bytes);
      const file = await writeTemp(srv, `in-${size}`, bytes);
      const up = await client.upload(file, d);
      assert.equal(up.uploaded, true, `size ${size}`);
      assert.equal(up.bytes, size);
      const dest = join(srv.root, `out-${size}`);
      assert.deepEqual(await client.download(d, dest), { size });
      assert.ok((await readFile(dest)).equals(bytes), `size ${size}: downloaded bytes differ`);
      // And what a plain HTTP client sees: the length, the bytes, the digest as ETag.
      const res = await request(`${srv.url}/api/v1/artifacts/${d}`);
      const got = Buffer.from(await res.body.arrayBuffer());
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['content-length'], String(size));
      assert.equal(res.headers.etag, `"${d}"`);
      assert.equal(res.headers['accept-ranges'], 'bytes');
      assert.ok(got.equals(bytes), `size ${size}: GET bytes differ`);
    }
    assert.deepEqual(await tmpFiles(), []);
  });

  it('refuses a wrong digest and a truncated upload, leaving no file behind', async () => {
    const bytes = randomBytes(MiB + 5);
    const wrong = sha(Buffer.from('something else'));
    const res = await request(`${srv.url}/api/v1/artifacts/${wrong}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    assert.equal(res.statusCode, 400);
    assert.equal(((await res.body.json()) as { error: { code: string } }).error.code, 'digest_mismatch');
    assert.equal(await srv.blobs.has(wrong), false);
    assert.equal(await srv.blobs.has(sha(bytes)), false);
    // Truncated: content-length promises 2 MiB, 600 KiB arrive, then the client goes away.
    await new Promise<void>((resolve) => {
      const req = httpRequest(`${srv.url}/api/v1/artifacts/${sha(bytes)}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(2 * MiB) },
      });
      req.on('error', () => resolve());
      req.write(bytes.subarray(0, 600 * KiB), () => setTimeout(() => req.destroy(), 100));
      req.on('close', () => resolve());
    });
    await waitUntil(async () => (await tmpFiles()).length === 0, 'the temp file of the cut upload to go');
    assert.equal(await srv.blobs.has(sha(bytes)), false);
    assert.equal((await request(url(), { method: 'HEAD' })).statusCode, 200); // still serving
  });

  it('serves one range (206), refuses one past the end (416), ignores several', async () => {
    const get = async (range: string): Promise<{ status: number; headers: Record<string, unknown>; bytes: Buffer }> => {
      const res = await request(url(), { headers: { range } });
      return { status: res.statusCode, headers: res.headers, bytes: Buffer.from(await res.body.arrayBuffer()) };
    };
    const size = blob.length;
    const cases: [string, number, number][] = [
      ['bytes=0-0', 0, 0],
      [`bytes=${SEND_CHUNK - 10}-${SEND_CHUNK + 10}`, SEND_CHUNK - 10, SEND_CHUNK + 10], // across a chunk edge
      [`bytes=${size - 1}-`, size - 1, size - 1],
      ['bytes=-100', size - 100, size - 1],
      [`bytes=5-${size + 1000}`, 5, size - 1],
    ];
    for (const [range, start, end] of cases) {
      const r = await get(range);
      assert.equal(r.status, 206, range);
      assert.equal(r.headers['content-range'], `bytes ${start}-${end}/${size}`, range);
      assert.equal(r.headers['content-length'], String(end - start + 1), range);
      assert.ok(r.bytes.equals(blob.subarray(start, end + 1)), `${range}: bytes differ`);
    }
    const past = await get(`bytes=${size}-`);
    assert.equal(past.status, 416);
    assert.equal(past.headers['content-range'], `bytes */${size}`);
    const several = await get('bytes=0-1,5-6');
    assert.equal(several.status, 200);
    assert.ok(several.bytes.equals(blob));
  });

  it('answers 304 to If-None-Match with the digest, the bytes otherwise', async () => {
    const same = await request(url(), { headers: { 'if-none-match': `"${digest}"` } });
    assert.equal(same.statusCode, 304);
    assert.equal((await same.body.arrayBuffer()).byteLength, 0);
    assert.equal(same.headers.etag, `"${digest}"`);
    const other = await request(url(), { headers: { 'if-none-match': '"sha256:other"' } });
    assert.equal(other.statusCode, 200);
    assert.ok(Buffer.from(await other.body.arrayBuffer()).equals(blob));
  });

  it('survives clients that leave mid-download, closing every file it opened', async () => {
    const before = openFds();
    for (let i = 0; i < 20; i++) {
      await new Promise<void>((resolve) => {
        const req = httpRequest(url(), (res) => {
          let got = 0;
          res.on('data', (c: Buffer) => {
            got += c.length;
            if (got > (i % 4) * 300 * KiB) req.destroy(); // leave at different points, some at once
          });
          res.on('close', () => resolve());
        });
        req.on('error', () => resolve());
        req.end();
      });
    }
    const whole = await request(url());
    assert.ok(Buffer.from(await whole.body.arrayBuffer()).equals(blob), 'still serving the whole blob');
    await waitUntil(async () => openFds() <= before + 2, `open files back to ${before} (now ${openFds()})`);
  });

  it('keeps the heap flat over hundreds of transfers (no per-transfer leak)', async () => {
    const gc = exposeGc();
    const small = randomBytes(256 * KiB);
    const smallDigest = sha(small);
    const file = await writeTemp(srv, 'small', small);
    const round = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++) {
        const res = await request(url(), { headers: i % 3 === 0 ? { range: 'bytes=100-200000' } : {} });
        await res.body.dump();
        await rm(srv.blobs.path(smallDigest), { force: true });
        await client.upload(file, smallDigest);
      }
    };
    await round(50); // warm-up: JIT, pools, first-time allocations
    // Buffers live outside the V8 heap (external): both count.
    // Freed buffers are returned by a concurrent sweeper: collect, let it run, collect again.
    const used = async (): Promise<number> => {
      for (let i = 0; i < 3; i++) {
        gc();
        await new Promise((r) => setTimeout(r, 100));
      }
      const m = process.memoryUsage();
      return m.heapUsed + m.external;
    };
    const base = await used();
    await round(300);
    const grown = ((await used()) - base) / MiB;
    // 300 downloads of 3 MB (900 socket writes) and 300 uploads: keeping 8 KiB per write, or a
    // listener or buffer per transfer, shows as several MB; what a full GC leaves is a few hundred KB.
    assert.ok(grown < 4, `heap + external memory grew ${grown.toFixed(1)} MB over 300 transfers`);
  });
});

async function writeTemp(srv: TestServer, name: string, bytes: Buffer): Promise<string> {
  const file = join(srv.root, name);
  await writeFile(file, bytes);
  return file;
}

async function waitUntil(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A full GC on demand, without starting the test runner with --expose-gc. */
function exposeGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}
