import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { allocatePort, isPortFree } from './ports.js';

/** Listen on host:port, closed after the test. */
async function listen(t: TestContext, port: number, host: string): Promise<Server> {
  const server = createServer((s) => s.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host }, resolve);
  });
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return server;
}

void describe('allocatePort', () => {
  void it('returns a port an app can then bind on all interfaces, and on a node address', async (t) => {
    const port = await allocatePort();
    assert.ok(port > 0 && port < 65536);
    await listen(t, port, '0.0.0.0');
    const other = await allocatePort();
    await listen(t, other, '127.0.0.2');
  });

  void it('does not hand out the same port twice in a row, even before the app binds it', async () => {
    const ports = new Set<number>();
    for (let i = 0; i < 50; i++) ports.add(await allocatePort());
    assert.equal(ports.size, 50);
  });

  void it('allocates on a given host', async (t) => {
    const port = await allocatePort('127.0.0.3');
    await listen(t, port, '127.0.0.3');
  });
});

void describe('isPortFree', () => {
  void it('is false while something listens on the port, true once it is released', async (t) => {
    const port = await allocatePort();
    assert.equal(await isPortFree(port), true);
    const server = await listen(t, port, '0.0.0.0');
    assert.equal(await isPortFree(port), false);
    assert.equal(await isPortFree(port, '127.0.0.2'), false, 'a wildcard listener holds every address');
    await new Promise<void>((resolve) => server.close(() => resolve()));
    assert.equal(await isPortFree(port), true);
  });

  void it('sees a listener on one node address from the wildcard address', async (t) => {
    const port = await allocatePort();
    await listen(t, port, '127.0.0.2');
    assert.equal(await isPortFree(port, '0.0.0.0'), false);
    assert.equal(await isPortFree(port, '127.0.0.3'), true, 'another node address is still free');
  });
});
