/**
 * Issue 11 end to end, with real `pilot up` processes: one app cannot take another's host (CLI,
 * API and webhook deploys), `pilot apps rm`, a missing or corrupt database refused while the app
 * keeps serving, `--fresh-database` with the running instance kept as an orphan, and a backup /
 * restore round trip followed by a deploy.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { signGithubPayload } from '../../src/cd/github-signature.js';
import Database from 'better-sqlite3';
import { git, Harness, makeRepo, ROOT, sleep, tempDir, waitFor } from './harness.js';

const examples = createRequire(import.meta.url)('@octokit/webhooks-examples') as { name: string; examples: Record<string, unknown>[] }[];
const pushExample = examples.find((e) => e.name === 'push')!.examples[0]!;

const h = new Harness();
let repo = '';
let deployed: { artifact: string; commit: string; node: unknown } = { artifact: '', commit: '', node: null };

async function served(host = 'hello.localhost'): Promise<{ status: number; json: any }> {
  const r = await h.viaRouter(host);
  let json: any;
  try {
    json = JSON.parse(r.text);
  } catch {
    json = r.text;
  }
  return { status: r.status, json };
}

/** Deploy `app` over the API with hello's artifact (no build): what `pilot run` does at its deploy step. */
function deployVia(app: string, config: Record<string, unknown>): Promise<{ status: number; json: any }> {
  return h.apiCall('POST', `/api/v1/apps/${app}/revisions`, {
    artifact: deployed.artifact,
    commit: deployed.commit,
    ...(deployed.node ? { node: deployed.node } : {}),
    config,
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Run `pilot up` to its end (a refused start); returns its exit code and output. */
async function upRefused(args: string[] = []): Promise<{ code: number | null; out: string }> {
  const r = await h.cli(['up', '--api-port', '0', '--router-port', '0', ...args]);
  return { code: r.code, out: r.stdout + r.stderr };
}

describe('state: one app cannot break another; state is never guessed', { timeout: 600_000 }, () => {
  before(async () => {
    repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    await h.startUp();
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const status = (await h.apiCall('GET', '/api/v1/apps/hello')).json;
    deployed = { artifact: status.revisions[0].artifact, commit: status.revisions[0].commit, node: status.revisions[0].node };
  });
  after(() => h.cleanup());

  it('refuses a host claimed by another app with 409 naming the owner; every app keeps routing', async () => {
    const stolen = await deployVia('thief', { hosts: ['hello.localhost'] });
    assert.equal(stolen.status, 409, JSON.stringify(stolen.json));
    assert.equal(stolen.json.error.code, 'host_taken');
    assert.match(stolen.json.error.message, /"hello\.localhost" belongs to app "hello"/);
    assert.equal(stolen.json.error.details.owner, 'hello');
    // Case, port and trailing dot do not get around it; nor does another app's reserved <name>.localhost.
    assert.equal((await deployVia('thief', { hosts: ['HELLO.localhost.'] })).status, 409);
    const reserved = await deployVia('thief', { hosts: ['shop.localhost'] });
    assert.equal(reserved.status, 409);
    assert.match(reserved.json.error.message, /reserved for an app named "shop"/);
    assert.equal((await h.apiCall('GET', '/api/v1/apps/thief')).status, 404, 'nothing was stored');
    // A host of its own is fine, and both apps route.
    const ok = await deployVia('thief', { hosts: ['thief.example.test'] });
    assert.equal(ok.status, 201, JSON.stringify(ok.json));
    await waitFor('thief to serve', async () => (await served('thief.example.test')).status === 200 || undefined, 60_000);
    assert.equal((await served()).json.message, 'hello from Pilot');
    // The owner of a host cannot be taken over by the newcomer either: hello may not claim thief's host.
    const back = await deployVia('hello', { name: 'hello', hosts: ['thief.example.test'], health: { path: '/healthz' } });
    assert.equal(back.status, 409);
    assert.equal(back.json.error.details.owner, 'thief');
  });

  it('refuses it for a CLI deploy (pilot run) with the owner in the error', async () => {
    const thiefRepo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    writeFileSync(join(thiefRepo, 'pilot.yaml'), 'name: thief2\nhosts: [hello.localhost]\n');
    await git(thiefRepo, 'commit', '-qam', 'steal the host');
    const r = await h.cli(['run', thiefRepo]);
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /"hello\.localhost" belongs to app "hello"/);
    assert.equal((await served()).status, 200);
  });

  it('refuses it for a webhook deploy: the run fails naming the owner, hello keeps serving', async () => {
    const origin = h.track(tempDir('origin'));
    await git(origin, 'init', '-q', '--bare');
    const work = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    writeFileSync(join(work, 'pilot.yaml'), 'name: hook\nhosts: [hello.localhost]\n');
    await git(work, 'commit', '-qam', 'hook app claims hello');
    await git(work, 'remote', 'add', 'origin', origin);
    await git(work, 'push', '-q', 'origin', 'HEAD:main');
    const sha = await git(work, 'rev-parse', 'HEAD');
    const secret = 'state-test-webhook-secret-0123';
    const created = await h.apiCall('POST', '/api/v1/apps', { name: 'hook', repo: origin, branch: 'main', secret });
    assert.equal(created.status, 201, JSON.stringify(created.json));
    const p = structuredClone(pushExample) as Record<string, any>;
    Object.assign(p, {
      ref: 'refs/heads/main',
      after: sha,
      deleted: false,
      repository: { ...p.repository, clone_url: origin, full_name: 'acme/hook' },
    });
    p.head_commit = { ...(p.head_commit ?? {}), id: sha, message: 'x', author: { name: 'Dev', email: 'dev@example.com' } };
    const body = JSON.stringify(p);
    const res = await request(`${h.api}/hooks/github/hook`, {
      method: 'POST',
      body,
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'push',
        'x-github-delivery': randomUUID(),
        'x-hub-signature-256': signGithubPayload(secret, body),
      },
    });
    assert.equal(res.statusCode, 202, await res.body.text());
    const run = await waitFor(
      'the webhook run to end',
      async () => {
        const runs = (await h.apiCall('GET', '/api/v1/runs?app=hook')).json.runs as any[];
        const r = runs[0];
        return r && !['queued', 'running'].includes(r.status) ? r : undefined;
      },
      240_000,
    );
    assert.equal(run.status, 'failed', JSON.stringify(run));
    assert.match(run.error, /"hello\.localhost" belongs to app "hello"/);
    assert.equal((await served()).json.message, 'hello from Pilot');
  });

  it('a database from before the fix (two apps claim one host): the routing table is built per app, logged once', async () => {
    await h.killUp('SIGKILL');
    const db = new Database(join(h.home, 'pilot.db'));
    try {
      const rev = db.prepare(`SELECT * FROM revisions WHERE app = 'hello' ORDER BY number DESC LIMIT 1`).get() as Record<string, unknown>;
      const config = { ...JSON.parse(rev.config as string), name: 'legacy', hosts: ['hello.localhost'] };
      const now = Date.now();
      db.prepare('INSERT INTO apps (name, config, replicas, active_revision, created_at, updated_at) VALUES (?, ?, 0, 1, ?, ?)').run(
        'legacy',
        JSON.stringify(config),
        now,
        now,
      );
      db.prepare('INSERT INTO revisions (app, number, artifact, commit_sha, dirty, config, created_at) VALUES (?, 1, ?, ?, 0, ?, ?)').run(
        'legacy',
        rev.artifact,
        rev.commit_sha,
        JSON.stringify(config),
        now,
      );
    } finally {
      db.close();
    }
    await h.startUp();
    await sleep(2000); // several reconcile passes
    assert.equal((await served()).json.message, 'hello from Pilot', 'the owner keeps its host');
    assert.equal((await served('thief.example.test')).status, 200, 'other apps keep routing');
    const status = (await h.apiCall('GET', '/api/v1/apps/legacy')).json;
    assert.match(status.routing.problems.join('\n'), /"hello\.localhost" belongs to app "hello"/);
    const log = readFileSync(join(h.home, 'logs', 'pilot.log'), 'utf8')
      .split('\n')
      .filter((l) => l.includes('left out of the routing table') && l.includes('"legacy"'));
    assert.equal(log.length, 1, 'logged once, not on every pass');
    assert.equal((await h.cli(['apps', 'rm', 'legacy', '--yes'])).code, 0);
  });

  it('pilot apps rm: asks for --yes, stops the instances, drops the routes, releases the hosts, forgets secrets and webhook', async () => {
    const put = await h.apiCall('PUT', '/api/v1/apps/thief/secrets/TOKEN', { value: 's3cret-value' });
    assert.ok(put.status < 300, JSON.stringify(put.json));
    const pids = ((await h.apiCall('GET', '/api/v1/apps/thief')).json.instances as any[]).map((i) => i.pid as number);
    assert.equal(pids.length, 1);
    const refused = await h.cli(['apps', 'rm', 'thief']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /--yes/);
    assert.equal((await served('thief.example.test')).status, 200, 'not removed without confirmation');
    const rm = await h.cli(['apps', 'rm', 'thief', '--yes']);
    assert.equal(rm.code, 0, rm.stderr);
    assert.match(rm.stdout, /thief removed/);
    // Its routes are gone at once; its process stops; hello is untouched.
    assert.equal((await served('thief.example.test')).status, 404);
    assert.equal((await served('thief.localhost')).status, 404);
    await waitFor('thief instance to stop', () => (!alive(pids[0]!) ? true : undefined), 60_000);
    assert.equal((await served()).status, 200);
    const list = (await h.apiCall('GET', '/api/v1/apps')).json.apps as any[];
    assert.deepEqual(list.map((a) => a.name).sort(), ['hello', 'hook']); // legacy (previous test) is gone too
    assert.equal((await h.apiCall('GET', '/api/v1/apps/thief/secrets')).status, 404);
    // The host is free again: another app may claim it, and the name can be used afresh.
    await waitFor(
      'thief to be purged',
      async () => (await deployVia('thief', { hosts: ['x.example.test'] })).status === 201 || undefined,
      60_000,
    );
    assert.equal((await deployVia('other', { hosts: ['thief.example.test'] })).status, 201);
    // A webhook app loses its webhook: a delivery now finds no app.
    assert.equal((await h.cli(['apps', 'rm', 'hook', '--yes'])).code, 0);
    const hook = await request(`${h.api}/hooks/github/hook`, {
      method: 'POST',
      body: '{}',
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'push',
        'x-github-delivery': randomUUID(),
        'x-hub-signature-256': 'sha256=00',
      },
    });
    assert.equal(hook.statusCode, 404, await hook.body.text());
    const missing = await h.cli(['apps', 'rm', 'nope', '--yes']);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /app "nope" not found/);
    for (const app of ['thief', 'other']) assert.equal((await h.cli(['apps', 'rm', app, '--yes'])).code, 0);
  });

  it('backup while running, restore refused while running, restore round trip, then a deploy', async () => {
    const file = join(h.track(tempDir('backup')), 'pilot-backup.db');
    const b = await h.cli(['backup', file]);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /backup written/);
    assert.equal(readFileSync(file).subarray(0, 15).toString(), 'SQLite format 3');
    // After the backup: a second app. The restore forgets it (its instance becomes an orphan).
    assert.equal((await deployVia('later', {})).status, 201);
    const laterPid = await waitFor(
      'later to be ready',
      async () => {
        const i = ((await h.apiCall('GET', '/api/v1/apps/later')).json.instances as any[])[0];
        return i?.state === 'ready' ? (i.pid as number) : undefined;
      },
      60_000,
    );
    const refused = await h.cli(['restore', file]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /restore needs it stopped/);
    const helloPid = (await served()).json.pid as number;

    await h.killUp('SIGTERM');
    const bad = join(h.track(tempDir('bad')), 'junk.db');
    writeFileSync(bad, 'not a database at all');
    const junk = await h.cli(['restore', bad]);
    assert.notEqual(junk.code, 0);
    assert.match(junk.stderr, /not a usable Pilot backup/);
    const r = await h.cli(['restore', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /previous database is kept as/);
    await h.startUp();
    const apps = ((await h.apiCall('GET', '/api/v1/apps')).json.apps as any[]).map((a) => a.name);
    assert.deepEqual(apps, ['hello'], 'rows as they were at the backup');
    assert.equal((await served()).json.pid, helloPid, 'hello kept running, same process');
    // The instance the backup does not know is kept running and reported, not stopped.
    const orphans = await waitFor('the orphan to be reported', async () => {
      const o = (await h.apiCall('GET', '/api/v1/orphans')).json.orphans as any[];
      return o.length > 0 ? o : undefined;
    });
    assert.equal(orphans[0].app, 'later');
    assert.equal(orphans[0].pid, laterPid);
    assert.ok(alive(laterPid));
    const s = await h.cli(['orphans', 'stop', orphans[0].id]);
    assert.equal(s.code, 0, s.stderr);
    await waitFor('the orphan to stop', () => (!alive(laterPid) ? true : undefined), 60_000);
    // A deploy after the restore works.
    const d = await deployVia('hello', { name: 'hello', health: { path: '/healthz' }, env: { GREETING: 'after restore' } });
    assert.equal(d.status, 201, JSON.stringify(d.json));
    await waitFor('the new revision to serve', async () => ((await served()).json.message === 'after restore' ? true : undefined), 90_000);
  });

  it('refuses to start without its database (state beside it), exits non-zero, and the app keeps serving', async () => {
    const before = (await served()).json.pid as number;
    await h.killUp('SIGKILL');
    for (const f of ['pilot.db', 'pilot.db-wal', 'pilot.db-shm']) rmSync(join(h.home, f), { force: true });
    const r = await upRefused();
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /state database .*pilot\.db is missing/);
    assert.match(r.out, /--fresh-database/);
    assert.match(r.out, /pilot restore/);
    assert.equal(existsSync(join(h.home, 'pilot.db')), false, 'no empty database was made');
    const s = await served();
    assert.equal(s.status, 200, 'the router process kept serving');
    assert.equal(s.json.pid, before);
  });

  it('--fresh-database starts, and keeps the running instance as an orphan', async () => {
    const pid = (await served()).json.pid as number;
    await h.startUp({}, 'up', { api: 0, router: 0 }, [], ['--fresh-database']);
    await waitFor('the serving instance to be reported as an orphan', async () => {
      const o = (await h.apiCall('GET', '/api/v1/orphans')).json.orphans as any[];
      return o.some((x) => x.pid === pid && x.app === 'hello') ? o : undefined;
    });
    assert.ok(alive(pid), 'never stopped on a guess');
    const nodes = await h.cli(['nodes']);
    assert.match(nodes.stdout, /ORPHANS/);
  });

  it('refuses a corrupt database: exits non-zero with the message and the way out', async () => {
    await h.killUp('SIGKILL');
    const db = join(h.home, 'pilot.db');
    for (const f of ['pilot.db-wal', 'pilot.db-shm']) rmSync(join(h.home, f), { force: true });
    const bytes = readFileSync(db);
    bytes.fill(0x5a, 100, Math.min(bytes.length, 8192)); // the schema page, trampled
    writeFileSync(db, bytes);
    const r = await upRefused();
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /state database .* is damaged/);
    assert.match(r.out, /pilot restore/);
    writeFileSync(db, 'garbage');
    const g = await upRefused();
    assert.equal(g.code, 1, g.out);
    assert.match(g.out, /damaged: file is not a database/);
  });
});
