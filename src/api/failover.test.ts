import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { PilotError } from '../core/errors.js';
import { ApiClient } from './client.js';
import { ServerChooser } from './failover.js';
import { parseServerList } from './server-list.js';

/** Real local servers, one per way a replica can fail. */
const hits: Record<string, number> = { fine: 0, unavailable: 0, hanging: 0, resetAfterRead: 0, resetOnAccept: 0, fine2: 0 };
const servers: (Server | TcpServer)[] = [];
const sockets = new Set<Socket>();
const url: Record<string, string> = {};

async function listen(name: string, s: Server | TcpServer): Promise<void> {
  s.on('connection', (c: Socket) => {
    sockets.add(c);
    c.on('close', () => sockets.delete(c));
  });
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  servers.push(s);
  url[name] = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

function answering(name: string, status: number): Server {
  return createServer((req, res) => {
    hits[name] = (hits[name] ?? 0) + 1;
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const type = req.url === '/events' && status === 200 ? 'text/event-stream' : 'application/json';
      res.writeHead(status, { 'content-type': type });
      if (status === 503) res.end(JSON.stringify({ error: { code: 'unavailable', message: 'replica shutting down', retryable: true } }));
      else if (req.url === '/events') res.end(`id: 7\nevent: x\ndata: {"from":"${name}"}\n\n`);
      else res.end(JSON.stringify({ from: name, method: req.method, body }));
    });
  });
}

before(async () => {
  await listen('fine', answering('fine', 200));
  await listen('fine2', answering('fine2', 200));
  await listen('unavailable', answering('unavailable', 503));
  await listen(
    'hanging',
    createServer(() => {
      hits.hanging! += 1; // accepts, reads, never answers
    }),
  );
  // Reads the request's first bytes, then resets: the request arrived.
  await listen(
    'resetAfterRead',
    createTcpServer((c) => {
      c.once('data', () => {
        hits.resetAfterRead! += 1;
        c.resetAndDestroy();
      });
    }),
  );
  // Resets the connection as soon as it is accepted, before the client could write.
  await listen(
    'resetOnAccept',
    createTcpServer((c) => {
      hits.resetOnAccept! += 1;
      c.resetAndDestroy();
    }),
  );
  // A port nothing listens on: connection refused.
  const closed = createTcpServer();
  closed.listen(0, '127.0.0.1');
  await once(closed, 'listening');
  url.refusing = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
  await new Promise((r) => closed.close(r));
});
after(async () => {
  for (const c of sockets) c.destroy();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

const list = (...names: string[]): string[] => names.map((n) => url[n]!);
const reset = (): void => {
  for (const k of Object.keys(hits)) hits[k] = 0;
};
const noWait = { sleep: async (): Promise<void> => undefined };

async function failure(p: Promise<unknown>): Promise<PilotError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof PilotError, `a PilotError, not ${String(err)}`);
    return err;
  }
  assert.fail('expected a failure');
}

for (const transport of ['fetch', 'node-http'] as const) {
  describe(`ApiClient with several addresses (${transport})`, () => {
    it('passes a GET over refusing, resetting, hanging and 503 replicas to the one that answers, and stays there', async () => {
      reset();
      const chooser = new ServerChooser(list('refusing', 'resetAfterRead', 'hanging', 'unavailable', 'fine'), noWait);
      const api = new ApiClient(chooser, 't', transport);
      const r = await api.call<{ from: string }>('GET', '/x', undefined, { timeoutMs: 500 });
      assert.equal(r.from, 'fine');
      assert.deepEqual([hits.resetAfterRead, hits.hanging, hits.unavailable, hits.fine], [1, 1, 1, 1]);
      assert.equal(api.baseUrl, url.fine);
      // Stays on the one that works: the next calls go there first.
      await api.call('GET', '/y');
      await api.call('GET', '/z');
      assert.deepEqual([hits.resetAfterRead, hits.hanging, hits.unavailable, hits.fine], [1, 1, 1, 3]);
    });

    it('sends a POST elsewhere when the connection was refused (it never arrived)', async () => {
      reset();
      const api = new ApiClient(new ServerChooser(list('refusing', 'fine'), noWait), 't', transport);
      const r = await api.call<{ from: string; body: string }>('POST', '/runs', { a: 1 });
      assert.deepEqual([r.from, r.body], ['fine', '{"a":1}']);
    });

    it('reports a POST the replica may have received (reset after reading it), and sends nothing twice', async () => {
      reset();
      const api = new ApiClient(new ServerChooser(list('resetAfterRead', 'fine'), noWait), 't', transport);
      const e = await failure(api.call('POST', '/runs', { a: 1 }));
      assert.equal(e.code, 'server_unreachable');
      assert.match(e.message, new RegExp(`${url.resetAfterRead}: .*not retried on another address, as it may have received the request`));
      assert.equal(hits.fine, 0);
      // The next request goes to the next address.
      assert.equal((await api.call<{ from: string }>('POST', '/runs', {})).from, 'fine');
    });

    it('retries a POST marked idempotent (a level-triggered sync) after a reset', async () => {
      reset();
      const api = new ApiClient(new ServerChooser(list('resetAfterRead', 'fine'), noWait), 't', transport);
      assert.equal((await api.call<{ from: string }>('POST', '/sync', {}, { idempotent: true })).from, 'fine');
    });

    it('makes a body given as a function again for each address: a retried report carries the state of when it is sent', async () => {
      reset();
      const api = new ApiClient(new ServerChooser(list('resetAfterRead', 'fine'), noWait), 't', transport);
      let state = 'pending';
      const r = await api.call<{ from: string; body: string }>(
        'POST',
        '/sync',
        () => {
          const report = { state };
          state = 'ready'; // what the caller's state became while the first attempt was held
          return report;
        },
        { idempotent: true },
      );
      assert.equal(hits.resetAfterRead, 1);
      assert.deepEqual([r.from, JSON.parse(r.body)], ['fine', { state: 'ready' }]);
    });

    it("reports a replica's 503 to a POST (it was received), and moves on for the next request", async () => {
      reset();
      const api = new ApiClient(new ServerChooser(list('unavailable', 'fine'), noWait), 't', transport);
      const e = await failure(api.call('POST', '/runs', {}));
      assert.deepEqual([e.code, e.message], ['unavailable', 'replica shutting down']);
      assert.equal(hits.fine, 0);
      assert.equal(api.baseUrl, url.fine);
    });

    it('lists every address and what it answered when none works', async () => {
      reset();
      const api = new ApiClient(new ServerChooser(list('refusing', 'unavailable', 'hanging', 'resetAfterRead'), noWait), 't', transport);
      const e = await failure(api.call('GET', '/x', undefined, { timeoutMs: 300 }));
      assert.equal(e.code, 'server_unreachable');
      assert.equal(
        e.message,
        `no Pilot server answered: ${url.refusing} (connection refused), ${url.unavailable} (HTTP 503: replica shutting down), ` +
          `${url.hanging} (no answer in time), ${url.resetAfterRead} (connection reset)`,
      );
      assert.match(e.hint ?? '', /at least one of these control-plane replicas/);
    });

    it('keeps the single-address behaviour: one attempt, its own error', async () => {
      reset();
      const api = new ApiClient(url.resetAfterRead!, 't', transport);
      const e = await failure(api.call('GET', '/x'));
      assert.equal(e.code, 'server_unreachable');
      assert.match(e.message, new RegExp(`^cannot reach the Pilot server at ${url.resetAfterRead}: `));
      assert.equal(hits.resetAfterRead, 1);
      const down = await failure(new ApiClient(url.unavailable!, 't', transport).call('GET', '/x'));
      assert.equal(down.code, 'unavailable');
    });
  });
}

describe('ServerChooser', () => {
  it('sends a POST elsewhere when the reset came before any byte of it was written (node:http)', async () => {
    reset();
    const api = new ApiClient(new ServerChooser(list('resetOnAccept', 'fine'), noWait), 't', 'node-http');
    assert.equal((await api.call<{ from: string }>('POST', '/runs', {})).from, 'fine');
    assert.equal(hits.resetOnAccept, 1);
  });

  it('waits before a new round after a whole round failed, longer each round, and forgets on success', async () => {
    const waits: number[] = [];
    const chooser = new ServerChooser(list('refusing', 'unavailable'), { sleep: async (ms) => void waits.push(ms) });
    const api = new ApiClient(chooser, 't');
    for (let i = 0; i < 6; i++) await failure(api.call('GET', '/x'));
    assert.deepEqual(waits, [200, 400, 800, 1600, 2000]);
    const healed = new ServerChooser(list('refusing', 'fine'), { sleep: async (ms) => void waits.push(ms) });
    await new ApiClient(healed, 't').call('GET', '/x');
    assert.equal(waits.length, 5);
  });

  it("opens a stream on the next replica, and the caller's own abort is not a replica's failure", async () => {
    reset();
    const api = new ApiClient(new ServerChooser(list('refusing', 'unavailable', 'fine'), noWait), 't');
    const res = await api.open('/events', { accept: 'text/event-stream' }, new AbortController().signal);
    assert.match(await res.text(), /"from":"fine"/);
    const aborted = new AbortController();
    aborted.abort();
    const api2 = new ApiClient(new ServerChooser(list('fine', 'fine2'), noWait), 't');
    await assert.rejects(api2.open('/events', {}, aborted.signal));
    assert.equal(hits.fine2, 0);
    assert.equal(api2.baseUrl, url.fine);
  });

  it('tells of each address that failed (a log line for the operator), never with one address', async () => {
    const told: string[] = [];
    const onFailure = (server: string, why: string): number => told.push(`${server} ${why}`);
    await new ApiClient(new ServerChooser(list('refusing', 'unavailable', 'fine'), { ...noWait, onFailure }), 't').call('GET', '/x');
    assert.deepEqual(told, [`${url.refusing} connection refused`, `${url.unavailable} HTTP 503: replica shutting down`]);
    await failure(new ApiClient(ServerChooser.from(url.refusing!, '--server', onFailure), 't').call('GET', '/x'));
    assert.equal(told.length, 2);
  });

  it('moves off a stream that dropped when told (failed)', () => {
    const c = new ServerChooser(['http://a', 'http://b', 'http://c']);
    c.failed('http://b'); // not the current one: nothing changes
    assert.equal(c.current, 'http://a');
    c.failed();
    c.failed();
    c.failed();
    assert.equal(c.current, 'http://a');
  });
});

describe('parseServerList', () => {
  it('takes a list with spaces and trailing slashes', () => {
    assert.deepEqual(parseServerList(' http://cp1:7070/ , https://cp2.example:7443,http://[::1]:7070', '--server'), [
      'http://cp1:7070',
      'https://cp2.example:7443',
      'http://[::1]:7070',
    ]);
  });

  const refused: [string, RegExp][] = [
    ['http://a:1,,http://b:1', /^--server: entry 2 of 3 is empty/],
    ['http://a:1,', /^--server: entry 2 of 2 is empty/],
    [',http://a:1', /^--server: entry 1 of 2 is empty/],
    ['http://a:1,cp2:7070', /^--server: "cp2:7070" is not a server address: cp2: is not http or https/],
    ['http://a:1,10.0.0.5:7070', /^--server: "10.0.0.5:7070" is not a server address: not a URL/],
    ['http://a:1,ftp://b', /"ftp:\/\/b" is not a server address: ftp: is not http or https/],
    ['http://a:1,http://admin:s3cret@b:1', /"http:\/\/b:1" is not a server address: a user or password/],
    ['http://a:1,http://b:1/?x=1', /a base URL has no \?query/],
    ['http://a:1,http://b:1,http://a:1/', /^--server: http:\/\/a:1 is given twice \(entries 1 and 3\)/],
    ['http://A:1,http://a:1', /is given twice/],
    ['http://a:80,http://a', /is given twice/],
  ];
  for (const [text, message] of refused)
    it(`refuses ${JSON.stringify(text)} naming the entry`, () => {
      try {
        parseServerList(text, '--server');
        assert.fail('accepted');
      } catch (err) {
        assert.ok(err instanceof PilotError);
        assert.equal(err.code, 'invalid_argument');
        assert.match(err.message, message);
        assert.doesNotMatch(err.message, /s3cret/);
        assert.match(err.hint ?? '', /--server|once/);
      }
    });
});
