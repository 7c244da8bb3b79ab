/**
 * Docker Swarm as a deploy target, live: `docker swarm init` on this machine's engine (left at the
 * end, even on failure, when this test made it), `pilot server` with no agent, `pilot targets add`,
 * and a fixture app built by the pipeline into an image. Through the router under a request loop:
 * the first deploy, a canary to a second revision with an app secret (0 failed requests; the
 * secret is a Swarm secret, never in `docker service inspect`), a task container killed and
 * replaced by Swarm (seen as such, followed by the router), a rollback, and the app's removal
 * taking its services, secrets and config with it. Bad input: an engine address that is not one,
 * an engine that does not answer, an engine that is not a Swarm manager, an unknown target, a
 * target whose manager stopped answering.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectEngine } from '../../src/docker/engine.js';
import { ensureBaseImage } from '../../src/docker/test-images.js';
import { dockerSkip } from '../../src/docker/test-support.js';
import { registrySkip, startRegistry } from '../../src/docker/test-registry.js';
import { removeTargetObjects } from './swarm-support.js';
import { git, Harness, makeRepo, PILOT, ROOT, sleep, tempDir, waitFor } from './harness.js';

const engine = connectEngine();
const T = `swt${process.pid}`; // the target: every service, secret and config carries its label
const APP = `swapp${process.pid}`.slice(0, 30);
const ENV = { PILOT_IMAGE_PREFIX: 'pilot-test/swarm-target' };
const SECRET = 'sw-secret-value-7f3e91';
const digest12 = (s: string): string => createHash('sha256').update(s).digest('hex').slice(0, 12);

const server = (version: string): string => `const http = require('node:http');
const crypto = require('node:crypto');
const key = process.env.API_KEY;
const s = http.createServer((req, res) => res.end(JSON.stringify({ version: '${version}', port: process.env.PORT,
  key: key ? crypto.createHash('sha256').update(key).digest('hex').slice(0, 12) : null })));
s.listen(Number(process.env.PORT), () => console.log('${version} listening on ' + process.env.PORT));
process.on('SIGTERM', () => s.close(() => process.exit(0)));
`;

/** A Docker Engine API on a unix socket that answers /info as told and fails everything else (bad-input cases). */
function fakeEngine(path: string, swarm: { LocalNodeState: string; ControlAvailable: boolean }): Promise<Server> {
  const s = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    if (/\/info$/.test(req.url ?? '')) return res.end(JSON.stringify({ Swarm: swarm }));
    res.statusCode = 500;
    res.end(JSON.stringify({ message: 'rpc error: the swarm does not have a leader' }));
  });
  return new Promise((resolve) => s.listen(path, () => resolve(s)));
}

async function ours(): Promise<{ services: number; secrets: number; configs: number }> {
  const filters = { label: [`dev.pilot.target=${T}`] };
  const [services, secrets, configs] = await Promise.all([
    engine.listServices({ filters }).catch(() => []),
    engine.listSecrets({ filters }).catch(() => []),
    engine.listConfigs({ filters }).catch(() => []),
  ]);
  return { services: services.length, secrets: secrets.length, configs: configs.length };
}

describe('Docker Swarm deploy target (live swarm, pilot server, pipeline-built images)', { skip: dockerSkip, timeout: 420_000 }, () => {
  const h = new Harness();
  let initialisedHere = false;
  const fakes: Server[] = [];
  let repo = '';

  /** Requests through the router until stopped; counts answers that are not 200. */
  const load = (): { stop: () => Promise<{ ok: number; failed: number; versions: Set<string>; ports: Set<string> }> } => {
    let on = true;
    const stats = { ok: 0, failed: 0, versions: new Set<string>(), ports: new Set<string>() };
    const loop = (async () => {
      while (on) {
        const r = await h.viaRouter(`${APP}.localhost`).catch(() => ({ status: 0, text: '' }));
        if (r.status === 200) {
          stats.ok++;
          const j = JSON.parse(r.text);
          stats.versions.add(j.version);
          stats.ports.add(j.port);
        } else stats.failed++;
        await sleep(20);
      }
    })();
    return { stop: async () => ((on = false), await loop, stats) };
  };

  const instances = async (): Promise<any[]> => (await h.apiCall('GET', `/api/v1/apps/${APP}`)).json.instances;

  before(async () => {
    await ensureBaseImage(engine);
    const info = await engine.info();
    if (info.Swarm?.LocalNodeState !== 'active') {
      await engine.swarmInit({ ListenAddr: '127.0.0.1:2377', AdvertiseAddr: '127.0.0.1:2377' });
      initialisedHere = true;
    }
    await h.startUp(ENV, 'server');
  });

  after(async () => {
    await h.cleanup();
    await removeTargetObjects(engine, T);
    for (const f of fakes) f.close();
    for (const i of await engine.listImages({ filters: JSON.stringify({ label: [`dev.pilot.app=${APP}`] }) }).catch(() => []))
      await engine
        .getImage(i.Id)
        .remove({ force: true })
        .catch(() => undefined);
    if (initialisedHere) await engine.swarmLeave({ force: true }).catch(() => undefined);
  });

  it('refuses a bad engine address, an engine that does not answer and one that is not a Swarm manager', async () => {
    const bad = await h.cli(['targets', 'add', T, '--docker', 'http://127.0.0.1:2375']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /is not a Docker Engine address: use unix:\/\/\/path\/to\/docker\.sock/);
    const dir = h.track(tempDir('swarm-fake'));
    const gone = await h.cli(['targets', 'add', T, '--docker', `unix://${dir}/nothing.sock`]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /does not answer \(connect ENOENT/);
    assert.match(gone.stderr, /hint: Start dockerd there/);
    fakes.push(await fakeEngine(join(dir, 'plain.sock'), { LocalNodeState: 'inactive', ControlAvailable: false }));
    const plain = await h.cli(['targets', 'add', T, '--docker', `unix://${dir}/plain.sock`]);
    assert.equal(plain.code, 1);
    assert.match(plain.stderr, /is not a Swarm manager \(swarm state: inactive\)/);
    assert.match(plain.stderr, /docker swarm init/);
    const ports = await h.cli(['targets', 'add', T, '--docker', 'unix:///var/run/docker.sock', '--ports', '20050-20100']);
    assert.equal(ports.code, 1);
    assert.match(ports.stderr, /is not a range of port blocks/);
    const list = await h.apiCall('GET', '/api/v1/targets');
    assert.deepEqual(list.json.targets, [], 'nothing stored by a refused add');
  });

  it('a deploy naming an unknown target, or a target whose manager stopped answering, is refused clearly', async () => {
    const dry = (target: string) =>
      h.apiCall('POST', `/api/v1/apps/${APP}x/revisions?dryRun=true`, { config: { runtime: 'docker', target } });
    const unknown = await dry('nope');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.code, 'target_not_found');
    assert.match(unknown.json.error.hint, /pilot targets add/);
    // What a Swarm target cannot run: the process runtime, a fixed port, volumes, more than 99 replicas.
    for (const [config, message] of [
      [{ target: 'nope' }, /needs runtime: docker/],
      [{ runtime: 'docker', target: 'nope', port: 8080 }, /remove port: 8080/],
      [{ runtime: 'docker', target: 'nope', volumes: [{ name: 'data', path: '/data' }] }, /does not keep volumes yet/],
      [{ runtime: 'docker', target: 'nope', replicas: 100 }, /at most 99 replicas/],
    ] as const) {
      const r = await h.apiCall('POST', `/api/v1/apps/${APP}x/revisions?dryRun=true`, { config });
      assert.equal(r.status, 400, JSON.stringify(r.json));
      assert.equal(r.json.error.code, 'invalid_config');
      assert.match(r.json.error.message, message);
    }
    // A manager that answers /info but nothing else (lost quorum): its bridge reports it, deploys are refused.
    const dir = h.track(tempDir('swarm-lost'));
    fakes.push(await fakeEngine(join(dir, 'lost.sock'), { LocalNodeState: 'active', ControlAvailable: true }));
    const add = await h.cli(['targets', 'add', `${T}l`, '--docker', `unix://${dir}/lost.sock`]);
    assert.equal(add.code, 0, add.stderr);
    await waitFor('the bridge to report the lost manager', async () => {
      const t = (await h.apiCall('GET', `/api/v1/targets/${T}l`)).json;
      return t.status && !t.status.ok ? t : undefined;
    });
    const lost = await dry(`${T}l`);
    assert.equal(lost.status, 503);
    assert.equal(lost.json.error.code, 'target_unavailable');
    assert.match(lost.json.error.message, /the swarm does not have a leader/);
    const listed = await h.cli(['targets', 'list']);
    assert.match(listed.stdout, new RegExp(`${T}l .*not answering`));
    assert.equal((await h.cli(['targets', 'remove', `${T}l`])).code, 0);
  });

  it('deploys an app as a Swarm service: tasks ready through the router, Swarm nodes in pilot nodes', async () => {
    const add = await h.cli(['targets', 'add', T, '--docker', 'unix:///var/run/docker.sock', '--ports', '23000-23900']);
    assert.equal(add.code, 0, add.stderr);
    const again = await h.cli(['targets', 'add', T, '--docker', 'unix:///var/run/docker.sock']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, new RegExp(`deploy target "${T}" already exists`));
    const unknown = await h.cli(['targets', 'remove', `${T}-nope`]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no deploy target named/);
    await waitFor('the target node ready', async () => {
      const n = (await h.apiCall('GET', '/api/v1/nodes')).json.nodes.find((x: any) => x.name === `swarm-${T}`);
      return n?.status === 'ready' || undefined;
    });
    const dir = h.track(tempDir('swarm-app'));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: APP, scripts: { start: 'node server.js' } }));
    writeFileSync(join(dir, 'server.js'), server('v1'));
    writeFileSync(
      join(dir, 'pilot.yaml'),
      `runtime: docker\ntarget: ${T}\nreplicas: 2\nhealth: { path: /, interval: 1s }\nstrategy: { type: canary, steps: [{ weight: 50, pause: 3s }, { weight: 100 }] }\n`,
    );
    repo = h.track(await makeRepo(dir));
    const r = await h.cli(['run', repo], { env: ENV });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const res = await h.viaRouter(`${APP}.localhost`);
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.text).version, 'v1');
    const svc = await engine.listServices({ filters: { label: [`dev.pilot.target=${T}`] } });
    assert.equal(svc.length, 1);
    assert.equal(svc[0]!.Spec!.Name, `${T}-${APP}-r1`);
    const ready = (await instances()).filter((i) => i.state === 'ready');
    assert.deepEqual(ready.map((i) => i.port).sort(), [23001, 23002]);
    // pilot logs: each instance's output, from its slot's task (through the bridge's agent API).
    const logs = await h.cli(['logs', APP, '--tail', '5']);
    assert.equal(logs.code, 0, logs.stderr);
    for (const i of ready) assert.match(logs.stdout, new RegExp(`\\[${i.id}\\] v1 listening on ${i.port}`));
    const nodes = await h.cli(['nodes']);
    assert.equal(nodes.code, 0, nodes.stderr);
    assert.match(nodes.stdout, /Swarm nodes \(deploy targets\):/);
    assert.match(nodes.stdout, new RegExp(`${T}\\s+\\S+\\s+127\\.0\\.0\\.1\\s+manager \\(leader\\)\\s+ready\\s+active\\s+2`));
  });

  it('a canary to revision 2 with a secret: 0 failed requests, both revisions served, the secret never in the service spec', async () => {
    const set = await h.cli(['secrets', 'set', APP, 'API_KEY', SECRET]);
    assert.equal(set.code, 0, set.stderr);
    writeFileSync(join(repo, 'server.js'), server('v2'));
    await git(repo, 'commit', '-qam', 'v2');
    const traffic = load();
    const r = await h.cli(['run', repo], { env: ENV });
    await sleep(1500); // past the drain of revision 1
    const stats = await traffic.stop();
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /canary step 1\/2: 50% of the traffic on revision 2/);
    assert.equal(stats.failed, 0, `failed requests during the canary (${stats.ok} ok)`);
    assert.ok(stats.versions.has('v1') && stats.versions.has('v2'), [...stats.versions].join());
    const now = JSON.parse((await h.viaRouter(`${APP}.localhost`)).text);
    assert.equal(now.version, 'v2');
    assert.equal(now.key, digest12(SECRET), 'the app sees its secret in process.env');
    await waitFor('revision 1 service removed', async () => {
      const names = (await engine.listServices({ filters: { label: [`dev.pilot.target=${T}`] } })).map((s) => s.Spec!.Name);
      return names.length === 1 && names[0] === `${T}-${APP}-r2` ? true : undefined;
    });
    const [svc] = await engine.listServices({ filters: { label: [`dev.pilot.target=${T}`] } });
    const inspected = JSON.stringify(await engine.getService(svc!.ID).inspect());
    assert.ok(!inspected.includes(SECRET), 'the secret value is in docker service inspect');
    assert.ok(!/API_KEY=/.test(inspected), 'the secret is in the service env');
    assert.match(inspected, /"File":\{"Name":"env\.API_KEY"/);
    const secrets = await engine.listSecrets({ filters: { label: [`dev.pilot.service=${T}-${APP}-r2`] } });
    assert.equal(secrets.length, 1);
  });

  it('a killed task container is replaced by Swarm, shown as such, and the router follows the new task', async () => {
    const before = (await instances()).filter((i) => i.state === 'ready' && i.revision === 2);
    assert.equal(before.length, 2);
    const victim = before[0]!;
    const traffic = load();
    await engine.getContainer(victim.containerId).kill();
    const replaced = await waitFor(
      'the replacement task ready',
      async () => {
        const i = (await instances()).find((x) => x.id === victim.id);
        return i && i.state === 'ready' && i.restarts >= 1 && i.containerId !== victim.containerId ? i : undefined;
      },
      60_000,
    );
    await sleep(1000);
    const stats = await traffic.stop();
    assert.equal(replaced.port, victim.port, 'the new task listens on its slot port');
    assert.match(replaced.lastError, /failed \(.*exit 137\); Swarm replaced it with task \w+ running/);
    // Requests in flight on the killed container may fail; afterwards the new task serves again.
    assert.ok(stats.failed <= 2, `${stats.failed} failed requests around the kill`);
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) seen.add(JSON.parse((await h.viaRouter(`${APP}.localhost`)).text).port);
    assert.ok(seen.has(String(victim.port)), `the router sends to the new task (${[...seen].join()})`);
    const st = await h.cli(['status', APP]);
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, /Swarm tasks \(target /);
    assert.match(st.stdout, new RegExp(`${T}-${APP}-r2\\s+\\d+\\s+\\w+\\s+failed\\s+shutdown\\s+.*${victim.port}\\s+${victim.id}`));
    assert.match(st.stdout, new RegExp(`${T}-${APP}-r2\\s+\\d+\\s+\\w+\\s+running\\s+running\\s+.*${victim.port}\\s+${victim.id}`));
  });

  it('pilot server killed (-9) and started again: the bridge finds its slots in the service labels; nothing restarts, traffic never stops', async () => {
    const before = (await instances())
      .filter((i) => i.state === 'ready')
      .map((i) => `${i.id}@${i.containerId}`)
      .sort();
    const services = (await engine.listServices({ filters: { label: [`dev.pilot.target=${T}`] } })).map(
      (s) => `${s.ID}:${s.Version?.Index}`,
    );
    const traffic = load(); // the router process outlives the control plane
    await h.killUp('SIGKILL');
    await sleep(1000);
    await h.startUp(ENV, 'server');
    await waitFor('the instances ready again, the same ones', async () => {
      const now = (await instances())
        .filter((i) => i.state === 'ready')
        .map((i) => `${i.id}@${i.containerId}`)
        .sort();
      return JSON.stringify(now) === JSON.stringify(before) || undefined;
    });
    await sleep(1000);
    const stats = await traffic.stop();
    assert.equal(stats.failed, 0, `failed requests across the restart (${stats.ok} ok)`);
    const after = (await engine.listServices({ filters: { label: [`dev.pilot.target=${T}`] } })).map((s) => `${s.ID}:${s.Version?.Index}`);
    assert.deepEqual(after, services, 'the services were changed by a restart');
  });

  it('a rolling update to revision 3 (one in, one out): 0 failed requests; the old service goes once its last instance stopped', async () => {
    writeFileSync(join(repo, 'server.js'), server('v3'));
    writeFileSync(
      join(repo, 'pilot.yaml'),
      `runtime: docker\ntarget: ${T}\nreplicas: 2\nhealth: { path: /, interval: 1s }\nstrategy: { type: rolling, maxSurge: 1, maxUnavailable: 0, minReady: 1s }\n`,
    );
    await git(repo, 'commit', '-qam', 'v3 rolling');
    const traffic = load();
    const r = await h.cli(['run', repo], { env: ENV });
    await sleep(1500);
    const stats = await traffic.stop();
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(stats.failed, 0, `failed requests during the rolling update (${stats.ok} ok)`);
    assert.ok(stats.versions.has('v2') && stats.versions.has('v3'), [...stats.versions].join());
    assert.equal(JSON.parse((await h.viaRouter(`${APP}.localhost`)).text).version, 'v3');
    await waitFor('only the revision 3 service left', async () => {
      const names = (await engine.listServices({ filters: { label: [`dev.pilot.target=${T}`] } })).map((s) => s.Spec!.Name);
      return names.length === 1 && names[0] === `${T}-${APP}-r3` ? true : undefined;
    });
    const live = (await instances()).filter((i) => i.state === 'ready');
    assert.deepEqual(
      live.map((i) => i.revision),
      [3, 3],
    );
  });

  it('a rollback to revision 2 with 0 failed requests; removing the app removes its services, secrets and config', async () => {
    const traffic = load();
    const r = await h.cli(['rollback', APP]);
    await sleep(1500);
    const stats = await traffic.stop();
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(stats.failed, 0, `failed requests during the rollback (${stats.ok} ok)`);
    const back = JSON.parse((await h.viaRouter(`${APP}.localhost`)).text);
    assert.equal(back.version, 'v2');
    assert.equal(back.key, digest12(SECRET), 'the rolled-back revision has its secret again');
    const inUse = await h.cli(['targets', 'remove', T]);
    assert.equal(inUse.code, 1);
    assert.match(inUse.stderr, new RegExp(`still runs apps: ${APP}`));
    const rm = await h.cli(['apps', 'rm', APP, '--yes']);
    assert.equal(rm.code, 0, rm.stderr);
    await waitFor(
      'services, secrets and config gone',
      async () => {
        const o = await ours();
        return o.services === 0 && o.secrets === 0 && o.configs === 0 ? true : undefined;
      },
      60_000,
    );
    const removed = await h.cli(['targets', 'remove', T]);
    assert.equal(removed.code, 0, removed.stderr);
  });

  it(
    'an image in a registry with credentials: Swarm gets them with the service, and a task re-created where the image is gone pulls it',
    { skip: registrySkip },
    async () => {
      const PASSWORD = 'swarm-registry-pw-5d1e';
      const registry = await startRegistry({ user: { username: 'swuser', password: PASSWORD } });
      const app = `${APP}r`.slice(0, 30);
      try {
        const set = await new Promise<number | null>((resolve) => {
          const p = spawn(process.execPath, [PILOT, 'registry', 'set', registry.url, '--username', 'swuser', '--password-stdin'], {
            cwd: ROOT,
            env: h.env(),
            stdio: ['pipe', 'ignore', 'inherit'],
          });
          p.on('close', resolve);
          p.stdin!.end(PASSWORD);
        });
        assert.equal(set, 0);
        const add = await h.cli(['targets', 'add', T, '--docker', 'unix:///var/run/docker.sock', '--ports', '23000-23900']);
        assert.equal(add.code, 0, add.stderr);
        const dir = h.track(tempDir('swarm-app-reg'));
        writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: app, scripts: { start: 'node server.js' } }));
        writeFileSync(join(dir, 'server.js'), server('r1'));
        writeFileSync(join(dir, 'pilot.yaml'), `runtime: docker\ntarget: ${T}\nreplicas: 1\nhealth: { path: /, interval: 1s }\n`);
        const r = await h.cli(['run', h.track(await makeRepo(dir))], { env: ENV });
        assert.equal(r.code, 0, r.stdout + r.stderr);
        const [svc] = await engine.listServices({ filters: { label: [`dev.pilot.target=${T}`] } });
        const image = String((svc!.Spec!.TaskTemplate as { ContainerSpec?: { Image?: string } }).ContainerSpec?.Image);
        assert.ok(image.startsWith(`${registry.address}/`), `the service runs the registry's image (${image})`);
        assert.ok(!JSON.stringify(await engine.getService(svc!.ID).inspect()).includes(PASSWORD), 'the password is in the service spec');
        const readyOne = async (): Promise<any> =>
          ((await h.apiCall('GET', `/api/v1/apps/${app}`)).json.instances as any[]).find((i) => i.state === 'ready');
        const first = await waitFor('the instance ready', readyOne);
        // The image goes from this engine by its registry names (the running container keeps its layers).
        const local = await engine.getContainer(first.containerId).inspect();
        const names = (await engine.getImage(local.Image).inspect()) as { RepoTags?: string[]; RepoDigests?: string[] };
        for (const ref of [...(names.RepoTags ?? []), ...(names.RepoDigests ?? [])].filter((n) => n.startsWith(`${registry.address}/`)))
          await engine
            .getImage(ref)
            .remove({ force: true })
            .catch(() => undefined);
        await assert.rejects(engine.getImage(image).inspect(), 'the image is still here by the name the service runs');
        await engine.getContainer(first.containerId).kill();
        const next = await waitFor(
          'a new task, its image pulled with the credentials',
          async () => {
            const i = await readyOne();
            return i && i.containerId !== first.containerId ? i : undefined;
          },
          120_000,
        );
        assert.equal(next.id, first.id, 'the same instance, on its new task');
        assert.equal(JSON.parse((await h.viaRouter(`${app}.localhost`)).text).version, 'r1');
        const rm = await h.cli(['apps', 'rm', app, '--yes']);
        assert.equal(rm.code, 0, rm.stderr);
        await waitFor('its service gone', async () => ((await ours()).services === 0 ? true : undefined), 60_000);
      } finally {
        await registry.stop();
      }
    },
  );
});
