import { strict as assert } from 'node:assert';
import { createServer, type Server } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { startControlPlane, type ControlPlane } from './server.js';

interface ApiJson {
  error?: { code: string; message: string; hint: string };
  endpoint?: { id: number; kind: string; url: string; events: string[]; signed: boolean };
  endpoints?: { id: number; url: string }[];
  secret?: string;
  delivery?: { status: string; log: { code: number | null }[] };
  deliveries?: unknown[];
}

describe('notification endpoints through the API', () => {
  let cp: ControlPlane;
  let home: string;
  let receiver: Server;
  let hookUrl = '';
  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: ApiJson; text: string }> => {
    const res = await fetch(cp.apiUrl + path, {
      method,
      headers: { authorization: `Bearer ${cp.adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, json: JSON.parse(text) as ApiJson, text };
  };

  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'pilot-notifyroutes-'));
    receiver = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(204).end());
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    hookUrl = `http://user:pa55word@127.0.0.1:${(receiver.address() as { port: number }).port}/services/T/B/TOPSECRET?token=QUERYSECRET`;
    cp = await startControlPlane({
      home,
      host: '127.0.0.1',
      port: 0,
      routerHost: '127.0.0.1',
      routerPort: 0,
      logger: pino({ level: 'silent' }),
      workers: 0,
      notify: { timeoutMs: 2000, attempts: 2, backoffBaseMs: 100 },
    });
  });
  after(async () => {
    await cp?.close();
    receiver?.closeAllConnections();
    receiver?.close();
    await rm(home, { recursive: true, force: true });
  });

  it('adds, lists, tests and removes endpoints, never answering the URL or the key again', async () => {
    const added = await api('POST', '/api/v1/apps/shop/notify', { url: hookUrl, events: ['live', 'failed'] });
    assert.equal(added.status, 201, added.text);
    assert.equal(added.json.endpoint!.kind, 'json');
    assert.deepEqual(added.json.endpoint!.events, ['deploy.live', 'deploy.failed']);
    assert.match(added.json.secret ?? '', /^[0-9a-f]{64}$/, 'a generated key, answered once');
    const own = await api('POST', '/api/v1/apps/shop/notify', { url: 'https://hooks.slack.com/services/T/B/x', secret: 'k'.repeat(20) });
    assert.equal(own.json.endpoint!.kind, 'slack', 'guessed from the host');
    assert.equal(own.json.secret, undefined);
    const list = await api('GET', '/api/v1/apps/shop/notify');
    assert.deepEqual(
      list.json.endpoints!.map((e) => e.url),
      [`http://127.0.0.1:${(receiver.address() as { port: number }).port}/…`, 'https://hooks.slack.com/…'],
    );
    for (const secret of ['TOPSECRET', 'QUERYSECRET', 'pa55word', added.json.secret!]) assert.ok(!list.text.includes(secret), secret);
    const test = await api('POST', `/api/v1/apps/shop/notify/${added.json.endpoint!.id}/test`);
    assert.equal(test.json.delivery!.status, 'delivered', test.text);
    assert.deepEqual(
      test.json.delivery!.log.map((a) => a.code),
      [204],
    );
    const log = await api('GET', '/api/v1/apps/shop/notify/log?limit=5');
    assert.ok(!log.text.includes('TOPSECRET'));
    assert.equal(log.json.deliveries!.length, 1);
    assert.equal((await api('GET', '/api/v1/apps/blog/notify')).json.endpoints!.length, 0);
    const other = await api('DELETE', `/api/v1/apps/blog/notify/${added.json.endpoint!.id}`);
    assert.equal(other.status, 404, 'another app cannot remove it');
    assert.equal(other.json.error!.code, 'not_found');
    assert.equal((await api('DELETE', `/api/v1/apps/shop/notify/${own.json.endpoint!.id}`)).status, 200);
    assert.equal((await api('POST', `/api/v1/apps/shop/notify/${own.json.endpoint!.id}/test`)).status, 404);
  });

  it('refuses bad input with a code and what to fix', async () => {
    const cases: [unknown, number, string, RegExp][] = [
      [{ url: 'file:///etc/shadow' }, 400, 'invalid_notify_endpoint', /scheme "file" is refused/],
      [{ url: 'ssh://127.0.0.1:22/' }, 400, 'invalid_notify_endpoint', /only http and https/],
      [{ url: 'no url at all' }, 400, 'invalid_notify_endpoint', /not a URL/],
      [{ url: 'http://x.example/', kind: 'teams' }, 400, 'invalid_notify_endpoint', /unknown endpoint kind "teams"/],
      [{ url: 'http://x.example/', events: ['deploy.boom'] }, 400, 'invalid_notify_endpoint', /unknown notification event/],
      [{ url: 'http://x.example/', secret: 'short' }, 400, 'bad_request', /secret/],
      [{}, 400, 'bad_request', /url/],
    ];
    for (const [body, status, code, re] of cases) {
      const r = await api('POST', '/api/v1/apps/shop/notify', body);
      assert.equal(r.status, status, `${JSON.stringify(body)}: ${r.text}`);
      assert.equal(r.json.error!.code, code, r.text);
      assert.match(`${r.json.error!.message} ${JSON.stringify(r.json.error)}`, re);
      // Pilot's own refusals carry a hint; schema validation names the field (`details.validation`).
      if (code !== 'bad_request') assert.ok(r.json.error!.hint, `a hint: ${r.text}`);
    }
    const badName = await api('POST', '/api/v1/apps/..%2Fetc/notify', { url: 'http://x.example/' });
    assert.equal(badName.status, 400);
    assert.equal((await api('GET', '/api/v1/apps/shop/notify')).json.endpoints!.length, 1, 'nothing added by a refused request');
  });
});
