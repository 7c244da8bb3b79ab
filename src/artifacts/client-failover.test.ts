import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { connect, createServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ServerChooser } from '../api/failover.js';
import { PilotError } from '../core/errors.js';
import { ArtifactClient } from './client.js';
import { startTestServer, type TestServer } from './test-server.fixture.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const noWait = { sleep: async (): Promise<void> => undefined };

describe('ArtifactClient with several replicas', () => {
  let srv: TestServer;
  let dir: string;
  const data = randomBytes(4 * 1024 * 1024 + 5);
  const digest = sha(data);
  const sockets = new Set<Socket>();
  const servers: (Server | TcpServer)[] = [];
  let refusing: string;
  let unavailable: string;
  let cutting: string;
  let lying: string;
  let cut = 0;

  async function listen(s: Server | TcpServer): Promise<string> {
    s.on('connection', (c: Socket) => {
      sockets.add(c);
      c.on('close', () => sockets.delete(c));
    });
    s.listen(0, '127.0.0.1');
    await once(s, 'listening');
    servers.push(s);
    return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  }

  before(async () => {
    srv = await startTestServer();
    dir = await mkdtemp(join(tmpdir(), 'pilot-client-failover-'));
    const file = join(dir, 'artifact.tgz');
    await writeFile(file, data);
    await new ArtifactClient(srv.url, 'tok').upload(file, digest);
    const real = new URL(srv.url);
    const probe = createServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    refusing = `http://127.0.0.1:${(probe.address() as AddressInfo).port}`;
    await new Promise((r) => probe.close(r));
    unavailable = await listen(
      createHttpServer((_req, res) =>
        res
          .writeHead(503, { 'content-type': 'application/json' })
          .end(JSON.stringify({ error: { code: 'unavailable', message: 'not ready', retryable: true } })),
      ),
    );
    // A relay to the real repository that drops the connection after 256 KiB of the answer.
    cutting = await listen(
      createServer((c) => {
        const up = connect(Number(real.port), real.hostname);
        sockets.add(up);
        let passed = 0;
        c.pipe(up);
        up.on('data', (chunk: Buffer) => {
          passed += chunk.length;
          if (passed > 256 * 1024) {
            cut += 1;
            c.destroy();
            up.destroy();
          } else c.write(chunk);
        });
        c.on('error', () => up.destroy());
        up.on('error', () => c.destroy());
      }),
    );
    // Answers 200 with other bytes: the digest check must catch it, on any replica.
    lying = await listen(createHttpServer((_req, res) => res.writeHead(200).end(randomBytes(1000))));
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    await srv.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('downloads from the replica that answers, past a refusing one and a 503', async () => {
    const client = new ArtifactClient(new ServerChooser([refusing, unavailable, srv.url], noWait), 'tok');
    const dest = join(dir, 'a');
    assert.deepEqual(await client.download(digest, dest), { size: data.length });
    assert.ok((await readFile(dest)).equals(data));
    assert.equal(await client.exists(digest), true);
  });

  it('starts over on the next replica when the connection drops mid-download, leaving no partial file', async () => {
    const client = new ArtifactClient(new ServerChooser([cutting, srv.url], noWait), 'tok');
    const dest = join(dir, 'b');
    assert.deepEqual(await client.download(digest, dest), { size: data.length });
    assert.equal(cut, 1);
    assert.ok((await readFile(dest)).equals(data));
    assert.deepEqual(
      (await readdir(dir)).filter((n) => n.includes('.partial-')),
      [],
    );
  });

  it('still checks the digest: wrong bytes from a replica are an error, not a reason to try the next', async () => {
    const client = new ArtifactClient(new ServerChooser([lying, srv.url], noWait), 'tok');
    await assert.rejects(client.download(digest, join(dir, 'c')), (e: unknown) => e instanceof PilotError && e.code === 'digest_mismatch');
    assert.deepEqual(
      (await readdir(dir)).filter((n) => n === 'c' || n.includes('.partial-')),
      [],
    );
  });

  it('uploads through the next replica when the first refuses the connection', async () => {
    const other = randomBytes(10_000);
    const f = join(dir, 'other.tgz');
    await writeFile(f, other);
    const client = new ArtifactClient(new ServerChooser([refusing, unavailable, srv.url], noWait), 'tok');
    assert.deepEqual(await client.upload(f, sha(other)), { uploaded: true, bytes: other.length });
    assert.equal(await new ArtifactClient(srv.url, 'tok').exists(sha(other)), true);
  });

  it('names every replica and its answer when none has it', async () => {
    const client = new ArtifactClient(new ServerChooser([refusing, unavailable], noWait), 'tok');
    await assert.rejects(client.download(digest, join(dir, 'd')), (e: unknown) => {
      assert.ok(e instanceof PilotError);
      assert.equal(e.code, 'server_unreachable');
      assert.equal(e.message, `no Pilot server answered: ${refusing} (connection refused), ${unavailable} (HTTP 503: not ready)`);
      return true;
    });
  });
});
