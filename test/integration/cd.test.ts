/**
 * The CD server end to end: a bare git repository, pushes, GitHub-shaped deliveries (GitHub's own
 * example bodies, re-signed the way GitHub signs) to a running `pilot up`. Checks: the pushed SHA
 * is deployed; a redelivery is ignored; a burst of pushes becomes one deploy of the newest with the
 * older runs superseded; kill -9 mid-build and a restart end with the newest SHA live and no run
 * lost; secrets are injected, encrypted at rest and masked; commit statuses reach a (local) GitHub
 * API; bad deliveries are refused and the server stays up.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { request } from 'undici';
import { signGithubPayload } from '../../src/cd/github-signature.js';
import { git, Harness, jsonOrText, makeRepo, ROOT, sleep, tempDir, waitFor } from './harness.js';

const examples = createRequire(import.meta.url)('@octokit/webhooks-examples') as { name: string; examples: Record<string, unknown>[] }[];
const pushExample = examples.find((e) => e.name === 'push')!.examples[0]!;
const pingExample = examples.find((e) => e.name === 'ping')!.examples[0]!;

const SECRET = 'it-webhook-secret-0123456789';
const API_KEY = 'sk_live_very_secret_value_42';
const h = new Harness();
let origin = '';
let work = '';
const statusCalls: { path: string; auth: string; body: { state: string; target_url: string } }[] = [];
let github: Server;

const sign = (body: string): string => signGithubPayload(SECRET, body);

async function deliver(
  event: string,
  payload: unknown,
  opts: { delivery?: string; signature?: string | null; raw?: string } = {},
): Promise<{ status: number; json: any }> {
  const body = opts.raw ?? JSON.stringify(payload, null, 2); // GitHub's own formatting differs from ours: sign the bytes
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'x-github-event': event,
    'x-github-delivery': opts.delivery ?? randomUUID(),
    'user-agent': 'GitHub-Hookshot/test',
  };
  if (opts.signature !== null) headers['x-hub-signature-256'] = opts.signature ?? sign(body);
  const res = await request(`${h.api}/hooks/github/hello`, { method: 'POST', headers, body });
  return { status: res.statusCode, json: jsonOrText(await res.body.text()) };
}

function pushPayload(sha: string, message: string): Record<string, unknown> {
  const p = structuredClone(pushExample) as Record<string, any>;
  p.ref = 'refs/heads/main';
  p.after = sha;
  p.deleted = false;
  p.repository = { ...p.repository, clone_url: origin, full_name: 'acme/hello' };
  p.head_commit = { ...(p.head_commit ?? {}), id: sha, message, author: { name: 'Dev Eloper', email: 'dev@example.com' } };
  return p;
}

async function pushCommit(change: (dir: string) => void, message: string): Promise<string> {
  change(work);
  await git(work, 'add', '-A');
  await git(work, 'commit', '-qm', message);
  await git(work, 'push', '-q', 'origin', 'HEAD:main');
  return git(work, 'rev-parse', 'HEAD');
}

async function runOf(id: number): Promise<any> {
  return (await h.apiCall('GET', `/api/v1/runs/${id}`)).json.run;
}

async function waitRun(id: number, timeoutMs = 90_000): Promise<any> {
  return waitFor(
    `run #${id} to end`,
    async () => {
      const r = await runOf(id);
      return ['queued', 'running'].includes(r.status) ? undefined : r;
    },
    timeoutMs,
  );
}

async function served(): Promise<{ commit: string; key?: string }> {
  const r = await h.viaRouter('hello.localhost');
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text) as { commit: string };
}

describe('CD server: GitHub pushes deploy, exactly once, durably', { timeout: 420_000 }, () => {
  before(async () => {
    github = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        statusCalls.push({ path: req.url ?? '', auth: req.headers.authorization ?? '', body: JSON.parse(body) as never });
        res.writeHead(201, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((r) => github.listen(0, '127.0.0.1', r));
    origin = h.track(tempDir('origin'));
    await git(origin, 'init', '-q', '--bare');
    work = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    // The app shows its secret (so the test can see it is injected) and logs it (to see it masked).
    writeFileSync(
      join(work, 'server.js'),
      readFileSync(join(work, 'server.js'), 'utf8')
        .replace(
          'const server = createServer((req, res) => {',
          "const key = process.env.API_KEY ?? '';\nconsole.log(`key=${key} b64=${Buffer.from(key).toString('base64')}`);\nconst server = createServer((req, res) => {",
        )
        .replace(
          'JSON.stringify({ message: greeting, revision, commit, pid: process.pid })',
          'JSON.stringify({ message: greeting, revision, commit, pid: process.pid, keyLength: key.length })',
        ),
    );
    await git(work, 'commit', '-qam', 'app prints its key');
    await git(work, 'remote', 'add', 'origin', origin);
    await git(work, 'push', '-q', 'origin', 'HEAD:main');
    await h.startUp({ PILOT_CD_QUIET_MS: '1500' });
  });
  after(async () => {
    await h.cleanup();
    github.close();
  });

  it('creates a push-deployed app and prints the webhook URL and secret', async () => {
    const { port } = github.address() as { port: number };
    const r = await h.cli([
      'apps',
      'create',
      'hello',
      '--repo',
      origin,
      '--branch',
      'main',
      '--secret',
      SECRET,
      '--github-token',
      'ghp_testtoken123',
      '--status-api',
      `http://127.0.0.1:${port}`,
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.webhook.path, '/hooks/github/hello');
    assert.equal(j.webhook.secret, SECRET);
    const s = await h.cli(['secrets', 'set', 'hello', 'API_KEY', API_KEY]);
    assert.equal(s.code, 0, s.stderr);
    assert.equal((await deliver('ping', pingExample)).status, 200);
  });

  it('deploys the pushed SHA, and ignores a redelivery', async () => {
    const sha = await git(work, 'rev-parse', 'HEAD');
    const delivery = randomUUID();
    const first = await deliver('push', pushPayload(sha, 'app prints its key'), { delivery });
    assert.equal(first.status, 202, JSON.stringify(first.json));
    const run = await waitRun(first.json.run);
    assert.equal(run.status, 'succeeded', run.error);
    const body = await served();
    assert.equal(body.commit, sha);
    assert.equal((body as { keyLength?: number }).keyLength, API_KEY.length, 'the secret is injected');
    const again = await deliver('push', pushPayload(sha, 'app prints its key'), { delivery });
    assert.equal(again.status, 200);
    assert.equal(again.json.run, first.json.run);
    const runs = (await h.apiCall('GET', '/api/v1/runs?app=hello')).json.runs.filter((r: any) => r.trigger === 'webhook');
    assert.equal(runs.length, 1);
    // The audit trail: delivery → commit → artifact → revision → rollout result.
    assert.equal(runs[0].deliveryId, delivery);
    assert.match(runs[0].artifact, /^sha256:/);
    assert.equal(runs[0].rollout.status, 'succeeded');
    // Commit statuses reached the (local) GitHub API with the token: pending, then success.
    await waitFor('commit statuses', () => statusCalls.filter((c) => c.path.endsWith(sha)).length >= 2 || undefined);
    const mine = statusCalls.filter((c) => c.path === `/repos/acme/hello/statuses/${sha}`);
    assert.deepEqual(
      mine.map((c) => c.body.state),
      ['pending', 'success'],
    );
    assert.equal(mine[0]!.auth, 'Bearer ghp_testtoken123');
  });

  it('keeps secrets encrypted at rest and masked in logs', async () => {
    const db = readFileSync(join(h.home, 'pilot.db'));
    assert.equal(db.includes(Buffer.from(API_KEY)), false);
    assert.equal(db.includes(Buffer.from(SECRET)), false);
    const logs = await h.cli(['logs', 'hello']);
    assert.match(logs.stdout, /key=\*\*\* b64=\*\*\*/);
    assert.ok(!logs.stdout.includes(API_KEY));
  });

  it('turns a burst of three pushes into one deploy of the newest, superseding the others', async () => {
    const shas: string[] = [];
    const ids: number[] = [];
    for (let i = 1; i <= 3; i++) {
      const sha = await pushCommit((d) => writeFileSync(join(d, 'burst.txt'), `burst ${i}\n`), `burst ${i}`);
      shas.push(sha);
      const r = await deliver('push', pushPayload(sha, `burst ${i}`));
      assert.equal(r.status, 202, JSON.stringify(r.json));
      ids.push(r.json.run);
    }
    const last = await waitRun(ids[2]!);
    assert.equal(last.status, 'succeeded', last.error);
    assert.equal((await runOf(ids[0]!)).status, 'superseded');
    assert.equal((await runOf(ids[1]!)).status, 'superseded');
    assert.equal((await served()).commit, shas[2]);
    const revisions = (await h.apiCall('GET', '/api/v1/apps/hello')).json.revisions;
    assert.ok(!revisions.some((r: any) => r.commit === shas[0] || r.commit === shas[1]), 'no deploy of the older commits');
    // Fencing: an older push's run can never deploy over a newer one, even when it asks directly.
    const fenced = await h.apiCall('POST', '/api/v1/apps/hello/revisions', { artifact: last.artifact, commit: shas[0], runId: ids[0] });
    assert.equal(fenced.status, 409, JSON.stringify(fenced.json));
    assert.equal(fenced.json.error.code, 'superseded');
  });

  it('records a rollback in the same history as the pushes', async () => {
    const r = await h.cli(['rollback', 'hello']);
    assert.equal(r.code, 0, r.stderr);
    const runs = await waitFor('the rollback run to end', async () => {
      const list = (await h.apiCall('GET', '/api/v1/runs?app=hello')).json.runs;
      return list[0].trigger === 'rollback' && list[0].status !== 'running' ? list : undefined;
    });
    assert.equal(runs[0].status, 'succeeded');
    assert.equal(runs[0].rollout.status, 'succeeded');
    assert.ok(runs.some((x: any) => x.trigger === 'webhook' && x.deliveryId));
  });

  it('survives kill -9 mid-build: the run is retried and the newest SHA goes live', async () => {
    const sha = await pushCommit((d) => {
      const pkg = JSON.parse(readFileSync(join(d, 'package.json'), 'utf8'));
      pkg.scripts.build = 'node -e "console.log(\'slow build\'); setTimeout(() => {}, 3000)"';
      writeFileSync(join(d, 'package.json'), JSON.stringify(pkg, null, 2));
    }, 'slow build');
    const r = await deliver('push', pushPayload(sha, 'slow build'));
    assert.equal(r.status, 202);
    const id = r.json.run as number;
    await waitFor(
      'the build to be running',
      async () => {
        const run = await runOf(id);
        return run.steps.some((s: any) => s.name === 'build' && s.status === 'running') || undefined;
      },
      60_000,
    );
    await h.killUp('SIGKILL');
    await h.startUp({ PILOT_CD_QUIET_MS: '1500' });
    const interrupted = await waitFor('the run to be marked interrupted', async () => {
      const run = await runOf(id);
      return run.status === 'interrupted' ? run : undefined;
    });
    assert.match(interrupted.error, /retried as run #\d+/);
    const retry = (await h.apiCall('GET', '/api/v1/runs?app=hello')).json.runs.find((x: any) => x.retryOf === id);
    assert.ok(retry, 'a retry run exists');
    const done = await waitRun(retry.id);
    assert.equal(done.status, 'succeeded', done.error);
    assert.equal(done.attempt, 2);
    assert.equal((await served()).commit, sha);
    await sleep(3500); // the orphaned build of the killed server ends on its own (a 3 s sleep)
  });

  it('rolls back a pushed revision that crash-loops, and GitHub gets a failure status with the reason', async () => {
    const before = await served();
    const sha = await pushCommit((d) => {
      const file = join(d, 'server.js');
      writeFileSync(file, `console.error('boom: this revision cannot start');\nprocess.exit(3);\n` + readFileSync(file, 'utf8'));
    }, 'a revision that cannot start');
    const r = await deliver('push', pushPayload(sha, 'a revision that cannot start'));
    assert.equal(r.status, 202, JSON.stringify(r.json));
    const run = await waitRun(r.json.run, 150_000);
    assert.equal(run.status, 'failed');
    assert.ok(run.rolloutId, JSON.stringify(run));
    assert.match(run.error, /crash|exited|restart/i, run.error);
    assert.equal((await served()).commit, before.commit, 'the previous revision still serves');
    const mine = await waitFor('the failure status', () => {
      const calls = statusCalls.filter((c) => c.path === `/repos/acme/hello/statuses/${sha}`);
      return calls.length >= 2 ? calls : undefined;
    });
    assert.deepEqual(
      mine.map((c) => c.body.state),
      ['pending', 'failure'],
    );
    const description = (mine[1]!.body as unknown as { description: string }).description;
    assert.match(description, /crash|exited|restart/i, description);
    // The fix deploys: the app is whole again for the tests after this one.
    const fixed = await pushCommit((d) => {
      const file = join(d, 'server.js');
      writeFileSync(file, readFileSync(file, 'utf8').replace(`console.error('boom: this revision cannot start');\nprocess.exit(3);\n`, ''));
    }, 'fixed');
    const again = await deliver('push', pushPayload(fixed, 'fixed'));
    assert.equal((await waitRun(again.json.run)).status, 'succeeded');
    assert.equal((await served()).commit, fixed);
  });

  it('refuses bad deliveries and stays up', async () => {
    const sha = await git(work, 'rev-parse', 'HEAD');
    const p = pushPayload(sha, 'x');
    assert.equal((await deliver('push', p, { signature: null })).status, 401);
    const wrong = await deliver('push', p, { signature: 'sha256=' + '0'.repeat(64) });
    assert.equal(wrong.status, 401);
    assert.ok(!JSON.stringify(wrong.json).includes(sign(JSON.stringify(p, null, 2)).slice(7)), 'no hint of the expected MAC');
    assert.equal((await deliver('push', p, { signature: sign(JSON.stringify(p)) })).status, 401, 're-serialised body');
    assert.equal(
      (
        await deliver('push', p, {
          signature:
            'sha1=' +
            createHmac('sha1', SECRET)
              .update(JSON.stringify(p, null, 2))
              .digest('hex'),
        })
      ).status,
      401,
    );
    assert.equal((await deliver('push', undefined, { raw: '{"ref":', signature: sign('{"ref":') })).status, 400);
    assert.equal((await deliver('push', { ...p, ref: 123 })).status, 400);
    assert.equal((await deliver('push', { ...p, repository: null })).status, 400);
    const other = await deliver('push', {
      ...p,
      repository: { ...(p.repository as object), clone_url: 'https://github.com/evil/other.git', full_name: 'evil/other' },
    });
    assert.equal(other.status, 202);
    assert.match(JSON.stringify(other.json), /repository/);
    // Hostile branch names are data: answered as "not the app's branch", and no run is made of them.
    const runsBefore = (await h.apiCall('GET', '/api/v1/runs?app=hello&limit=1000')).json.runs.length;
    for (const branch of ['$(touch /tmp/pilot-it-x)', '--upload-pack=touch /tmp/pilot-it-x', 'zzz";echo${IFS}hi;#']) {
      const r = await deliver('push', { ...p, ref: `refs/heads/${branch}` });
      assert.equal(r.status, 202, JSON.stringify(r.json));
      assert.match(r.json.ignored, /is not the app's branch/);
    }
    assert.equal((await h.apiCall('GET', '/api/v1/runs?app=hello&limit=1000')).json.runs.length, runsBefore);
    assert.equal((await h.apiCall('GET', '/healthz')).status, 200);
    assert.equal((await served()).commit.length, 40);
  });
});
