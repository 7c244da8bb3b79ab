/**
 * The event feed end to end: `pilot events -f` (a real CLI process following the SSE feed of a
 * real `pilot up`) during a `pilot run` deploy shows the run, the revision, the rollout and its
 * instances in order, each event once; `pilot run` follows its rollout through the same feed.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Harness, makeRepo, PILOT, ROOT, waitFor } from './harness.js';

const h = new Harness();
let repo = '';
let follower: ChildProcess | undefined;

interface Line {
  id: number;
  kind: string;
  app: string | null;
  payload: Record<string, unknown>;
}

describe('pilot events -f during a deploy', { timeout: 300_000 }, () => {
  before(async () => {
    repo = h.track(await makeRepo(join(ROOT, 'examples/hello')));
    await h.startUp();
  });
  after(async () => {
    if (follower?.pid !== undefined && follower.exitCode === null) follower.kill('SIGKILL');
    await h.cleanup();
  });

  it('shows run, rollout and instance events in order, each once, and pilot run reports the rollout from the feed', async () => {
    follower = spawn(process.execPath, [PILOT, 'events', '-f', '--json', '--limit', '0'], {
      cwd: ROOT,
      env: h.env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    follower.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    follower.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    // The follower is connected once the feed answered; a node event (the agent registered) is history.
    await waitFor('pilot events -f to connect', async () => {
      const n = (await h.apiCall('GET', '/api/v1/events?limit=1')).json;
      return n.events !== undefined || undefined;
    });
    await new Promise((r) => setTimeout(r, 1000));
    const run = await h.cli(['run', repo]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /instance hello-1-[0-9a-f]+: ready on/);
    assert.match(run.stdout, /rollout #1 succeeded/);
    const lines = (): Line[] =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Line);
    await waitFor(
      'the run to end in the feed',
      () => lines().some((l) => l.kind === 'run.status' && l.payload.status === 'succeeded') || undefined,
      60_000,
    );
    const seen = lines().filter((l) => l.app === 'hello');
    const ids = seen.map((l) => l.id);
    assert.deepEqual(
      ids,
      [...ids].sort((a, b) => a - b),
      'in id order',
    );
    assert.equal(new Set(ids).size, ids.length, 'each once');
    const at = (pred: (l: Line) => boolean, what: string): number => {
      const i = seen.findIndex(pred);
      assert.ok(i >= 0, `${what} missing from:\n${seen.map((l) => `${l.id} ${l.kind} ${JSON.stringify(l.payload)}`).join('\n')}\n${err}`);
      return i;
    };
    const order = [
      at((l) => l.kind === 'run.created', 'run.created'),
      at((l) => l.kind === 'run.steps', 'run.steps'),
      at((l) => l.kind === 'deploy.revision' && l.payload.revision === 1, 'deploy.revision'),
      at((l) => l.kind === 'rollout.started', 'rollout.started'),
      at((l) => l.kind === 'instance.placed', 'instance.placed'),
      at((l) => l.kind === 'instance.state' && l.payload.state === 'ready', 'instance ready'),
      at((l) => l.kind === 'deploy.activated' && l.payload.revision === 1, 'deploy.activated'),
      at((l) => l.kind === 'rollout.finished' && l.payload.status === 'succeeded', 'rollout.finished'),
      at((l) => l.kind === 'run.status' && l.payload.status === 'succeeded', 'run succeeded'),
    ];
    assert.deepEqual(
      order,
      [...order].sort((a, b) => a - b),
      'run, revision, rollout, instances, activation, end: in that order',
    );

    // The same history without -f, as text.
    const text = await h.cli(['events', 'hello', '--limit', '1000']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /rollout\.started\s+hello\s+rollout #1 started: revision - → 1/);
    assert.match(text.stdout, /instance\.state\s+hello\s+instance hello-1-[0-9a-f]+ ready on port \d+/);
    const unknown = await h.cli(['events', 'nope']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /app "nope" not found/);
  });
});
