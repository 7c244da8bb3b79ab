import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { AGENT_PROTOCOL } from '../api/protocol.js';
import { startControlPlane, type ControlPlane } from './server.js';

describe('node registration: a name is taken by its credential; the admin token may take it over', () => {
  let cp: ControlPlane;
  let home: string;
  before(async () => {
    home = mkdtempSync(join(tmpdir(), 'pilot-register-'));
    cp = await startControlPlane({
      home,
      host: '127.0.0.1',
      port: 0,
      routerHost: '127.0.0.1',
      routerPort: 0,
      logger: pino({ level: 'silent' }),
      workers: 0,
    });
  });
  after(async () => {
    await cp.close();
    rmSync(home, { recursive: true, force: true });
  });

  const register = async (
    token: string,
    credential?: string,
  ): Promise<{ status: number; json: { credential: string; nodeId: string; error: { message: string } } }> => {
    const res = await fetch(`${cp.apiUrl}/api/v1/agent/register`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        protocol: AGENT_PROTOCOL,
        name: 'swarm-t1',
        address: '127.0.0.1',
        apiUrl: 'http://127.0.0.1:1',
        agentToken: 'a'.repeat(32),
        ...(credential === undefined ? {} : { credential }),
      }),
    });
    return { status: res.status, json: (await res.json()) as { credential: string; nodeId: string; error: { message: string } } };
  };
  const sync = async (credential: string): Promise<number> => {
    const res = await fetch(`${cp.apiUrl}/api/v1/agent/sync`, {
      method: 'POST',
      headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' },
      body: JSON.stringify({ protocol: AGENT_PROTOCOL, instances: [] }),
    });
    await res.text();
    return res.status;
  };

  it('refuses the name to a join token without its credential, gives it to the admin token with a new credential', async () => {
    const first = await register(cp.joinToken);
    assert.equal(first.status, 201);
    const again = await register(cp.joinToken);
    assert.equal(again.status, 409);
    assert.match(again.json.error.message, /a node named "swarm-t1" is already registered/);
    assert.equal((await register(cp.joinToken, 'pilot_node_wrong')).status, 409);
    // The same node coming back with its credential keeps it.
    const back = await register(cp.joinToken, first.json.credential);
    assert.deepEqual([back.status, back.json.credential, back.json.nodeId], [200, first.json.credential, first.json.nodeId]);
    // The admin token (a Swarm bridge on a new leader): the same node, a new credential; the old one is refused from now on.
    const taken = await register(cp.adminToken);
    assert.equal(taken.status, 200);
    assert.equal(taken.json.nodeId, first.json.nodeId, 'the same node: its instances stay its own');
    assert.notEqual(taken.json.credential, first.json.credential);
    assert.equal(await sync(taken.json.credential), 200);
    assert.equal(await sync(first.json.credential), 401);
    // Neither token is a credential.
    assert.equal((await register('pilot_admin_nope')).status, 401);
  });
});
