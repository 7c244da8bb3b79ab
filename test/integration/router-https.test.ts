/**
 * HTTPS on every router: `pilot server` with PILOT_HTTPS_PORT and ACME (Debian's pebble), so its
 * router runs in a process of its own with --https-port, and a node (127.0.0.2) with
 * `pilot agent --router-port P --https-port Q`. One app, two hosts: one with a certificate given by
 * the user (`pilot certs set`), one issued by pebble through HTTP-01 (answered by the router process
 * on 127.0.0.1). Then:
 *   - both routers serve HTTPS for both hosts, the chain checked against pebble's root;
 *   - `pilot nodes` shows the node's router (ports, table version applied, last sync);
 *   - a renewal whose challenge the CA sends to the node (the host resolved to 127.0.0.2) reaches
 *     both routers without a restart;
 *   - the control plane is killed (kill -9): both keep serving HTTPS;
 *   - the node is restarted with the control plane still down: its router serves HTTPS from its
 *     saved copy.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import type tls from 'node:tls';
import { allocatePort } from '../../src/os/ports.js';
import { pebbleInstalled, startPebble, type Pebble } from '../../src/control/test-pebble.js';
import { git, Harness, makeRepo, ROOT, tempDir, waitFor } from './harness.js';
import { selfSigned } from '../../src/os/test-certs.js';

const h = new Harness();
const node = { name: 'n1', address: '127.0.0.2', home: '', proc: undefined as ChildProcess | undefined };
const ACME_HOST = 'acme.pilot.test';
const USER_HOST = 'mine.pilot.test';

interface Answer {
  status: number;
  body: string;
  serial: string;
}

/** GET https://servername/ at address:port, the chain checked against `ca`. */
function httpsGet(address: string, port: number, servername: string, ca: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      { host: address, port, servername, path: '/', headers: { host: servername }, ca, agent: false, timeout: 10_000 },
      (res) => {
        const serial = new X509Certificate((res.socket as tls.TLSSocket).getPeerCertificate(false).raw).serialNumber;
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, serial }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

describe(
  'HTTPS on the router process and on node routers',
  { timeout: 420_000, skip: pebbleInstalled() ? false : 'pebble is not installed' },
  () => {
    let pebble: Pebble;
    let routerPort = 0;
    let httpsPort = 0;
    let nodeHttpsPort = 0;
    let root = '';
    let user: { cert: string; key: string };
    const dir = h.track(tempDir('https-certs'));

    const startNode = (until = 'joined'): Promise<ChildProcess> =>
      h.startAgent(
        node.name,
        node.address,
        node.home,
        {},
        {
          args: ['--router-port', String(routerPort), '--https-port', String(nodeHttpsPort)],
          until,
        },
      );

    /** Every router serves both hosts over HTTPS, the ACME host with `serial` when given. */
    async function bothServe(serial?: string): Promise<void> {
      for (const [address, port] of [
        ['127.0.0.1', httpsPort],
        [node.address, nodeHttpsPort],
      ] as const) {
        const a = await httpsGet(address, port, ACME_HOST, root);
        assert.equal(a.status, 200, `${address} ${ACME_HOST}: ${a.body}`);
        assert.match(a.body, /hello/);
        if (serial !== undefined) assert.equal(a.serial, serial, `${address} serves the current certificate`);
        const u = await httpsGet(address, port, USER_HOST, user.cert);
        assert.equal(u.status, 200, `${address} ${USER_HOST}: ${u.body}`);
        assert.equal(u.serial, new X509Certificate(user.cert).serialNumber);
      }
    }

    let apiPort = 0;
    const serverEnv = (port: number): Record<string, string> => ({
      PILOT_HTTPS_PORT: String(port),
      PILOT_ACME_DIRECTORY: pebble.directoryUrl,
      PILOT_ACME_CA_FILE: join(dir, 'pebble-api.pem'),
      PILOT_CERT_CHECK_MS: '1000',
    });
    const routerInfo = (): { pid: number; httpsPort?: number } =>
      JSON.parse(readFileSync(join(h.home, 'router', 'router.json'), 'utf8')) as { pid: number; httpsPort?: number };

    const acmeView = async (): Promise<any> =>
      ((await h.apiCall('GET', '/api/v1/certs')).json.certificates as any[]).find((c) => c.host === ACME_HOST);

    before(async () => {
      // One port number free on every address: the router process listens on it at 127.0.0.1, the
      // node router at 127.0.0.2, and pebble validates HTTP-01 on it at whichever the host resolves to.
      routerPort = await allocatePort('0.0.0.0');
      httpsPort = await allocatePort('127.0.0.1');
      nodeHttpsPort = await allocatePort(node.address);
      pebble = await startPebble(routerPort, await allocatePort('127.0.0.1'));
      root = await pebble.rootPem();
      writeFileSync(join(dir, 'pebble-api.pem'), pebble.apiCaPem);
      const mine = selfSigned(dir, 'mine', [USER_HOST]);
      user = { cert: mine.cert, key: mine.key };
      apiPort = await allocatePort('127.0.0.1');
      await h.startUp(serverEnv(httpsPort), 'server', { api: apiPort, router: routerPort });
      node.home = h.track(tempDir(node.name));
      node.proc = await startNode();
    });
    after(async () => {
      await h.cleanup();
      await pebble?.stop();
    });

    it('serves a user certificate and one issued by pebble on the router process and on the node router', async () => {
      // The router process, in its own process, serves HTTPS (no more "in this process").
      const routerFile = JSON.parse(readFileSync(join(h.home, 'router', 'router.json'), 'utf8')) as { pid: number; httpsPort?: number };
      assert.equal(routerFile.httpsPort, httpsPort);
      assert.notEqual(routerFile.pid, h.up!.pid);
      const set = await h.cli(['certs', 'set', USER_HOST, '--cert', join(dir, 'mine.crt'), '--key', join(dir, 'mine.key')]);
      assert.equal(set.code, 0, set.stdout + set.stderr);
      const app = h.track(await makeRepo(join(ROOT, 'examples/hello')));
      writeFileSync(
        join(app, 'pilot.yaml'),
        readFileSync(join(app, 'pilot.yaml'), 'utf8') + `hosts:\n  - ${ACME_HOST}\n  - ${USER_HOST}\n`,
      );
      await git(app, 'commit', '-qam', 'two hosts');
      const run = await h.cli(['run', app]);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      const issued = await waitFor(
        'pebble to issue the certificate',
        async () => {
          const c = await acmeView();
          return c?.state === 'valid' ? c : undefined;
        },
        120_000,
      );
      assert.match(issued.issuer, /Pebble/i);
      await waitFor(
        'both routers to serve HTTPS for both hosts',
        async () => {
          try {
            await bothServe();
            return true;
          } catch {
            return undefined;
          }
        },
        60_000,
      );
      await bothServe();
      // Saved privately on both routers' machines.
      for (const f of [join(h.home, 'router', 'tls.json'), join(node.home, 'agent', 'router', 'tls.json')]) {
        assert.equal(statSync(f).mode & 0o777, 0o600, f);
        assert.equal(statSync(join(f, '..')).mode & 0o777, 0o700, f);
      }
      // No key in any log.
      const keyLine = user.key.split('\n')[1]!;
      for (const f of [join(h.home, 'logs', 'pilot.log'), join(h.home, 'logs', 'router.log')])
        assert.ok(!readFileSync(f, 'utf8').includes(keyLine), `${f} holds the key`);
    });

    it('shows the node router in `pilot nodes`', async () => {
      const json = JSON.parse((await h.cli(['nodes', '--json'])).stdout) as { nodes: any[] };
      const r = json.nodes.find((n) => n.name === node.name).router;
      assert.equal(r.port, routerPort);
      assert.equal(r.httpsPort, nodeHttpsPort);
      assert.equal(r.current, true);
      assert.match(r.tableVersion, /^[0-9a-f]+\.\d+$/);
      assert.ok(Date.now() - r.lastSyncAt < 60_000);
      const text = (await h.cli(['nodes'])).stdout;
      assert.match(text, /ROUTER/);
      assert.match(text, new RegExp(`${routerPort} https:${nodeHttpsPort}`));
      // Its metrics, relayed by the control plane (admin token), counted what it served.
      const m = await h.apiCall('GET', `/api/v1/nodes/${node.name}/router/metrics`);
      assert.equal(m.status, 200);
      assert.match(String(m.json), /pilot_router_requests_total\{app="hello",revision="1",code="200"\}/);
      assert.equal((await h.apiCall('GET', `/api/v1/nodes/${node.name}/router/metrics`, undefined, null)).status, 401);
    });

    it('a renewal validated through the node router reaches both routers without a restart', async () => {
      const before = (await httpsGet('127.0.0.1', httpsPort, ACME_HOST, root)).serial;
      // The CA now reaches the host at the node: only the node router can answer the challenge.
      await pebble.resolve(ACME_HOST, node.address);
      const renew = await h.cli(['certs', 'renew', ACME_HOST]);
      assert.equal(renew.code, 0, renew.stdout + renew.stderr);
      const c = await acmeView();
      assert.equal(c.state, 'valid', JSON.stringify(c));
      const after = await waitFor('the renewed certificate on both routers', async () => {
        const a = await httpsGet('127.0.0.1', httpsPort, ACME_HOST, root);
        const b = await httpsGet(node.address, nodeHttpsPort, ACME_HOST, root);
        return a.serial !== before && a.serial === b.serial ? a.serial : undefined;
      });
      await bothServe(after);
    });

    it('keeps serving HTTPS on both routers with the control plane killed, and after a node restart without it', async () => {
      const serial = (await httpsGet('127.0.0.1', httpsPort, ACME_HOST, root)).serial;
      await h.killUp('SIGKILL');
      for (let i = 0; i < 5; i++) await bothServe(serial);
      node.proc!.kill('SIGKILL');
      await new Promise((r) => node.proc!.once('exit', r));
      node.proc = await startNode('router listening on');
      for (let i = 0; i < 5; i++) await bothServe(serial);
    });

    it('a restarted control plane adopts the router process with the same HTTPS port, and replaces it for another', async () => {
      const before = routerInfo();
      await h.startUp(serverEnv(httpsPort), 'server', { api: apiPort, router: routerPort });
      assert.equal(routerInfo().pid, before.pid, 'adopted');
      await bothServe();
      // The node reconnects to the new control plane (a new epoch: it gets the table and certificates again).
      await waitFor('the node router to sync with the new control plane', async () => {
        const n = (JSON.parse((await h.cli(['nodes', '--json'])).stdout) as { nodes: any[] }).nodes.find((x) => x.name === node.name);
        return n?.router?.current === true ? true : undefined;
      });
      await h.killUp('SIGKILL');
      const other = await allocatePort('127.0.0.1');
      await h.startUp(serverEnv(other), 'server', { api: apiPort, router: routerPort });
      const now = routerInfo();
      assert.notEqual(now.pid, before.pid, 'replaced: it listened on another HTTPS port');
      assert.equal(now.httpsPort, other);
      const a = await waitFor('the new router process to serve HTTPS', async () =>
        httpsGet('127.0.0.1', other, ACME_HOST, root).then(
          (r) => (r.status === 200 ? r : undefined),
          () => undefined,
        ),
      );
      assert.match(a.body, /hello/);
    });
  },
);

describe('HTTPS port of the router process in use', { timeout: 120_000 }, () => {
  after(() => h.cleanup()); // whatever it started, even if it did not stop by itself
  it('`pilot server` stops with the port named, not a crash report', async () => {
    const busy = net.createServer();
    const port = await allocatePort('127.0.0.1');
    await new Promise<void>((r) => busy.listen(port, '127.0.0.1', r));
    const home = h.track(tempDir('https-busy'));
    try {
      const r = await h.cli(['server', '--api-port', '0', '--router-port', '0'], {
        env: { PILOT_HOME: home, PILOT_HTTPS_PORT: String(port) },
      });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(`the router cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use`));
      assert.doesNotMatch(r.stderr, /bug in Pilot/);
    } finally {
      busy.close();
    }
  });
});
