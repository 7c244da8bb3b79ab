import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { startTestServer, type TestServer } from './test-server.fixture.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const COMMIT = 'a'.repeat(40);

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: unknown;
  bytes: Buffer;
}

async function call(
  method: 'GET' | 'HEAD' | 'PUT',
  url: string,
  body?: Buffer | Readable,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const res = await request(url, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/octet-stream', ...headers },
    ...(body === undefined ? {} : { body }),
  });
  const bytes = Buffer.from(await res.body.arrayBuffer());
  const isJson = String(res.headers['content-type'] ?? '').startsWith('application/json');
  return {
    status: res.statusCode,
    headers: res.headers,
    json: isJson && bytes.length > 0 ? JSON.parse(bytes.toString()) : undefined,
    bytes,
  };
}

function errorCode(a: Answer): string | undefined {
  const body = a.json as { error?: { code?: string; message?: string; retryable?: boolean } } | undefined;
  return body?.error?.code;
}

describe('artifact routes', () => {
  let srv: TestServer;
  const big = randomBytes(10 * 1024 * 1024);
  const bigDigest = sha(big);
  const art = (digest: string): string => `${srv.url}/api/v1/artifacts/${digest}`;
  const storedNames = async (): Promise<string[]> => readdir(join(srv.root, 'store', 'sha256'));

  /** After every refusal the server must still answer normally. */
  async function stillServing(): Promise<void> {
    const head = await call('HEAD', art(bigDigest));
    assert.equal(head.status, 200);
  }

  before(async () => {
    srv = await startTestServer({ maxBytes: 16 * 1024 * 1024 });
  });
  after(async () => {
    await srv.close();
  });

  it('stores a 10 MB upload streamed in chunks, answering 201 with its metadata', async () => {
    const chunks = Array.from({ length: 10 }, (_, i) => big.subarray(i * 1024 * 1024, (i + 1) * 1024 * 1024));
    const a = await call('PUT', `${art(bigDigest)}?app=web&commit=${COMMIT}`, Readable.from(chunks));
    assert.equal(a.status, 201);
    const m = a.json as Record<string, unknown>;
    assert.deepEqual({ ...m, createdAt: 0 }, { digest: bigDigest, size: big.length, app: 'web', commit: COMMIT, createdAt: 0 });
    assert.equal(typeof m.createdAt, 'number');
    assert.equal(await srv.blobs.verify(bigDigest), true);
  });

  it('answers 200 and the original metadata when the digest is uploaded again', async () => {
    const a = await call('PUT', `${art(bigDigest)}?app=other`, big);
    assert.equal(a.status, 200);
    assert.equal((a.json as { app: string }).app, 'web');
    assert.deepEqual(await storedNames(), [bigDigest.slice(7)]);
  });

  it('answers HEAD with the size, or 404', async () => {
    const a = await call('HEAD', art(bigDigest));
    assert.equal(a.status, 200);
    assert.equal(a.headers['content-length'], String(big.length));
    assert.equal(a.headers['x-pilot-digest'], bigDigest);
    const missing = await call('HEAD', art(sha(Buffer.from('missing'))));
    assert.equal(missing.status, 404);
  });

  it('streams the bytes back with content-length and x-pilot-digest', async () => {
    const a = await call('GET', art(bigDigest));
    assert.equal(a.status, 200);
    assert.equal(a.headers['content-length'], String(big.length));
    assert.equal(a.headers['x-pilot-digest'], bigDigest);
    assert.ok(a.bytes.equals(big));
  });

  it('serves metadata and lists artifacts, optionally by app', async () => {
    const small = Buffer.from('small artifact');
    assert.equal((await call('PUT', `${art(sha(small))}?app=api`, small)).status, 201);
    const m = await call('GET', `${art(bigDigest)}/meta`);
    assert.equal(m.status, 200);
    assert.equal((m.json as { size: number }).size, big.length);
    const all = (await call('GET', `${srv.url}/api/v1/artifacts`)).json as { artifacts: { digest: string }[] };
    assert.deepEqual(all.artifacts.map((x) => x.digest).sort(), [bigDigest, sha(small)].sort());
    const web = (await call('GET', `${srv.url}/api/v1/artifacts?app=web`)).json as { artifacts: { digest: string }[] };
    assert.deepEqual(
      web.artifacts.map((x) => x.digest),
      [bigDigest],
    );
    const none = (await call('GET', `${srv.url}/api/v1/artifacts?app=nobody`)).json as { artifacts: unknown[] };
    assert.deepEqual(none.artifacts, []);
    const bad = await call('GET', `${srv.url}/api/v1/artifacts?app=Not_A_Name`);
    assert.equal(bad.status, 400);
    assert.equal(errorCode(bad), 'invalid_name');
  });

  it('refuses a malformed digest with 400 invalid_digest', async () => {
    for (const [method, url, body] of [
      ['PUT', art('sha256:1234'), Buffer.from('x')],
      ['GET', art('sha256:..%2F..%2Fetc%2Fpasswd'), undefined],
      ['GET', `${art('md5:abc')}/meta`, undefined],
    ] as const) {
      const a = await call(method, url, body);
      assert.equal(a.status, 400, `${method} ${url}`);
      assert.equal(errorCode(a), 'invalid_digest');
      const err = (a.json as { error: { hint?: string; retryable: boolean } }).error;
      assert.equal(err.retryable, false);
      assert.ok(err.hint);
    }
    await stillServing();
  });

  it('refuses bytes that do not match the digest with 400 digest_mismatch, storing nothing', async () => {
    const data = randomBytes(3 * 1024 * 1024);
    const claimed = sha(Buffer.from('another thing'));
    const a = await call('PUT', art(claimed), data);
    assert.equal(a.status, 400);
    assert.equal(errorCode(a), 'digest_mismatch');
    assert.equal((await call('HEAD', art(claimed))).status, 404);
    assert.equal((await call('HEAD', art(sha(data)))).status, 404);
    assert.deepEqual(await readdir(join(srv.root, 'store', 'tmp')), []);
    await stillServing();
  });

  it('answers 404 artifact_not_found for unknown digests', async () => {
    const d = sha(Buffer.from('never uploaded'));
    for (const url of [art(d), `${art(d)}/meta`]) {
      const a = await call('GET', url);
      assert.equal(a.status, 404);
      assert.equal(errorCode(a), 'artifact_not_found');
    }
    await stillServing();
  });

  it('refuses an artifact over maxBytes with 413, by content-length or while streaming', async () => {
    const huge = randomBytes(20 * 1024 * 1024);
    const declared = await call('PUT', art(sha(huge)), huge);
    assert.equal(declared.status, 413);
    assert.equal(errorCode(declared), 'too_large');
    assert.equal(declared.headers.connection, 'close', 'the unread body is not drained: the connection is closed');
    await stillServing();
    const chunks = Array.from({ length: 20 }, (_, i) => huge.subarray(i * 1024 * 1024, (i + 1) * 1024 * 1024));
    const streamed = await call('PUT', art(sha(huge)), Readable.from(chunks)); // chunked: no content-length
    assert.equal(streamed.status, 413);
    assert.equal(errorCode(streamed), 'too_large');
    assert.equal(streamed.headers.connection, 'close');
    assert.equal((await call('HEAD', art(sha(huge)))).status, 404);
    assert.deepEqual(await readdir(join(srv.root, 'store', 'tmp')), []);
    await stillServing();
  });

  it('keeps nothing when the client disconnects mid-upload', async () => {
    const data = randomBytes(4 * 1024 * 1024);
    const body = new Readable({ read() {} });
    body.push(data.subarray(0, 2 * 1024 * 1024));
    const answer = call('PUT', art(sha(data)), body, { 'content-length': String(data.length) });
    const tmp = join(srv.root, 'store', 'tmp');
    for (let i = 0; i < 100 && (await readdir(tmp)).length === 0; i++) await sleep(20);
    assert.equal((await readdir(tmp)).length, 1, 'the upload was being received');
    body.destroy(new Error('client gave up'));
    await assert.rejects(answer);
    for (let i = 0; i < 100 && (await readdir(tmp)).length > 0; i++) await sleep(20);
    assert.deepEqual(await readdir(tmp), []);
    assert.equal((await call('HEAD', art(sha(data)))).status, 404);
    await stillServing();
  });

  it('refuses a bad app name or commit before reading the body', async () => {
    const data = Buffer.from('meta check');
    const badApp = await call('PUT', `${art(sha(data))}?app=../etc`, data);
    assert.equal(badApp.status, 400);
    assert.equal(errorCode(badApp), 'invalid_name');
    assert.equal(badApp.headers.connection, 'close');
    const badCommit = await call('PUT', `${art(sha(data))}?commit=main`, data);
    assert.equal(badCommit.status, 400);
    assert.equal(errorCode(badCommit), 'bad_request');
    assert.equal((await call('HEAD', art(sha(data)))).status, 404);
    await stillServing();
  });

  it('refuses a body that is not raw bytes', async () => {
    const a = await call('PUT', art(sha(Buffer.from('{}'))), Buffer.from('{}'), { 'content-type': 'application/json' });
    assert.equal(a.status, 400);
    assert.equal(errorCode(a), 'bad_request');
    await stillServing();
  });

  it('accepts an empty artifact', async () => {
    const empty = Buffer.alloc(0);
    const a = await call('PUT', art(sha(empty)), empty);
    assert.equal(a.status, 201);
    assert.equal((a.json as { size: number }).size, 0);
    const g = await call('GET', art(sha(empty)));
    assert.equal(g.status, 200);
    assert.equal(g.bytes.length, 0);
  });
});
