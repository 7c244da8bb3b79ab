/**
 * Runs through the API: the route is thin and the run ledger decides. A report on an ended run is
 * 409 run_finished saying how it ended (a cancelled run, a CLI run a restarted server interrupted);
 * an illegal move is 409 run_transition; the server goes on answering, and nothing is written.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { request } from 'undici';
import { startControlPlane, type ControlPlane } from './server.js';

const SHA = 'a'.repeat(40);
const DIGEST = `sha256:${'b'.repeat(64)}`;

/** Answers are read field by field in assertions. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- see above
type Loose = any;

describe('runs API: one writer', { timeout: 120_000 }, () => {
  let cp: ControlPlane | undefined;
  let home = '';
  const start = async (): Promise<ControlPlane> =>
    (cp = await startControlPlane({
      home,
      host: '127.0.0.1',
      port: 0,
      routerHost: '127.0.0.1',
      routerPort: 0,
      logger: pino({ level: 'silent' }),
      gcIntervalMs: 0,
    }));
  const call = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: Loose }> => {
    const res = await request(cp!.apiUrl + path, {
      method: method as 'GET',
      headers: { authorization: `Bearer ${cp!.adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.body.text();
    return { status: res.statusCode, json: text ? JSON.parse(text) : undefined };
  };
  before(async () => {
    home = mkdtempSync(join(tmpdir(), 'pilot-run-routes-'));
    await start();
  });
  after(async () => {
    await cp?.close();
    rmSync(home, { recursive: true, force: true });
  });

  it('refuses a late report on a cancelled run, saying how it ended; the run stays as it ended', async () => {
    const run = (await call('POST', '/api/v1/runs', { app: 'shop', commit: SHA })).json.run;
    assert.equal(run.status, 'running');
    assert.equal((await call('PATCH', `/api/v1/runs/${run.id}`, { steps: [{ name: 'source', status: 'running' }] })).status, 200);
    const cancelled = await call('PATCH', `/api/v1/runs/${run.id}`, {
      status: 'cancelled',
      error: 'source: cancelled by the user (Ctrl-C)',
    });
    assert.equal(cancelled.json.run.status, 'cancelled');
    assert.ok(cancelled.json.run.finishedAt > 0);
    for (const late of [{ status: 'succeeded' }, { steps: [{ name: 'source', status: 'succeeded' }] }, { artifact: DIGEST }]) {
      const r = await call('PATCH', `/api/v1/runs/${run.id}`, late);
      assert.equal(r.status, 409, JSON.stringify(late));
      assert.equal(r.json.error.code, 'run_finished');
      assert.match(r.json.error.message, new RegExp(`run #${run.id} has already ended cancelled: source: cancelled by the user`));
      assert.match(r.json.error.hint, /pilot run/);
      assert.equal(r.json.error.retryable, false);
    }
    // The same report again (a retry whose answer was lost) is answered with the run as it is.
    const again = await call('PATCH', `/api/v1/runs/${run.id}`, { status: 'cancelled' });
    assert.equal(again.status, 200);
    assert.equal(again.json.run.finishedAt, cancelled.json.run.finishedAt);
    const stored = (await call('GET', `/api/v1/runs/${run.id}`)).json.run;
    assert.equal(stored.status, 'cancelled');
    assert.equal(stored.artifact, undefined, 'the late artifact was not written');
    assert.equal(stored.steps.find((s: Loose) => s.name === 'source').status, 'running');
  });

  it('refuses illegal moves with run_transition and writes nothing of the report', async () => {
    const run = (await call('POST', '/api/v1/runs', { app: 'shop', commit: SHA })).json.run;
    await call('PATCH', `/api/v1/runs/${run.id}`, { artifact: DIGEST, steps: [{ name: 'build', status: 'failed', error: 'exit 1' }] });
    for (const bad of [
      { artifact: `sha256:${'c'.repeat(64)}` },
      { steps: [{ name: 'build', status: 'running' }] },
      {
        steps: [
          { name: 'deploy', status: 'running' },
          { name: 'deploy', status: 'succeeded' },
        ],
      },
      { status: 'running', revision: 2, steps: [{ name: 'source', status: 'skipped' }], artifact: `sha256:${'d'.repeat(64)}` },
    ]) {
      const r = await call('PATCH', `/api/v1/runs/${run.id}`, bad);
      assert.equal(r.status, 409, JSON.stringify(bad));
      assert.equal(r.json.error.code, 'run_transition');
      assert.match(r.json.error.hint, /set once/);
    }
    const stored = (await call('GET', `/api/v1/runs/${run.id}`)).json.run;
    assert.equal(stored.artifact, DIGEST);
    assert.equal(stored.revision ?? undefined, undefined, 'nothing of a refused report is written');
    assert.equal(stored.steps.find((s: Loose) => s.name === 'source').status, 'pending');
    // Schema-level bad input stays a 400, as before.
    assert.equal((await call('PATCH', `/api/v1/runs/${run.id}`, { status: 'interrupted' })).status, 400);
    assert.equal((await call('PATCH', `/api/v1/runs/${run.id}`, { steps: [{ name: 'lint', status: 'running' }] })).status, 400);
    assert.equal((await call('PATCH', '/api/v1/runs/99999', { status: 'failed' })).json.error.code, 'run_not_found');
    assert.equal((await call('GET', '/healthz')).status, 200);
  });

  it('a CLI run a restarted server interrupted refuses its CLI’s late reports', async () => {
    const run = (await call('POST', '/api/v1/runs', { app: 'shop', commit: SHA })).json.run;
    await cp!.close();
    cp = undefined;
    await start();
    const stored = (await call('GET', `/api/v1/runs/${run.id}`)).json.run;
    assert.equal(stored.status, 'interrupted');
    const late = await call('PATCH', `/api/v1/runs/${run.id}`, { steps: [{ name: 'deploy', status: 'running' }] });
    assert.equal(late.status, 409);
    assert.equal(late.json.error.code, 'run_finished');
    assert.match(late.json.error.message, /has already ended interrupted: interrupted: the server restarted/);
    const events = (await call('GET', '/api/v1/events?app=shop&limit=1000')).json.events.filter((e: Loose) => e.payload.run === run.id);
    assert.deepEqual(
      events.map((e: Loose) => `${e.kind}${e.payload.status ? ` ${e.payload.status}` : ''}`),
      ['run.created running', 'run.status interrupted'],
      'the refused report appended no event',
    );
  });
});
