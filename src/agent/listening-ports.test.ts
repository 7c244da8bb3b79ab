import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { elsewhereNote, listeningPorts, parseProcNetTcp, portOwnedBy } from './listening-ports.js';

const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0 100 0 0 10 0
   1: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0 100 0 0 10 0
   2: 0100007F:1F40 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 333 1 0 20 4 30 10 -1
`;
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 444 1 0 100 0 0 10 0
   1: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1 0 100 0 0 10 0
`;

describe('listening ports', () => {
  it('reads the listening sockets of /proc/net/tcp and tcp6, skipping connections', () => {
    assert.deepEqual(
      [...parseProcNetTcp(TCP)],
      [
        ['111', { address: '127.0.0.1', port: 8000 }],
        ['222', { address: '0.0.0.0', port: 3000 }],
      ],
    );
    assert.deepEqual(
      [...parseProcNetTcp(TCP6)],
      [
        ['444', { address: '::', port: 8080 }],
        ['555', { address: '::1', port: 80 }],
      ],
    );
    assert.deepEqual([...parseProcNetTcp('garbage\nmore garbage')], []);
  });

  it('says where the app listens when it is not $PORT, and nothing when it is or when unknown', () => {
    assert.equal(
      elsewhereNote([{ address: '0.0.0.0', port: 8000 }], 41234),
      'the app listens on 0.0.0.0:8000, not on PORT=41234: make it listen on process.env.PORT, or set `port: 8000` in pilot.yaml',
    );
    assert.match(elsewhereNote([{ address: '::', port: 3000 }], 1) ?? '', /listens on \[::\]:3000, .* set `port: 3000`/);
    // Loopback only (hapi's `host: 'localhost'`): a fixed port would not be reachable in its namespace.
    assert.equal(
      elsewhereNote([{ address: '127.0.0.1', port: 8000 }], 41234),
      'the app listens on 127.0.0.1:8000, not on PORT=41234: make it listen on process.env.PORT',
    );
    assert.equal(
      elsewhereNote(
        [
          { address: '0.0.0.0', port: 41234 },
          { address: '127.0.0.1', port: 9229 },
        ],
        41234,
      ),
      undefined,
    );
    assert.equal(elsewhereNote([], 41234), undefined);
  });

  const children: number[] = [];
  after(() => {
    for (const pid of children)
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        /* gone */
      }
  });

  it(
    'finds the port a real child process group listens on (Linux /proc)',
    { skip: process.platform !== 'linux' && 'needs /proc' },
    async () => {
      const child = spawn(
        process.execPath,
        ['-e', "require('http').createServer().listen(0, '127.0.0.1', function () { console.log(this.address().port) })"],
        { detached: true, stdio: ['ignore', 'pipe', 'ignore'] },
      );
      children.push(child.pid!);
      const port = await new Promise<number>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(Number(String(d).trim()))));
      assert.deepEqual(await listeningPorts(child.pid!), [{ address: '127.0.0.1', port }]);
      assert.deepEqual(await listeningPorts(2 ** 22 + 7), []);
    },
  );
});

describe('portOwnedBy', () => {
  it("tells this instance's socket from another process's on the same port, and says nothing when no one listens", async () => {
    const srv = createServer().listen(0, '0.0.0.0');
    await once(srv, 'listening');
    const port = (srv.address() as AddressInfo).port;
    const other = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
    try {
      assert.equal(await portOwnedBy(other.pid!, port), false, 'another group answers on it');
      assert.equal(await portOwnedBy(other.pid!, 1), undefined, 'nobody listens on port 1');
    } finally {
      other.kill('SIGKILL');
      srv.close();
    }
  });
});
