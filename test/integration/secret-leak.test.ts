/**
 * A secret that cannot reach a process (a NUL byte: stored before such values were refused, or
 * by hand) fails the deploy by the variable's name: its value appears nowhere the user or an
 * operator looks (`pilot run` output, `pilot status`, the rollout's reason, pilot.log).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SecretBox } from '../../src/store/secret-box.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { git, Harness, makeRepo, ROOT } from './harness.js';

const h = new Harness();
const VALUE = 'sk_live_LEAKME_4242';

describe('a secret with a NUL byte is never echoed', { timeout: 300_000 }, () => {
  let repo = '';
  before(async () => {
    repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    await h.startUp({}, 'up');
    const r = await h.cli(['run', repo]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
  after(() => h.cleanup());

  it('fails the deploy naming the variable, never showing the value', async () => {
    // As if stored before NUL was refused: straight into the database, sealed with the server's key.
    const store = new SqliteStore(join(h.home, 'pilot.db'));
    try {
      await store.setSecret('hello', 'STRIPE_KEY', new SecretBox(join(h.home, 'secret.key')).seal(`${VALUE}\u0000tail`), Date.now());
    } finally {
      store.close();
    }
    writeFileSync(join(repo, 'CHANGE.txt'), 'x\n');
    await git(repo, 'add', '-A');
    await git(repo, 'commit', '-q', '-m', 'change');
    const run = await h.cli(['run', repo]);
    assert.notEqual(run.code, 0, run.stdout + run.stderr);
    const status = await h.cli(['status', 'hello']);
    const runs = JSON.stringify((await h.apiCall('GET', '/api/v1/runs?app=hello')).json);
    const app = JSON.stringify((await h.apiCall('GET', '/api/v1/apps/hello')).json);
    const log = readFileSync(join(h.home, 'logs', 'pilot.log'), 'utf8');
    for (const [where, text] of Object.entries({ run: run.stdout + run.stderr, status: status.stdout + status.stderr, runs, app, log })) {
      assert.ok(!text.includes(VALUE), `${where} shows the secret value:\n${text.slice(0, 3000)}`);
    }
    assert.match(app, /the environment variable STRIPE_KEY contains a NUL byte/);
    assert.equal((await h.viaRouter('hello.localhost')).status, 200, 'the previous revision keeps serving');
  });
});
