import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MAX_MESSAGE_CHARS } from './github-push.js';
import { examplePing, examplePush, exampleTagPush, githubHeaders, nextSha, otherRepository } from './github-examples.fixture.js';
import { deliver, errorOf, startWebhookServer, type Answer, type WebhookServer } from './webhook-server.fixture.js';

const SECRET = 'push-secret';

describe('webhook routes: push deliveries', () => {
  let srv: WebhookServer;
  let scratch: string;
  const runsOf = async (app: string): Promise<Awaited<ReturnType<WebhookServer['store']['listRuns']>>> =>
    srv.store.listRuns({ app, limit: 1000 });

  /** Sign and send a push built from GitHub's example, as GitHub would (compact JSON). */
  async function push(app: string, overrides: Record<string, unknown>, delivery: string = randomUUID()): Promise<Answer> {
    const body = JSON.stringify(examplePush(overrides));
    return deliver(srv.url, app, body, githubHeaders(SECRET, body, 'push', delivery));
  }
  async function stillServing(): Promise<void> {
    const body = JSON.stringify(examplePing());
    assert.equal((await deliver(srv.url, 'shop', body, githubHeaders(SECRET, body, 'ping'))).status, 200);
  }

  before(async () => {
    srv = await startWebhookServer();
    scratch = mkdtempSync(join(tmpdir(), 'pilot-cd-marker-'));
    await srv.createApp('shop', SECRET, { branch: 'main' });
  });
  after(async () => {
    await srv.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  it("queues a run for a push to the app's branch, durably, then acknowledges it with 202", async () => {
    const sha = nextSha();
    const delivery = randomUUID();
    const a = await push('shop', { ref: 'refs/heads/main', after: sha }, delivery);
    assert.equal(a.status, 202);
    assert.equal(a.json?.status, 'queued');
    const id = a.json?.run as number;
    assert.deepEqual(a.json, { run: id, status: 'queued', superseded: [] });
    assert.equal(srv.queued.at(-1), id);
    const run = await srv.store.getRun(id);
    assert.equal(run?.status, 'queued');
    assert.equal(run?.trigger, 'webhook');
    assert.deepEqual([run?.commit, run?.branch, run?.deliveryId, run?.author], [sha, 'main', delivery, 'Codertocat']);
  });

  it('answers a redelivery with 200 and the same run, and the same SHA on a new delivery likewise', async () => {
    const sha = nextSha();
    const delivery = randomUUID();
    const first = await push('shop', { ref: 'refs/heads/main', after: sha }, delivery);
    const before = (await runsOf('shop')).length;
    const again = await push('shop', { ref: 'refs/heads/main', after: sha }, delivery);
    assert.equal(again.status, 200);
    assert.deepEqual(again.json, { run: first.json?.run, status: 'queued', duplicate: 'delivery' });
    const sameSha = await push('shop', { ref: 'refs/heads/main', after: sha });
    assert.equal(sameSha.status, 200);
    assert.deepEqual(sameSha.json, { run: first.json?.run, status: 'queued', duplicate: 'commit' });
    assert.equal((await runsOf('shop')).length, before, 'no second run');
  });

  it('ignores pushes from another repository, to another branch, of tags and branch deletions (202 and why)', async () => {
    const before = (await runsOf('shop')).length;
    const cases: [Answer, RegExp][] = [
      [
        await push('shop', { ref: 'refs/heads/main', after: nextSha(), repository: otherRepository('mallory/shop') }),
        /^repository "mallory\/shop" is not the app's repository$/,
      ],
      [await push('shop', { ref: 'refs/heads/dev', after: nextSha() }), /^branch "dev" is not the app's branch \("main"\)$/],
      [await push('shop', { ref: 'refs/heads/main', after: '0'.repeat(40), deleted: true, head_commit: null }), /^branch "main" deleted$/],
    ];
    const tag = JSON.stringify(exampleTagPush());
    cases.push([await deliver(srv.url, 'shop', tag, githubHeaders(SECRET, tag, 'push')), /^tag push "simple-tag"$/]);
    for (const [a, reason] of cases) {
      assert.equal(a.status, 202);
      assert.match(String(a.json?.ignored), reason);
    }
    assert.equal((await runsOf('shop')).length, before);
    await stillServing();
  });

  it('refuses malformed pushes with 400 naming the field, and a deploy without a usable delivery id', async () => {
    const cases: [Answer, RegExp][] = [
      [await push('shop', { ref: 123, after: nextSha() }), /^ref must be a string$/],
      [await push('shop', { ref: 'refs/heads/main', after: nextSha(), repository: null }), /^repository must be an object$/],
      [await push('shop', { ref: 'refs/heads/main', after: 'HEAD' }), /^after must be/],
      [await push('shop', { ref: 'refs/heads/main', after: nextSha() }, 'a b;rm -rf'), /X-GitHub-Delivery must be/],
    ];
    const body = JSON.stringify(examplePush({ ref: 'refs/heads/main', after: nextSha() }));
    const { 'x-github-delivery': _d, ...noDelivery } = githubHeaders(SECRET, body, 'push');
    cases.push([await deliver(srv.url, 'shop', body, noDelivery), /^missing X-GitHub-Delivery header$/]);
    for (const [a, message] of cases) {
      assert.equal(a.status, 400);
      assert.equal(errorOf(a).code, 'bad_request');
      assert.match(errorOf(a).message ?? '', message);
    }
    await stillServing();
  });

  it('treats hostile branch names as data: stored exactly when they are the branch, ignored otherwise', async () => {
    const marker = join(scratch, 'x');
    const names = [
      '$(touch /tmp/x)',
      '--upload-pack=touch /tmp/x',
      'zzz";echo${IFS}hi;#',
      `$(touch ${marker})`,
      `--upload-pack=touch ${marker}`,
      `\`touch ${marker}\``,
    ];
    for (const [i, branch] of names.entries()) {
      const app = `hostile-${i}`;
      await srv.createApp(app, SECRET, { branch });
      const sha = nextSha();
      const a = await push(app, { ref: `refs/heads/${branch}`, after: sha });
      assert.equal(a.status, 202, branch);
      const run = await srv.store.getRun(a.json?.run as number);
      assert.deepEqual([run?.branch, run?.commit], [branch, sha]);
      const other = await push('shop', { ref: `refs/heads/${branch}`, after: nextSha() });
      assert.equal(other.status, 202);
      assert.equal(other.json?.ignored, `branch ${JSON.stringify(branch)} is not the app's branch ("main")`);
    }
    assert.equal(existsSync(marker), false, 'nothing was executed');
    await stillServing();
  });

  it('stores a 1 MB commit message with ANSI escapes escaped and truncated', async () => {
    await srv.createApp('noisy', SECRET, { branch: 'main' });
    const message = `\u001b[2J\u001b[31mBUILD OK\u001b[0m\u0007${'\u001b[5m#'.repeat(200_000)}\nsecond line`;
    assert.ok(message.length > 1_000_000);
    const head = { ...(examplePush().head_commit as object), message };
    const a = await push('noisy', { ref: 'refs/heads/main', after: nextSha(), head_commit: head });
    assert.equal(a.status, 202);
    const run = await srv.store.getRun(a.json?.run as number);
    const stored = run?.message ?? '';
    assert.ok(stored.startsWith('\\x1b[2J\\x1b[31mBUILD OK\\x1b[0m\\x07\\x1b[5m#'), stored.slice(0, 60));
    assert.ok(stored.length <= MAX_MESSAGE_CHARS + 40, `stored ${stored.length} characters`);
    assert.match(stored, /… \(\d+ more characters\)$/);
    assert.doesNotMatch(stored, /[\u0000-\u001f\u007f-\u009f]|second line/);
  });

  it('supersedes the older queued runs when three pushes arrive together', async () => {
    await srv.createApp('busy', SECRET, { branch: 'main' });
    const shas = [nextSha(), nextSha(), nextSha()];
    const answers = await Promise.all(shas.map((sha) => push('busy', { ref: 'refs/heads/main', after: sha })));
    assert.deepEqual(
      answers.map((a) => a.status),
      [202, 202, 202],
    );
    const runs = await runsOf('busy');
    assert.equal(runs.length, 3);
    const newest = Math.max(...runs.map((r) => r.id));
    assert.deepEqual(runs.map((r) => r.status).sort(), ['queued', 'superseded', 'superseded']);
    assert.equal(runs.find((r) => r.status === 'queued')?.id, newest);
    // Every superseded run is named in the answer of the push that superseded it.
    const named = answers.flatMap((a) => a.json?.superseded as number[]).sort();
    assert.deepEqual(
      named,
      runs
        .filter((r) => r.status === 'superseded')
        .map((r) => r.id)
        .sort(),
    );
    await stillServing();
  });
});
