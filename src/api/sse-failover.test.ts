import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { sseFrame, type PilotEvent } from '../core/events.js';
import { ApiClient } from './client.js';
import { ServerChooser } from './failover.js';
import { followEvents, type FeedItem } from './sse.js';

const event = (id: number): PilotEvent => ({ id, time: 1000 + id, kind: 'rollout.started', app: 'shop', payload: { n: id } });

/** A replica's event feed: `ids` sent after Last-Event-ID, then held open (or, `die`, the whole server gone). */
async function replica(ids: number[], opts: { die?: boolean } = {}) {
  const sockets = new Set<Socket>();
  const resumedFrom: (string | undefined)[] = [];
  const server: Server = createServer((req, res) => {
    const last = req.headers['last-event-id'] as string | undefined;
    resumedFrom.push(last);
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    for (const id of ids) if (last === undefined || id > Number(last)) res.write(sseFrame(event(id)));
    if (opts.die)
      setTimeout(() => {
        server.close();
        for (const s of sockets) s.destroy(); // the replica dies: its port refuses from now on
      }, 50);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    resumedFrom,
    close: async () => {
      for (const s of sockets) s.destroy();
      if (server.listening) await new Promise((r) => server.close(r));
    },
  };
}

const servers: { close: () => Promise<void> }[] = [];
after(async () => {
  for (const s of servers) await s.close();
});

describe('followEvents with several replicas', () => {
  it('resumes on the next replica with Last-Event-ID when the one it followed dies: nothing lost, nothing twice', async () => {
    const a = await replica([1, 2, 3], { die: true });
    const b = await replica([1, 2, 3, 4, 5]);
    servers.push(a, b);
    const api = new ApiClient(new ServerChooser([a.url, b.url], { sleep: async () => undefined }), 'tok');
    const seen: number[] = [];
    const drops: string[] = [];
    const stop = new AbortController();
    const done = followEvents(api, {
      after: 0,
      signal: stop.signal,
      retryMs: 50,
      onDrop: (err) => drops.push(String((err as Error).message)),
      on: (item: FeedItem) => {
        if (item.type === 'event') seen.push(item.event.id);
        if (seen.length === 5) stop.abort();
      },
    });
    await done;
    assert.deepEqual(seen, [1, 2, 3, 4, 5]);
    assert.deepEqual(a.resumedFrom, ['0']);
    assert.deepEqual(b.resumedFrom, ['3']);
    assert.ok(drops.length >= 1);
    assert.equal(api.baseUrl, b.url);
  });
});
