import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PilotError } from '../core/errors.js';
import { Agent, request } from '../http/undici.js';
import { registrySkip, startRegistry, type TestRegistry } from '../docker/test-registry.js';
import { registryBlobFile } from './oci-registry.fixture.js';
import { ARTIFACT_TYPE, EMPTY_CONFIG, MANIFEST_TYPE, OciBlobStore } from './oci-blob-store.js';
import type { OciCredentials } from './oci-registry.js';
import { credentialsFromEnv } from './open-blob-store.js';
import { ArtifactClient } from './client.js';
import { startTestServer } from './test-server.fixture.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const USER = { username: 'pilot-ci', password: 'registry-pw-7f3a9c' };

function storeOn(reg: TestRegistry, repo: string, credentials?: OciCredentials): OciBlobStore {
  return new OciBlobStore({
    target: { origin: reg.url, repo, display: `oci+http://${reg.address}/${repo}` },
    dispatcher: new Agent(),
    ...(credentials ? { credentials } : {}),
  });
}

describe('OciBlobStore on docker-registry', { skip: registrySkip, timeout: 300_000 }, () => {
  let reg: TestRegistry;
  let locked: TestRegistry;
  let dir: string;
  const stores: OciBlobStore[] = [];
  const track = (s: OciBlobStore): OciBlobStore => (stores.push(s), s);
  before(async () => {
    reg = await startRegistry();
    locked = await startRegistry({ user: USER });
    dir = await mkdtemp(join(tmpdir(), 'pilot-oci-test-'));
  });
  after(async () => {
    for (const s of stores) await s.close();
    await reg?.stop();
    await locked?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps a blob as an OCI artifact the way ORAS does: a tag, artifactType, the empty config, a titled layer', async () => {
    const store = track(storeOn(reg, 'shape/app'));
    const data = randomBytes(5000);
    await store.put(Readable.from([data]), { expectedDigest: sha(data), name: 'hello-0123456789ab.tgz' });
    const tag = `sha256-${sha(data).slice(7)}`;
    const tags = await request(`${reg.url}/v2/shape/app/tags/list`);
    assert.deepEqual(((await tags.body.json()) as { tags: string[] }).tags, [tag]);
    const res = await request(`${reg.url}/v2/shape/app/manifests/${tag}`, { headers: { accept: MANIFEST_TYPE } });
    assert.equal(res.headers['content-type'], MANIFEST_TYPE);
    const m = (await res.body.json()) as {
      schemaVersion: number;
      mediaType: string;
      artifactType: string;
      config: unknown;
      layers: { digest: string; size: number; annotations: Record<string, string> }[];
      annotations: Record<string, string>;
    };
    assert.equal(m.schemaVersion, 2);
    assert.equal(m.mediaType, MANIFEST_TYPE);
    assert.equal(m.artifactType, ARTIFACT_TYPE);
    assert.deepEqual(m.config, EMPTY_CONFIG);
    assert.equal(m.layers.length, 1);
    assert.equal(m.layers[0].digest, sha(data));
    assert.equal(m.layers[0].size, data.length);
    assert.equal(m.layers[0].annotations['org.opencontainers.image.title'], 'hello-0123456789ab.tgz');
    assert.ok(Date.parse(m.annotations['org.opencontainers.image.created']) > Date.now() - 60_000);
    const config = await request(`${reg.url}/v2/shape/app/blobs/${EMPTY_CONFIG.digest}`);
    assert.equal(await config.body.text(), '{}');
  });

  it('asks before uploading: bytes the registry has are never sent again, by this store or by another replica', async () => {
    const a = track(storeOn(reg, 'dedupe/app'));
    const b = track(storeOn(reg, 'dedupe/app'));
    const data = randomBytes(1024 * 1024 + 17);
    const d = sha(data);
    assert.equal((await a.put(Readable.from([data]), { expectedDigest: d })).created, true);
    assert.equal(a.uploadedBytes, data.length);
    assert.equal((await a.put(Readable.from([data]), { expectedDigest: d })).created, false);
    assert.equal((await b.put(Readable.from([data]), { expectedDigest: d })).created, false, 'another replica sees it stored');
    assert.equal(a.uploadedBytes + b.uploadedBytes, data.length, 'no second upload');
    // After a GC delete the bytes stay in the registry until its garbage-collect: storing it again sends nothing.
    assert.equal(await a.delete(d), true);
    assert.equal(await b.has(d), false);
    assert.equal((await b.put(Readable.from([data]), { expectedDigest: d })).created, true);
    assert.equal(b.uploadedBytes, 0);
    assert.equal(await a.verify(d), true);
  });

  it('refuses bytes the registry answers wrong: the reader never gets them whole, the error names the registry', async () => {
    const store = track(storeOn(reg, 'wrong/app'));
    const data = randomBytes(3 * 1024 * 1024 + 1);
    const { digest } = await store.put(Readable.from([data]));
    const file = registryBlobFile(reg, digest);
    await chmod(file, 0o600);
    const bytes = await readFile(file);
    bytes[bytes.length - 10] = bytes[bytes.length - 10]! ^ 1;
    await writeFile(file, bytes);
    let received = 0;
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        received += chunk.length;
        cb();
      },
    });
    await assert.rejects(pipeline(await store.openRead(digest), sink), (e: unknown) => {
      assert.ok(e instanceof PilotError, String(e));
      assert.equal(e.code, 'digest_mismatch');
      assert.match(
        e.message,
        new RegExp(`artifact registry oci\\+http://${reg.address}/wrong/app answered bytes hashing to ${sha(bytes)}`),
      );
      return true;
    });
    assert.ok(received < data.length, `the reader got ${received} of ${data.length} bytes: never the whole wrong blob`);
    assert.equal(await store.verify(digest), false);
  });

  it('authenticates with credentials from the environment, and says clearly when they are missing or wrong', async () => {
    const data = randomBytes(2000);
    for (const creds of [undefined, { username: USER.username, password: 'wrong-password' }]) {
      const store = track(storeOn(locked, 'auth/app', creds));
      await assert.rejects(store.put(Readable.from([data]), { expectedDigest: sha(data) }), (e: unknown) => {
        assert.ok(e instanceof PilotError, String(e));
        assert.equal(e.code, 'registry_refused');
        assert.match(e.message, /refused the credentials/);
        assert.match(e.hint ?? '', /PILOT_ARTIFACTS_USERNAME/);
        assert.doesNotMatch(JSON.stringify({ m: e.message, h: e.hint, d: e.details }), /wrong-password|registry-pw/);
        return true;
      });
    }
    const pwFile = join(dir, 'registry-password');
    await writeFile(pwFile, `${USER.password}\n`, { mode: 0o600 });
    const creds = credentialsFromEnv({ PILOT_ARTIFACTS_USERNAME: USER.username, PILOT_ARTIFACTS_PASSWORD_FILE: pwFile });
    const store = track(storeOn(locked, 'auth/app', creds));
    const r = await store.put(Readable.from([data]), { expectedDigest: sha(data) });
    assert.equal(r.created, true);
    assert.deepEqual(
      (await store.list()).map((b) => b.digest),
      [sha(data)],
    );
    await store.ping();
  });

  it('serves the HTTP API from the registry: publish, HEAD, ranges, 304, verified download, and a registry that is down named', async () => {
    const blobs = track(storeOn(reg, 'api/app'));
    const srv = await startTestServer({ blobs });
    try {
      const data = randomBytes(2 * 1024 * 1024 + 99);
      const file = join(dir, 'api-artifact.tgz');
      await writeFile(file, data);
      const client = new ArtifactClient(srv.url, 'unused');
      const commit = 'c'.repeat(40);
      assert.deepEqual(await client.upload(file, sha(data), { app: 'hello', commit }), { uploaded: true, bytes: data.length });
      assert.deepEqual(await client.upload(file, sha(data), { app: 'hello', commit }), { uploaded: false, bytes: 0 });
      const part = await request(`${srv.url}/api/v1/artifacts/${sha(data)}`, { headers: { range: 'bytes=1048570-1048589' } });
      assert.equal(part.statusCode, 206);
      assert.equal(part.headers['content-range'], `bytes 1048570-1048589/${data.length}`);
      assert.deepEqual(Buffer.from(await part.body.arrayBuffer()), data.subarray(1048570, 1048590));
      const cached = await request(`${srv.url}/api/v1/artifacts/${sha(data)}`, { headers: { 'if-none-match': `"${sha(data)}"` } });
      await cached.body.dump();
      assert.equal(cached.statusCode, 304);
      await client.download(sha(data), join(dir, 'api-download'));
      assert.deepEqual(await readFile(join(dir, 'api-download')), data);
      const m = await request(`${reg.url}/v2/api/app/manifests/sha256-${sha(data).slice(7)}`, { headers: { accept: MANIFEST_TYPE } });
      const title = ((await m.body.json()) as { layers: { annotations: Record<string, string> }[] }).layers[0]!.annotations;
      assert.equal(title['org.opencontainers.image.title'], 'hello-cccccccccccc');

      await reg.kill();
      try {
        await assert.rejects(client.exists(sha(data)), (e: unknown) => {
          assert.ok(e instanceof PilotError, String(e));
          assert.equal(e.code, 'registry_unreachable');
          assert.match(e.message, new RegExp(`cannot reach the artifact registry oci\\+http://${reg.address}/api/app`));
          return true;
        });
        await assert.rejects(
          client.download(sha(data), join(dir, 'api-down')),
          (e: unknown) => e instanceof PilotError && e.code === 'registry_unreachable',
        );
      } finally {
        await reg.restart();
      }
      assert.equal(await client.exists(sha(data)), true);
    } finally {
      await srv.close();
    }
  });

  it('shares blobs between two control planes on one registry: published through one, served by the other', async () => {
    const one = await startTestServer({ blobs: track(storeOn(reg, 'shared/blobs')) });
    const two = await startTestServer({ blobs: track(storeOn(reg, 'shared/blobs')) });
    try {
      const data = randomBytes(700_000);
      const file = join(dir, 'shared.tgz');
      await writeFile(file, data);
      assert.equal((await new ArtifactClient(one.url, 't').upload(file, sha(data))).uploaded, true);
      const viaTwo = new ArtifactClient(two.url, 't');
      assert.equal(await viaTwo.exists(sha(data)), true);
      assert.equal((await viaTwo.upload(file, sha(data))).uploaded, false, 'the other replica skips the upload');
      await viaTwo.download(sha(data), join(dir, 'shared-download'));
      assert.deepEqual(await readFile(join(dir, 'shared-download')), data);
      assert.equal(await one.blobs.delete(sha(data)), true, 'a GC on one');
      assert.equal(await viaTwo.exists(sha(data)), false, 'is seen by the other');
    } finally {
      await one.close();
      await two.close();
    }
  });

  it('streams a 300 MB blob up and down with a flat RSS (no whole blob in memory)', async (t) => {
    const store = track(storeOn(reg, 'big/app'));
    const block = randomBytes(1024 * 1024);
    const blocks = 300;
    const h = createHash('sha256');
    for (let i = 0; i < blocks; i++) h.update(block);
    const digest = `sha256:${h.digest('hex')}`;
    const src = () =>
      Readable.from(
        (function* () {
          for (let i = 0; i < blocks; i++) yield Buffer.from(block);
        })(),
      );
    global.gc?.();
    const base = process.memoryUsage().rss;
    let peak = base;
    const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 25);
    try {
      const r = await store.put(src(), { expectedDigest: digest });
      assert.deepEqual(r, { digest, size: blocks * block.length, created: true });
      const back = createHash('sha256');
      let n = 0;
      for await (const c of await store.openRead(digest)) {
        back.update(c as Buffer);
        n += (c as Buffer).length;
      }
      assert.equal(`sha256:${back.digest('hex')}`, digest);
      assert.equal(n, blocks * block.length);
    } finally {
      clearInterval(sample);
    }
    const grew = (peak - base) / 1024 / 1024;
    t.diagnostic(`RSS grew ${grew.toFixed(1)} MB moving 300 MB up and down`);
    assert.ok(grew < 120, `RSS grew ${grew.toFixed(0)} MB moving 300 MB`);
  });
});
