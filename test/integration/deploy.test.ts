/**
 * The foundation end to end: `pilot up` as a real process, `pilot run` on a real git repository,
 * traffic through the router, a zero-downtime second deploy under a steady request loop, SIGKILL
 * of `pilot up` with the app surviving and being re-adopted, and the failure paths.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request as httpRequest } from 'node:http';
import { request } from 'undici';
import { createHash } from 'node:crypto';
import { rawTgz } from '../../src/artifacts/raw-tar.fixture.js';
import { git, Harness, makeRepo, ROOT, sleep, waitFor } from './harness.js';

const h = new Harness();
let repo = '';
let firstCommit = '';

async function hello(): Promise<{ revision: string; commit: string; pid: number; message: string }> {
  const r = await h.viaRouter('hello.localhost');
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text) as { revision: string; commit: string; pid: number; message: string };
}

describe('pilot up + pilot run, end to end', { timeout: 300_000 }, () => {
  before(async () => {
    repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    firstCommit = await git(repo, 'rev-parse', 'HEAD');
    await h.startUp();
  });
  after(() => h.cleanup());

  it('answers 404 for an unknown host and 401 without a token', async () => {
    const r = await h.viaRouter('nope.localhost');
    assert.equal(r.status, 404);
    assert.match(r.text, /nope\.localhost/);
    assert.equal((await h.apiCall('GET', '/api/v1/apps', undefined, null)).status, 401);
    const wrong = await h.apiCall('GET', '/api/v1/apps', undefined, 'pilot_admin_wrong');
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json.error.code, 'unauthorized');
    assert.equal((await h.apiCall('GET', '/healthz', undefined, null)).status, 200);
  });

  it('describes its REST API as OpenAPI 3 at /api/v1/openapi.json, with the schemas it validates', async () => {
    assert.equal((await h.apiCall('GET', '/api/v1/openapi.json', undefined, null)).status, 401);
    const doc = (await h.apiCall('GET', '/api/v1/openapi.json')).json;
    assert.equal(doc.openapi, '3.0.3');
    assert.equal(doc.info.title, 'Pilot API');
    const deploy = doc.paths['/api/v1/apps/{app}/revisions'].post;
    assert.deepEqual(deploy.requestBody.content['application/json'].schema.required, ['artifact', 'commit']);
    assert.ok(doc.paths['/api/v1/agent/register'].post);
    assert.ok(doc.paths['/api/v1/nodes']);
    assert.equal(doc.paths['/api/v1/openapi.json'], undefined);
  });

  it('deploys a git commit: build, artifact, publish, deploy, and the router serves it', async () => {
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (const step of ['source', 'build', 'package', 'publish', 'deploy']) assert.match(r.stdout, new RegExp(`==> ${step}`));
    assert.match(r.stdout, /npm ci/);
    assert.match(r.stdout, /revision 1 of hello is live/);
    const body = await hello();
    assert.equal(body.revision, '1');
    assert.equal(body.commit, firstCommit);
    assert.equal(body.message, 'hello from Pilot');

    const apps = await h.cli(['apps', '--json']);
    assert.equal(apps.code, 0);
    assert.equal(JSON.parse(apps.stdout).apps[0].activeRevision, 1);
    const runs = JSON.parse((await h.cli(['runs', '--json'])).stdout).runs;
    assert.equal(runs[0].status, 'succeeded');
    assert.equal(runs[0].commit, firstCommit);
    assert.match(runs[0].artifact, /^sha256:[a-f0-9]{64}$/);
    const log = await h.cli(['logs', '--run', String(runs[0].id)]);
    assert.match(log.stdout, /revision 1 of hello is live/);
  });

  it('re-running the same commit uploads no bytes', async () => {
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /already in the artifact repository/);
    assert.equal((await hello()).revision, '2');
  });

  it('switches to a new commit with zero failed requests under a steady client', async () => {
    writeFileSync(join(repo, 'pilot.yaml'), readFileSync(join(repo, 'pilot.yaml'), 'utf8').replace('hello from Pilot', 'hello again'));
    await git(repo, 'commit', '-qam', 'second greeting');
    const second = await git(repo, 'rev-parse', 'HEAD');
    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const seen = new Set<string>();
    const loop = async (): Promise<void> => {
      while (!stop) {
        try {
          const res = await request(h.router + '/', { headers: { host: 'hello.localhost' } });
          const text = await res.body.text();
          if (res.statusCode !== 200) failures.push(`${res.statusCode} ${text}`);
          else {
            ok++;
            seen.add((JSON.parse(text) as { message: string }).message);
          }
        } catch (err) {
          failures.push(String(err));
        }
      }
    };
    const loops = [loop(), loop(), loop()];
    const r = await h.cli(['run', repo]);
    await sleep(1500); // keep calling through the drain of the old instance
    stop = true;
    await Promise.all(loops);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(failures, []);
    assert.ok(ok > 50, `only ${ok} requests made`);
    assert.deepEqual([...seen].sort(), ['hello again', 'hello from Pilot']);
    const body = await hello();
    assert.equal(body.commit, second);
    assert.equal(body.message, 'hello again');
    // The old instance is stopped: one instance left.
    await waitFor(
      'old instance to stop',
      async () => (await h.apiCall('GET', '/api/v1/apps/hello')).json.instances.length === 1 || undefined,
    );
  });

  it('keeps the app running when pilot up is SIGKILLed, and re-adopts it without a second copy', async () => {
    const before = await hello();
    const pidsBefore = h.instancePids();
    assert.equal(pidsBefore.length, 1);
    await h.killUp('SIGKILL');
    // The app still runs and still answers on its own port.
    process.kill(pidsBefore[0]!, 0);
    const status = JSON.parse(
      readFileSync(join(h.home, 'agent', 'instances', readdirOne(join(h.home, 'agent', 'instances')), 'instance.json'), 'utf8'),
    ) as { port: number };
    const direct = await request(`http://127.0.0.1:${status.port}/`);
    assert.equal(direct.statusCode, 200);
    await direct.body.text();
    await h.startUp();
    const after = await waitFor('router to serve again', async () => {
      const r = await h.viaRouter('hello.localhost');
      return r.status === 200 ? (JSON.parse(r.text) as { pid: number; commit: string }) : undefined;
    });
    assert.equal(after.pid, before.pid, 'the same process serves: re-adopted, not restarted');
    assert.deepEqual(h.instancePids(), pidsBefore);
    await sleep(1500); // a few reconcile passes: still exactly one instance
    const app = (await h.apiCall('GET', '/api/v1/apps/hello')).json;
    assert.equal(app.instances.length, 1);
    assert.equal(app.instances[0].pid, pidsBefore[0]);
  });

  it('refuses a dirty tree unless --allow-dirty, which marks the revision', async () => {
    writeFileSync(join(repo, 'extra.txt'), 'uncommitted\n');
    const r = await h.cli(['run', repo]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /uncommitted changes/i);
    assert.match(r.stderr, /extra\.txt/);
    assert.match(r.stderr, /--allow-dirty/);
    const d = await h.cli(['run', repo, '--allow-dirty', '--json']);
    assert.equal(d.code, 0, d.stdout + d.stderr);
    const status = (await h.apiCall('GET', '/api/v1/apps/hello')).json;
    assert.equal(status.revisions[0].dirty, true);
    await git(repo, 'add', 'extra.txt');
    await git(repo, 'commit', '-qm', 'extra');
  });

  it('refuses a folder outside git, and an invalid pilot.yaml naming the field', async () => {
    const plain = h.track(join(h.home, '..', `plain-${process.pid}`));
    mkdirSync(plain, { recursive: true });
    const r = await h.cli(['run', plain]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /not .*git/i);
    writeFileSync(join(repo, 'pilot.yaml'), 'name: hello\nreplicas: -1\nhelth: {}\n');
    await git(repo, 'commit', '-qam', 'bad config');
    const bad = await h.cli(['run', repo]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /replicas: must be integer >= 1/);
    assert.match(bad.stderr, /helth: unknown field/);
    await git(repo, 'revert', '--no-edit', 'HEAD');
  });

  it('fails a broken build, says where, and the old revision keeps serving', async () => {
    const live = await hello();
    const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    pkg.scripts.build = 'node -e "console.log(\'compiling...\'); process.exit(3)"';
    writeFileSync(join(repo, 'package.json'), JSON.stringify(pkg, null, 2));
    await git(repo, 'commit', '-qam', 'broken build');
    const r = await h.cli(['run', repo]);
    assert.notEqual(r.code, 0);
    assert.match(r.stdout, /compiling\.\.\./);
    assert.match(r.stderr, /npm run build.*exit(ed)? (with )?(code )?3/i);
    const runs = JSON.parse((await h.cli(['runs', 'hello', '--json'])).stdout).runs;
    assert.equal(runs[0].status, 'failed');
    assert.match(runs[0].error, /^build:/);
    assert.equal((await hello()).pid, live.pid);
    await git(repo, 'revert', '--no-edit', 'HEAD');
  });

  it('abandons a revision that never gets ready; the old one keeps serving and the run says why', async () => {
    const live = await hello();
    writeFileSync(join(repo, 'pilot.yaml'), readFileSync(join(repo, 'pilot.yaml'), 'utf8') + 'deploy:\n  ready_timeout: 4s\n');
    writeFileSync(join(repo, 'server.js'), 'console.error("boot failure: missing DATABASE_URL"); process.exit(1);\n');
    await git(repo, 'commit', '-qam', 'crashing app');
    const r = await h.cli(['run', repo]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /rollout #\d+ failed: .*(crashed|not ready)/);
    assert.match(r.stderr, /revision \d+ keeps serving/);
    const now = await hello();
    assert.equal(now.pid, live.pid);
    await git(repo, 'revert', '--no-edit', 'HEAD');
  });

  it('rolls back instantly to an earlier revision', async () => {
    const r = await h.cli(['rollback', 'hello', '--to', '1']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const body = await hello();
    assert.equal(body.revision, '1');
    assert.equal(body.commit, firstCommit);
  });

  it('shows status and logs', async () => {
    const s = await h.cli(['status', 'hello']);
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stdout, /app hello: revision 1 active/);
    const l = await h.cli(['logs', 'hello']);
    assert.equal(l.code, 0, l.stderr);
    assert.match(l.stdout, /listening on/);
  });

  it('answers bad API input with 4xx and an error code, and stays up', async () => {
    for (const name of ['a%2Fb', '..', '%2E%2E', 'has%20space', '%24(reboot)', 'semi%3Bcolon', 'UPPER']) {
      const r = await rawGet(`/api/v1/apps/${name}`);
      assert.equal(r.status, 400, `${name}: ${JSON.stringify(r.json)}`);
      assert.ok(['invalid_name', 'bad_request'].includes(r.json.error.code));
    }
    for (const app of ['a/b', '..', 'has space', '$(reboot)', 'x;rm -rf /', '']) {
      const r = await h.apiCall('POST', '/api/v1/runs', { app });
      assert.equal(r.status, 400, `${app}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.error.code, 'invalid_name');
    }
    const unknown = await h.apiCall('GET', '/api/v1/apps/nosuchapp');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.code, 'app_not_found');
    const drain = await h.cli(['drain', 'local']);
    assert.notEqual(drain.code, 0);
    assert.match(drain.stderr, /last ready node/);
    assert.match(drain.stderr, /--force/);
    for (const replicas of [-1, 1.5, 1e9, 'three']) {
      const r = await h.apiCall('POST', '/api/v1/apps/hello/scale', { replicas });
      assert.equal(r.status, 400);
      assert.match(r.json.error.message, /0 to 100/);
    }
    const badDeploy = await h.apiCall('POST', '/api/v1/apps/hello/revisions', {
      artifact: 'sha256:' + '0'.repeat(64),
      commit: firstCommit,
    });
    assert.equal(badDeploy.status, 404);
    assert.equal(badDeploy.json.error.code, 'artifact_not_found');
    const badJson = await request(h.api + '/api/v1/apps/hello/revisions', {
      method: 'POST',
      headers: { authorization: `Bearer ${h.token}`, 'content-type': 'application/json' },
      body: '{"artifact":',
    });
    assert.equal(badJson.statusCode, 400);
    await badJson.body.text();
    const mismatch = await request(h.api + '/api/v1/artifacts/sha256:' + 'a'.repeat(64), {
      method: 'PUT',
      headers: { authorization: `Bearer ${h.token}`, 'content-type': 'application/octet-stream' },
      body: 'not those bytes',
    });
    assert.equal(mismatch.statusCode, 400);
    assert.equal((JSON.parse(await mismatch.body.text()) as { error: { code: string } }).error.code, 'digest_mismatch');
    assert.equal((await h.apiCall('GET', '/healthz')).status, 200);
    assert.equal((await hello()).revision, '1');
  });
  it('refuses a hostile artifact on the node: the rollout fails and the old revision keeps serving', async () => {
    const live = await hello();
    const tgz = rawTgz([
      { path: 'package.json', body: '{"scripts":{"start":"node server.js"}}' },
      { path: 'escape', type: '2', linkpath: '/etc' },
      { path: 'escape/passwd', body: 'pwned' },
    ]);
    const digest = 'sha256:' + createHash('sha256').update(tgz).digest('hex');
    const put = await request(`${h.api}/api/v1/artifacts/${digest}?app=hello`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${h.token}`, 'content-type': 'application/octet-stream' },
      body: tgz,
    });
    assert.equal(put.statusCode, 201, await put.body.text());
    const deploy = await h.apiCall('POST', '/api/v1/apps/hello/revisions', {
      artifact: digest,
      commit: firstCommit,
      config: { name: 'hello', deploy: { ready_timeout: '20s' } },
    });
    assert.equal(deploy.status, 201, JSON.stringify(deploy.json));
    const id = deploy.json.rollout.id;
    const done = await waitFor(
      'the rollout to end',
      async () => {
        const r = (await h.apiCall('GET', `/api/v1/apps/hello/rollouts/${id}`)).json;
        return r.rollout.status === 'running' ? undefined : r.rollout;
      },
      60_000,
    );
    assert.equal(done.status, 'failed');
    assert.match(done.reason, /symlink|link|unsafe/i);
    const now = await hello();
    assert.equal(now.pid, live.pid);
    assert.equal(readFileSync('/etc/passwd', 'utf8').includes('pwned'), false);
  });

  it('exports Prometheus metrics per app and revision (with the token)', async () => {
    assert.equal((await request(h.api + '/metrics')).statusCode, 401);
    const metrics = async (): Promise<string> => {
      const res = await request(h.api + '/metrics', { headers: { authorization: `Bearer ${h.token}` } });
      assert.equal(res.statusCode, 200);
      return res.body.text();
    };
    assert.match(await metrics(), /pilot_router_requests_total\{[^}]*app="hello"/);
    // The abandoned instance of the previous test may still be on its way out: wait for one, ready.
    const text = await waitFor('one ready instance in the metrics', async () => {
      const t = await metrics();
      return /pilot_instances\{state="ready"\} 1\n/.test(t) && !/pilot_instances\{state="(failed|backoff|stopping)"\}/.test(t)
        ? t
        : undefined;
    });
    assert.match(text, /# TYPE pilot_instances gauge/);
  });

  it('stops promptly on SIGTERM with agents long-polling, and the app keeps running', async (t) => {
    // A deploy just before: its agent downloads and long polls are what a shutdown must not wait on.
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stderr);
    const pids = h.instancePids();
    assert.ok(pids.length > 0);
    const t0 = performance.now();
    await Promise.race([
      h.killUp('SIGTERM'),
      new Promise((_, reject) => setTimeout(() => reject(new Error('pilot up did not exit within 10 s of SIGTERM')), 10_000).unref()),
    ]);
    t.diagnostic(`pilot up exited ${Math.round(performance.now() - t0)} ms after SIGTERM`);
    for (const pid of pids) assert.doesNotThrow(() => process.kill(pid, 0), `instance ${pid} should outlive pilot up`);
  });
});

function readdirOne(dir: string): string {
  const names = readdirSync(dir);
  assert.equal(names.length, 1, `expected one instance folder, found ${names.join(', ')}`);
  return names[0]!;
}

/** GET with the path sent byte for byte (URL parsers would resolve '..' before it leaves). */
function rawGet(path: string): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const u = new URL(h.api);
    const req = httpRequest({ host: u.hostname, port: u.port, path, headers: { authorization: `Bearer ${h.token}` } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end();
  });
}
