/**
 * A registry that answers badly, on purpose: a fake distribution API (node:http) in front of which
 * the OCI store must fail clearly and stay small, never trusting the answer's shape or size.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PilotError } from '../core/errors.js';
import { Agent } from '../http/undici.js';
import { MANIFEST_TYPE, OciBlobStore } from './oci-blob-store.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function serve(handler: { fn: Handler }): Promise<{ server: Server; origin: string }> {
  const server = createServer((req, res) => handler.fn(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, origin: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}

const badAnswer = (re: RegExp) => (e: unknown) => e instanceof PilotError && e.code === 'bad_gateway' && re.test(e.message);

describe('OCI store against a registry that answers badly', () => {
  const main = { fn: ((_req, res) => res.writeHead(500).end()) as Handler };
  const other = { fn: ((_req, res) => res.writeHead(500).end()) as Handler };
  let a: { server: Server; origin: string };
  let b: { server: Server; origin: string };
  let store: OciBlobStore;
  const data = randomBytes(10_000);
  const d = sha(data);
  const manifest = (digest: string, size: number) =>
    JSON.stringify({ schemaVersion: 2, mediaType: MANIFEST_TYPE, layers: [{ mediaType: 'application/octet-stream', digest, size }] });

  before(async () => {
    a = await serve(main);
    b = await serve(other);
    store = new OciBlobStore({
      target: { origin: a.origin, repo: 'x/y', display: 'oci+http://fake/x/y' },
      credentials: { token: 'T0KEN' },
      dispatcher: new Agent(),
    });
  });
  after(async () => {
    await store.close();
    a.server.closeAllConnections();
    b.server.closeAllConnections();
    await new Promise((r) => a.server.close(r));
    await new Promise((r) => b.server.close(r));
  });

  it('refuses a manifest larger than 4 MiB without holding it', async () => {
    main.fn = (_req, res) => {
      res.writeHead(200, { 'content-type': MANIFEST_TYPE });
      const chunk = Buffer.alloc(1024 * 1024, 0x20);
      for (let i = 0; i < 64; i++) res.write(chunk);
      res.end('{}');
    };
    await assert.rejects(store.stat(d), badAnswer(/larger than 4 MiB/));
  });

  it('refuses a manifest that is not JSON, or describes another blob, or a negative size', async () => {
    for (const body of [
      '<html>not a registry</html>',
      manifest(sha(Buffer.from('other')), 10),
      manifest(d, -1),
      manifest(d, 1.5),
      '{"layers":[]}',
    ]) {
      main.fn = (_req, res) => res.writeHead(200, { 'content-type': MANIFEST_TYPE }).end(body);
      await assert.rejects(store.stat(d), badAnswer(/not JSON|does not describe that blob/), body);
    }
  });

  it('refuses a tag list that is not one, and bounds an error answer it quotes', async () => {
    main.fn = (_req, res) => res.writeHead(200).end('tags: all of them');
    await assert.rejects(store.list(), badAnswer(/JSON tag list/));
    main.fn = (_req, res) => {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNKNOWN', message: 'x'.repeat(5 * 1024 * 1024) }] }));
    };
    await assert.rejects(store.list(), (e: unknown) => e instanceof PilotError && e.code === 'registry_refused' && e.message.length < 1000);
  });

  it('follows a blob redirect to another origin without the credentials, and checks the bytes it gets there', async () => {
    const seen: { main?: string | undefined; other?: string | undefined } = {};
    main.fn = (req, res) => {
      if (req.url?.includes('/manifests/')) return void res.writeHead(200, { 'content-type': MANIFEST_TYPE }).end(manifest(d, data.length));
      seen.main = req.headers.authorization;
      res.writeHead(307, { location: `${b.origin}/storage/blob?sig=1` }).end();
    };
    other.fn = (req, res) => {
      seen.other = req.headers.authorization;
      res.writeHead(200).end(data);
    };
    const got: Buffer[] = [];
    for await (const c of await store.openRead(d)) got.push(c as Buffer);
    assert.deepEqual(Buffer.concat(got), data);
    assert.equal(seen.main, 'Bearer T0KEN');
    assert.equal(seen.other, undefined, 'no credentials to another origin');
    // The same storage answering other bytes: refused.
    other.fn = (_req, res) => res.writeHead(200).end(randomBytes(data.length));
    await assert.rejects(
      (async () => {
        for await (const _ of await store.openRead(d));
      })(),
      (e: unknown) => e instanceof PilotError && e.code === 'digest_mismatch',
    );
  });

  it('refuses a range answered with the whole blob, and a range of the wrong length', async () => {
    main.fn = (req, res) => {
      if (req.url?.includes('/manifests/')) return void res.writeHead(200, { 'content-type': MANIFEST_TYPE }).end(manifest(d, data.length));
      res.writeHead(200).end(data);
    };
    const blob = await store.openBlob(d);
    await assert.rejects(blob.read(10, 19), badAnswer(/without 206/));
    main.fn = (req, res) => {
      if (req.url?.includes('/manifests/')) return void res.writeHead(200, { 'content-type': MANIFEST_TYPE }).end(manifest(d, data.length));
      res.writeHead(206, { 'content-range': `bytes 10-19/${data.length}` }).end(data.subarray(10, 15));
    };
    await assert.rejects(
      (async () => {
        for await (const _ of await blob.read(10, 19));
      })(),
      badAnswer(/5 bytes for a range of 10/),
    );
  });

  it('never sends credentials to a plain-HTTP token service off this machine', async () => {
    main.fn = (_req, res) =>
      res.writeHead(401, { 'www-authenticate': 'Bearer realm="http://auth.example.invalid/token",service="x"' }).end();
    const withPassword = new OciBlobStore({
      target: { origin: a.origin, repo: 'x/y', display: 'oci+http://fake/x/y' },
      credentials: { username: 'u', password: 'pw-never-in-clear' },
      dispatcher: new Agent(),
    });
    try {
      await assert.rejects(withPassword.has(d), badAnswer(/token service http:\/\/auth\.example\.invalid is plain HTTP off this machine/));
    } finally {
      await withPassword.close();
    }
  });

  it('names a registry that is not there', async () => {
    const gone = new OciBlobStore({
      target: { origin: 'http://127.0.0.1:1', repo: 'x', display: 'oci+http://127.0.0.1:1/x' },
      dispatcher: new Agent(),
    });
    try {
      await assert.rejects(
        gone.has(d),
        (e: unknown) =>
          e instanceof PilotError && e.code === 'registry_unreachable' && e.retryable && /127\.0\.0\.1:1\/x .*ECONNREFUSED/.test(e.message),
      );
    } finally {
      await gone.close();
    }
  });
});
