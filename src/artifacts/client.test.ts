import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PilotError } from '../core/errors.js';
import { ArtifactClient } from './client.js';
import { startTestServer, type TestServer } from './test-server.fixture.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const isPilot =
  (code: string) =>
  (e: unknown): boolean => {
    assert.ok(e instanceof PilotError, `expected a PilotError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  };

/** A port on 127.0.0.1 with nothing listening (bound, then released). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((res) => s.listen(0, '127.0.0.1', res));
  const { port } = s.address() as { port: number };
  await new Promise<void>((res) => s.close(() => res()));
  return port;
}

describe('ArtifactClient', () => {
  let srv: TestServer;
  let dir: string;
  let client: ArtifactClient;
  const data = randomBytes(3 * 1024 * 1024 + 17);
  const digest = sha(data);
  let file: string;

  before(async () => {
    srv = await startTestServer();
    dir = await mkdtemp(join(tmpdir(), 'pilot-client-'));
    client = new ArtifactClient(`${srv.url}/`, 'tok-123');
    file = join(dir, 'artifact.tgz');
    await writeFile(file, data);
  });
  after(async () => {
    await srv.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('uploads a file, then skips it once the digest is stored', async () => {
    assert.equal(await client.exists(digest), false);
    assert.deepEqual(await client.upload(file, digest, { app: 'web', commit: 'b'.repeat(40) }), { uploaded: true, bytes: data.length });
    assert.equal(await client.exists(digest), true);
    assert.equal(srv.meta.getMeta(digest)?.app, 'web');
    const requests = srv.authHeaders.length;
    assert.deepEqual(await client.upload(file, digest), { uploaded: false, bytes: 0 });
    assert.equal(srv.authHeaders.length, requests + 1, 'only a HEAD was sent');
    assert.ok(srv.authHeaders.every((h) => h === 'Bearer tok-123'));
  });

  it('downloads and verifies the bytes', async () => {
    const dest = join(dir, 'download.tgz');
    assert.deepEqual(await client.download(digest, dest), { size: data.length });
    assert.ok((await readFile(dest)).equals(data));
  });

  it('refuses bytes altered on the server, leaving no file behind', async () => {
    const other = randomBytes(100_000);
    const otherFile = join(dir, 'other.tgz');
    await writeFile(otherFile, other);
    await client.upload(otherFile, sha(other));
    const blob = srv.blobs.path(sha(other));
    const tampered = Buffer.from(other);
    tampered[5000] = tampered[5000]! ^ 0x01;
    await writeFile(blob, tampered); // same size, one bit flipped
    const dest = join(dir, 'sub-tampered.tgz');
    await assert.rejects(client.download(sha(other), dest), isPilot('digest_mismatch'));
    const left = (await readdir(dir)).filter((n) => n.startsWith('sub-tampered'));
    assert.deepEqual(left, [], 'neither the destination nor a partial file remains');
    // The mismatch was reported: the repository re-hashed its copy and quarantined it, so the
    // publisher's HEAD says "not stored", it uploads again, and the next download is whole.
    assert.equal(await srv.blobs.has(sha(other)), false);
    assert.equal((await readdir(join(srv.root, 'store', 'quarantine'))).length, 1);
    assert.equal(await client.exists(sha(other)), false);
    assert.deepEqual(await client.upload(otherFile, sha(other)), { uploaded: true, bytes: other.length });
    assert.deepEqual(await client.download(sha(other), dest), { size: other.length });
  });

  it('a HEAD re-hashes before saying "stored": a corrupt blob is quarantined and the upload heals it', async () => {
    const bytes = randomBytes(50_000);
    const f = join(dir, 'head.tgz');
    await writeFile(f, bytes);
    await client.upload(f, sha(bytes));
    const blob = srv.blobs.path(sha(bytes));
    await writeFile(blob, bytes.subarray(0, 1000)); // truncated
    assert.deepEqual(await client.upload(f, sha(bytes)), { uploaded: true, bytes: bytes.length }, 'not skipped as "already stored"');
    assert.equal(await srv.blobs.verify(sha(bytes)), true);
    assert.equal(await client.reportMismatch(sha(bytes)), 'ok', 'a report about an intact blob changes nothing');
    assert.equal(await srv.blobs.has(sha(bytes)), true);
  });

  it('turns error answers into PilotErrors with the server code', async () => {
    const unknown = sha(Buffer.from('unknown'));
    await assert.rejects(client.download(unknown, join(dir, 'nope')), isPilot('artifact_not_found'));
    await assert.rejects(client.upload(file, sha(Buffer.from('a different digest'))), isPilot('digest_mismatch'));
    assert.equal(await client.exists(sha(Buffer.from('a different digest'))), false);
    await assert.rejects(client.upload(file, digest.toUpperCase()), isPilot('invalid_digest'));
  });

  it('reports an unreachable server as server_unreachable', async () => {
    const port = await closedPort();
    const down = new ArtifactClient(`http://127.0.0.1:${port}`, 'tok');
    await assert.rejects(down.exists(digest), isPilot('server_unreachable'));
    await assert.rejects(down.download(digest, join(dir, 'x')), isPilot('server_unreachable'));
  });
});
