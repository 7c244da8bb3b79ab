/**
 * Artifacts in an OCI registry, end to end: `pilot up --artifacts oci+http://…` over a real
 * docker-registry with htpasswd authentication (credentials from the environment), real deploys
 * through the pipeline of an app pinned to Node.js 22 (its runtime tarball is a blob too), the local agent downloading through the control plane, a registry that is
 * down failing the run with its name, then `pilot gc` deleting the old artifacts' manifests from
 * the registry and the registry's own garbage-collect freeing their bytes.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { registrySkip, startRegistry, type TestRegistry } from '../../src/docker/test-registry.js';
import { registryGarbageCollect } from '../../src/artifacts/oci-registry.fixture.js';
import { git, Harness, makeRepo, ROOT, tempDir, waitFor } from './harness.js';

const USER = { username: 'pilot-cp', password: 'oci-registry-pw-5b2e81' };
const REPO = 'pilot/blobs';

const h = new Harness();
let reg: TestRegistry;
let repo = '';

async function registryTags(): Promise<string[]> {
  const auth = `Basic ${Buffer.from(`${USER.username}:${USER.password}`).toString('base64')}`;
  const res = await request(`${reg.url}/v2/${REPO}/tags/list`, { headers: { authorization: auth } });
  assert.equal(res.statusCode, 200);
  return ((await res.body.json()) as { tags: string[] | null }).tags ?? [];
}

const tagOf = (digest: string): string => `sha256-${digest.slice('sha256:'.length)}`;

async function commitGreeting(n: number): Promise<void> {
  writeFileSync(join(repo, 'pilot.yaml'), readFileSync(join(repo, 'pilot.yaml'), 'utf8').replace(/GREETING: .*/, `GREETING: hello ${n}`));
  await git(repo, 'commit', '-qam', `greeting ${n}`);
}

describe('artifacts in an OCI registry (pilot up --artifacts oci+http://…)', { skip: registrySkip, timeout: 420_000 }, () => {
  before(async () => {
    reg = await startRegistry({ user: USER });
    repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    // A pinned Node.js: its runtime tarball is a blob of the repository too, so it goes to the registry.
    const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(repo, 'package.json'), JSON.stringify({ ...pkg, engines: { node: '22.x' } }, null, 2));
    await git(repo, 'commit', '-qam', 'pin Node.js 22');
    const secrets = h.track(tempDir('oci-secrets'));
    writeFileSync(join(secrets, 'registry-password'), `${USER.password}\n`, { mode: 0o600 });
    await h.startUp(
      {
        PILOT_GC_GRACE: '0',
        PILOT_GC_INTERVAL: '0',
        PILOT_ARTIFACTS_USERNAME: USER.username,
        PILOT_ARTIFACTS_PASSWORD_FILE: join(secrets, 'registry-password'),
      },
      'up',
      { api: 0, router: 0 },
      [],
      ['--artifacts', `oci+http://${reg.address}/${REPO}`],
    );
  });
  after(async () => {
    await h.cleanup();
    await reg?.stop();
  });

  it('deploys from the registry, fails a run clearly while it is down, and collects old artifacts through its API', async () => {
    const arts: string[] = [];
    for (let i = 1; i <= 2; i++) {
      if (i > 1) await commitGreeting(i);
      const r = await h.cli(['run', repo]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, new RegExp(`revision ${i} of hello is live`));
    }
    let revisions = (await h.apiCall('GET', '/api/v1/apps/hello')).json.revisions as { number: number; artifact: string }[];
    arts.push(...revisions.sort((a, b) => a.number - b.number).map((r) => r.artifact));
    assert.equal(new Set(arts).size, 2);

    // The blobs are in the registry, as tagged OCI artifacts (the Node.js runtime too); none on the control plane's disk.
    const tags = await registryTags();
    for (const d of arts) assert.ok(tags.includes(tagOf(d)), `${tagOf(d)} in ${tags.join(', ')}`);
    const runtime = (
      (await h.apiCall('GET', '/api/v1/runtimes')).json.runtimes as { version: string; digest: string; apps: string[] }[]
    ).find((r) => r.apps.includes('hello'));
    assert.match(runtime?.version ?? '', /^22\./);
    assert.ok(tags.includes(tagOf(runtime!.digest)), 'the runtime tarball is in the registry');
    const local = join(h.home, 'artifacts', 'sha256');
    assert.deepEqual(existsSync(local) ? readdirSync(local) : [], [], 'nothing stored under $PILOT_HOME/artifacts');
    // The agent downloaded revision 2 through the control plane (verified, unpacked) and serves it.
    await waitFor('the release of revision 2', () => (existsSync(join(h.home, 'agent', 'releases', arts[1]!.slice(7))) ? true : undefined));
    const served = await h.viaRouter('hello.localhost');
    assert.equal(served.status, 200);
    assert.equal(JSON.parse(served.text).revision, '2');

    // The registry password is in no argv and no log line.
    const log = readFileSync(join(h.home, 'logs', 'pilot.log'), 'utf8');
    assert.match(log, new RegExp(`"artifacts":"oci\\+http://${reg.address}/${REPO}"`));
    assert.doesNotMatch(log, new RegExp(USER.password));
    assert.doesNotMatch(readFileSync(`/proc/${h.up!.pid}/cmdline`, 'utf8'), new RegExp(USER.password));
    // The app's processes get none of the server's PILOT_ARTIFACTS_* settings.
    const pids = h.instancePids().filter((pid) => existsSync(`/proc/${pid}/environ`));
    assert.ok(pids.length > 0);
    for (const pid of pids) assert.doesNotMatch(readFileSync(`/proc/${pid}/environ`, 'utf8'), /PILOT_ARTIFACTS|registry-password/);

    // The registry goes down: the run fails naming it; nothing is deployed; it works once it is back.
    await reg.kill();
    await commitGreeting(3);
    const failed = await h.cli(['run', repo]);
    assert.notEqual(failed.code, 0);
    assert.match(failed.stdout + failed.stderr, new RegExp(`cannot reach the artifact registry oci\\+http://${reg.address}/${REPO}`));
    assert.equal(((await h.apiCall('GET', '/api/v1/apps/hello')).json.revisions as unknown[]).length, 2);
    await reg.restart();
    const again = await h.cli(['run', repo]);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.match(again.stdout, /revision 3 of hello is live/);
    revisions = (await h.apiCall('GET', '/api/v1/apps/hello')).json.revisions as { number: number; artifact: string }[];
    arts.push(revisions.find((r) => r.number === 3)!.artifact);

    // GC through the registry's API: the old manifests (and tags) go, the active one stays.
    const gc = await h.cli(['gc', '--keep', '1', '--json']);
    assert.equal(gc.code, 0, gc.stdout + gc.stderr);
    const deleted = (JSON.parse(gc.stdout) as { deleted: { digest: string }[] }).deleted.map((b) => b.digest);
    assert.ok(deleted.includes(arts[0]!) && deleted.includes(arts[1]!), JSON.stringify(deleted));
    const left = await registryTags();
    assert.ok(!left.includes(tagOf(arts[0]!)) && !left.includes(tagOf(arts[1]!)), left.join(', '));
    assert.ok(left.includes(tagOf(arts[2]!)));
    assert.ok(left.includes(tagOf(runtime!.digest)), 'the runtime the active revision runs on stays');
    assert.equal((await h.apiCall('HEAD', `/api/v1/artifacts/${arts[0]!}`)).status, 404);
    assert.equal((await h.apiCall('HEAD', `/api/v1/artifacts/${arts[2]!}`)).status, 200);

    // The registry's own garbage-collect (registry stopped) frees the bytes of the deleted ones.
    const before = reg.storageBytes();
    await reg.kill();
    const out = await registryGarbageCollect(reg);
    await reg.restart();
    assert.match(out, /blob eligible for deletion|deleting blob/i);
    assert.ok(reg.storageBytes() < before, `${reg.storageBytes()} < ${before}`);
    assert.equal((await h.viaRouter('hello.localhost')).status, 200);
    const dl = await request(`${h.api}/api/v1/artifacts/${arts[2]!}`, { headers: { authorization: `Bearer ${h.token}` } });
    assert.equal(dl.statusCode, 200);
    let n = 0;
    for await (const c of dl.body) n += (c as Buffer).length;
    assert.equal(n, Number(dl.headers['content-length']));
  });
});
