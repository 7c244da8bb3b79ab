import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Pool } from 'undici';
import { startRouter, type Router } from './proxy.js';
import { RoutingTable } from './routing-table.js';
import { closedPort, send, startUpstream, type Echo, type TestUpstream, routeOf } from './test-support.js';

describe('router: weighted backends and the X-Pilot-Revision pin', () => {
  const table = new RoutingTable();
  let router: Router;
  let client: Pool;
  let v1: TestUpstream; // revision 1, two instances on two "nodes"
  let v1b: TestUpstream;
  let v2: TestUpstream; // revision 2

  before(async () => {
    v1 = await startUpstream('v1');
    v1b = await startUpstream('v1b', undefined, '127.0.0.2');
    v2 = await startUpstream('v2', undefined, '127.0.0.3');
    router = await startRouter({ host: '127.0.0.1', port: 0, table });
    client = new Pool(router.url, { connections: 16 });
  });
  after(async () => {
    await client.close();
    await router.close();
    await Promise.all([v1.close(), v1b.close(), v2.close()]);
  });

  const ups = (): ReturnType<TestUpstream['upstream']>[] => [v1.upstream('hello', 1), v1b.upstream('hello', 1), v2.upstream('hello', 2)];
  const served = async (n: number, concurrency: number, headers?: Record<string, string>): Promise<Map<string, number>> => {
    const counts = new Map<string, number>();
    let left = n;
    const loop = async (): Promise<void> => {
      while (left-- > 0) {
        const r = await send(client, 'hello.localhost', { headers });
        assert.equal(r.status, 200, r.text);
        const name = (JSON.parse(r.text) as Echo).name;
        counts.set(name, (counts.get(name) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, loop));
    return counts;
  };

  it('splits real traffic 90/10 between two revisions, sequential and concurrent', async () => {
    table.set([routeOf('hello', ['hello.localhost'], ups(), { 1: 90, 2: 10 })]);
    for (const concurrency of [1, 8]) {
      const counts = await served(400, concurrency);
      const second = counts.get('v2') ?? 0;
      // Smooth weighted round-robin gives exactly 40; the tolerance only allows for the machine.
      assert.ok(second >= 25 && second <= 60, `revision 2 served ${second} of 400 (concurrency ${concurrency})`);
      assert.equal((counts.get('v1') ?? 0) + (counts.get('v1b') ?? 0) + second, 400);
      assert.ok((counts.get('v1') ?? 0) > 100 && (counts.get('v1b') ?? 0) > 100, 'both instances of revision 1 take their share');
    }
  });

  it('sends nothing to a weight-0 revision, and answers 502 when only a weight-0 revision has instances', async () => {
    table.set([routeOf('hello', ['hello.localhost'], ups(), { 1: 100, 2: 0 })]);
    const before = v2.requests;
    const counts = await served(100, 4);
    assert.equal(counts.get('v2'), undefined);
    assert.equal(v2.requests, before);
    table.set([
      {
        app: 'hello',
        hosts: ['hello.localhost'],
        backends: [
          { revision: 1, weight: 100, upstreams: [] },
          { revision: 2, weight: 0, upstreams: [v2.upstream('hello', 2)] },
        ],
      },
    ]);
    const r = await send(client, 'hello.localhost');
    assert.equal(r.status, 502);
    assert.match(r.text, /no ready instance of app "hello"/);
  });

  it('sends a request pinned with X-Pilot-Revision to that revision, whatever its weight, and strips the header', async () => {
    table.set([routeOf('hello', ['hello.localhost'], ups(), { 1: 100, 2: 0 })]);
    for (let k = 0; k < 10; k++) {
      const r = await send(client, 'hello.localhost', { headers: { 'X-Pilot-Revision': '2' } });
      assert.equal(r.status, 200);
      const echo = JSON.parse(r.text) as Echo;
      assert.equal(echo.name, 'v2');
      assert.equal(echo.headers['x-pilot-revision'], undefined, "the pin is the router's, not the app's");
    }
    const pinnedToOne = await served(20, 2, { 'x-pilot-revision': ' 1 ' });
    assert.equal(pinnedToOne.get('v2'), undefined);
    // Only weight-0 upstreams: the pin still reaches them (testing a revision before promoting it).
    table.set([{ app: 'hello', hosts: ['hello.localhost'], backends: [{ revision: 2, weight: 0, upstreams: [v2.upstream('hello', 2)] }] }]);
    assert.equal((await send(client, 'hello.localhost', { headers: { 'x-pilot-revision': '2' } })).status, 200);
  });

  it('falls back to the usual pick for a pin to a revision without instances, and ignores a pin that is not a revision number', async () => {
    table.set([routeOf('hello', ['hello.localhost'], ups(), { 1: 100, 2: 0 })]);
    for (const pin of ['3', '0', '-2', 'two', '2, 2', '1e1', '99999999999']) {
      const r = await send(client, 'hello.localhost', { headers: { 'x-pilot-revision': pin } });
      assert.equal(r.status, 200, `pin ${JSON.stringify(pin)}`);
      assert.notEqual((JSON.parse(r.text) as Echo).name, 'v2', `pin ${JSON.stringify(pin)}`);
    }
  });

  it('retries a refused connection within the pinned revision only when it has another instance, else by weight', async () => {
    const refused = { id: 'refused', app: 'hello', revision: 2, host: '127.0.0.1', port: await closedPort() };
    table.set([routeOf('hello', ['hello.localhost'], [...ups(), refused], { 1: 100, 2: 0 })]);
    for (let k = 0; k < 6; k++) {
      const r = await send(client, 'hello.localhost', { headers: { 'x-pilot-revision': '2' } });
      assert.equal(r.status, 200);
      assert.equal((JSON.parse(r.text) as Echo).name, 'v2');
    }
  });

  it('pins a WebSocket upgrade too', async () => {
    v2.server.on('upgrade', (_req, socket: net.Socket) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
      socket.on('data', (c: Buffer) => socket.write(`v2:${c.toString()}`));
    });
    table.set([routeOf('hello', ['hello.localhost'], ups(), { 1: 100, 2: 0 })]);
    const socket = net.connect(router.port, '127.0.0.1');
    try {
      socket.write('GET /ws HTTP/1.1\r\nHost: hello.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Pilot-Revision: 2\r\n\r\n');
      const head = await new Promise<string>((resolve) => socket.once('data', (c: Buffer) => resolve(c.toString())));
      assert.match(head, /^HTTP\/1\.1 101 /);
      socket.write('ping');
      assert.equal(await new Promise<string>((resolve) => socket.once('data', (c: Buffer) => resolve(c.toString()))), 'v2:ping');
    } finally {
      socket.destroy();
    }
  });
});
