/**
 * A Swarm deploy target across a leader failover (issue #16 parts 2 and 4): two `pilot server`
 * replicas on one PostgreSQL 15, the machine's engine as a one-node Swarm (`docker swarm init`, left
 * at the end when this test made it), an app with `target:` deployed through a follower, and a
 * request loop through the follower's router. The leader is killed with -9: the new leader's Swarm
 * bridge takes its slots back from the service labels (the same tasks, the services untouched),
 * and a rolling update through it goes live. 0 failed requests throughout.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { connectEngine } from '../../src/docker/engine.js';
import { ensureBaseImage } from '../../src/docker/test-images.js';
import { dockerSkip } from '../../src/docker/test-support.js';
import { postgresUnavailable, startPostgres, type PgCluster } from '../../src/store/test-postgres.js';
import { removeTargetObjects } from '../integration/swarm-support.js';
import { git, Harness, makeRepo, sleep, tempDir, waitFor } from '../integration/harness.js';
import { call, killReplica, leaderSeenBy, startReplica, type Replica, type ReplicaSetup } from './replicas.js';

const engine = connectEngine();
const T = `swha${process.pid}`;
const APP = `swhaapp${process.pid}`.slice(0, 30);
const ENV = { PILOT_IMAGE_PREFIX: 'pilot-test/swarm-ha' };
const LEASE_MS = 2000;
const filters = { label: [`dev.pilot.target=${T}`] };

const server = (version: string): string => `const http = require('node:http');
const s = http.createServer((req, res) => res.end(JSON.stringify({ version: '${version}', port: process.env.PORT })));
s.listen(Number(process.env.PORT), () => console.log('${version} listening on ' + process.env.PORT));
process.on('SIGTERM', () => s.close(() => process.exit(0)));
`;

const skip = dockerSkip || postgresUnavailable();

describe('fault: a Swarm target across a leader failover (two replicas on PostgreSQL)', { skip, timeout: 600_000 }, () => {
  const h = new Harness();
  const replicas: Replica[] = [];
  let pg: PgCluster | undefined;
  let initialisedHere = false;
  let repo = '';

  const setup = (url: string): ReplicaSetup => ({
    h,
    store: url,
    artifacts: h.track(tempDir('swha-artifacts')),
    leaseMs: LEASE_MS,
    env: ENV,
  });
  const instances = async (r: Replica): Promise<any[]> => (await call(h, r, 'GET', `/api/v1/apps/${APP}`)).json.instances;
  const ready = async (r: Replica): Promise<string[]> =>
    (await instances(r))
      .filter((i) => i.state === 'ready')
      .map((i) => `${i.id}@${i.containerId}`)
      .sort();

  /** Requests through a router until stopped; every answer that is not 200 is kept. */
  const load = (router: string): { stop: () => Promise<{ ok: number; failed: string[]; versions: Set<string> }> } => {
    let on = true;
    const stats = { ok: 0, failed: [] as string[], versions: new Set<string>() };
    const loop = (async () => {
      while (on) {
        try {
          const res = await request(router, { headers: { host: `${APP}.localhost` }, headersTimeout: 10_000, bodyTimeout: 10_000 });
          const text = await res.body.text();
          if (res.statusCode === 200) {
            stats.ok++;
            stats.versions.add((JSON.parse(text) as { version: string }).version);
          } else stats.failed.push(`${res.statusCode} ${text.slice(0, 100)}`);
        } catch (err) {
          stats.failed.push((err as Error).message);
        }
        await sleep(20);
      }
    })();
    return { stop: async () => ((on = false), await loop, stats) };
  };

  before(async () => {
    await ensureBaseImage(engine);
    if ((await engine.info()).Swarm?.LocalNodeState !== 'active') {
      await engine.swarmInit({ ListenAddr: '127.0.0.1:2377', AdvertiseAddr: '127.0.0.1:2377' });
      initialisedHere = true;
    }
    pg = await startPostgres();
    const s = setup(await pg.createDatabase());
    replicas.push(await startReplica(s, 'r0'));
    replicas.push(await startReplica(s, 'r1', replicas[0]));
  });

  after(async () => {
    for (const r of replicas) killReplica(r);
    await h.cleanup();
    await removeTargetObjects(engine, T);
    for (const i of await engine.listImages({ filters: JSON.stringify({ label: [`dev.pilot.app=${APP}`] }) }).catch(() => []))
      await engine
        .getImage(i.Id)
        .remove({ force: true })
        .catch(() => undefined);
    if (initialisedHere) await engine.swarmLeave({ force: true }).catch(() => undefined);
    await pg?.stop();
  });

  it('the new leader takes the Swarm slots back (same tasks, services untouched) and rolls out through them; 0 failed requests', async () => {
    const l1 = await waitFor('a leader', () => leaderSeenBy(h, replicas, replicas[1]!));
    const follower = replicas.find((r) => r !== l1.replica)!;
    const cli = (args: string[]): ReturnType<Harness['cli']> => h.cli(['--server', follower.api, ...args], { env: ENV });
    const add = await cli(['targets', 'add', T, '--docker', 'unix:///var/run/docker.sock', '--ports', '24000-24900']);
    assert.equal(add.code, 0, add.stderr);
    await waitFor('the target node ready', async () => {
      const n = (await call(h, l1.replica, 'GET', '/api/v1/nodes')).json.nodes.find((x: any) => x.name === `swarm-${T}`);
      return n?.status === 'ready' || undefined;
    });
    const dir = h.track(tempDir('swha-app'));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: APP, scripts: { start: 'node server.js' } }));
    writeFileSync(join(dir, 'server.js'), server('v1'));
    writeFileSync(
      join(dir, 'pilot.yaml'),
      `runtime: docker\ntarget: ${T}\nreplicas: 2\nhealth: { path: /, interval: 1s }\nstrategy: { type: rolling, maxSurge: 1, maxUnavailable: 0, minReady: 1s }\n`,
    );
    repo = h.track(await makeRepo(dir));
    const first = await cli(['run', repo]);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    await waitFor('two ready Swarm instances', async () => ((await ready(follower)).length === 2 ? true : undefined));
    const before = await ready(follower);
    const services = (await engine.listServices({ filters })).map((s) => `${s.ID}:${s.Version?.Index}`);
    assert.equal(services.length, 1);

    const traffic = load(follower.router);
    let stats: Awaited<ReturnType<ReturnType<typeof load>['stop']>> | undefined;
    try {
      await waitFor('the follower router serving the app', async () => {
        const res = await request(follower.router, { headers: { host: `${APP}.localhost` } }).catch(() => undefined);
        const ok = res?.statusCode === 200;
        await res?.body.text();
        return ok || undefined;
      });
      const killedAt = performance.now();
      killReplica(l1.replica);
      const l2 = await waitFor(
        'the follower to lead',
        async () => {
          const l = await leaderSeenBy(h, replicas, follower);
          return l?.replica === follower ? l : undefined;
        },
        20_000,
      );
      const failover = performance.now() - killedAt;
      assert.ok(l2.token > l1.token);
      // The new leader's bridge: the same tasks in the same slots, ready; the services as they were.
      await sleep(3000);
      assert.deepEqual(await ready(follower), before, 'the same Swarm tasks, ready, after the failover');
      assert.deepEqual(
        (await engine.listServices({ filters })).map((s) => `${s.ID}:${s.Version?.Index}`),
        services,
        'the services were changed by the failover',
      );
      // A rolling update through the new leader.
      writeFileSync(join(repo, 'server.js'), server('v2'));
      await git(repo, 'commit', '-qam', 'v2');
      const second = await cli(['run', repo]);
      assert.equal(second.code, 0, second.stdout + second.stderr);
      await waitFor('only the revision 2 service left', async () => {
        const names = (await engine.listServices({ filters })).map((s) => s.Spec!.Name);
        return names.length === 1 && names[0] === `${T}-${APP}-r2` ? true : undefined;
      });
      await sleep(1500);
      stats = await traffic.stop();
      console.log(
        `FAULT swarm-ha: new leader after ${(failover / 1000).toFixed(2)}s, Swarm tasks kept ${before.length}/${before.length}, rolling update v1 → v2 through it, failed ${stats.failed.length}/${stats.ok + stats.failed.length}`,
      );
      assert.deepEqual(stats.failed, []);
      assert.ok(stats.versions.has('v1') && stats.versions.has('v2'), [...stats.versions].join());
    } catch (err) {
      // The replicas' lines about the target, to tell a bridge's failure from a test's.
      for (const r of replicas) {
        const file = join(r.home, 'logs', 'pilot.log');
        const lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n') : [];
        console.log(
          `FAULT swarm-ha debug ${r.name}:\n${lines
            .filter((l) => /swarm|target|leader/.test(l))
            .slice(-30)
            .join('\n')}`,
        );
      }
      throw err;
    } finally {
      if (stats === undefined) await traffic.stop();
    }
  });
});
