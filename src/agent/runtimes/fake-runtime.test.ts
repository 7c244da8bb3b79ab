import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { isPilotError } from '../../core/errors.js';
import { FakeHost, FakeRuntime } from './fake-runtime.js';
import type { StartRequest } from './runtime.js';
import { runtimeContract } from './runtime.contract.js';
import { waitFor } from './test-support.js';

const MISSING = 'pilot-no-such-command';

function request(instanceId: string): StartRequest {
  return { instanceId, stateDir: `/fake/${instanceId}`, cwd: '/fake/release', argv: ['node', 'server.js'], env: { PORT: '3000' } };
}

runtimeContract('fake', async () => {
  const host = new FakeHost();
  const makeRuntime = (): FakeRuntime =>
    new FakeRuntime({ host, startError: (req) => (req.argv[0] === MISSING ? `${MISSING}: command not found` : undefined) });
  return {
    makeRuntime,
    request,
    missingCommand: (id) => ({ ...request(id), argv: [MISSING] }),
    crash: (h) => makeRuntime().markDead(h),
    hasRecord: (dir) => host.pidFiles.has(dir),
    cleanup: async () => {},
  };
});

void describe('fake runtime failure injection', () => {
  void it('fails every start with startError, as deploy_failed', async () => {
    const rt = new FakeRuntime({ startError: 'disk full' });
    await assert.rejects(
      rt.start(request('a')),
      (e: unknown) => isPilotError(e) && e.code === 'deploy_failed' && e.message === 'disk full',
    );
    assert.deepEqual(rt.host.running(), []);
    rt.startError = undefined;
    const h = await rt.start(request('a'));
    assert.equal(rt.isRunning(h), true);
  });

  void it('crashes instances with exit code 1 after crashAfterMs', async () => {
    const rt = new FakeRuntime({ crashAfterMs: 30 });
    const h = await rt.start(request('a'));
    assert.equal(rt.isRunning(h), true);
    await waitFor(() => !rt.isRunning(h), 'the injected crash');
    assert.deepEqual(rt.exitInfo(h), { code: 1, signal: null });
  });

  void it('a stop before crashAfterMs wins: the exit is the SIGTERM', async () => {
    const rt = new FakeRuntime({ crashAfterMs: 30 });
    const h = await rt.start(request('a'));
    await rt.stop(h, 1_000);
    await sleep(60);
    assert.deepEqual(rt.exitInfo(h), { code: null, signal: 'SIGTERM' });
  });

  void it('markDead records the exit given', async () => {
    const rt = new FakeRuntime();
    const h = await rt.start(request('a'));
    rt.markDead(h, { code: 137, signal: null });
    assert.equal(rt.isRunning(h), false);
    assert.deepEqual(rt.exitInfo(h), { code: 137, signal: null });
  });

  void it('a reused pid is neither adopted nor stopped', async () => {
    const host = new FakeHost();
    const rt = new FakeRuntime({ host });
    const h = await rt.start(request('a'));
    host.reusePid(h.pid);
    assert.equal(rt.isRunning(h), false);
    assert.equal(await new FakeRuntime({ host }).adopt('a', '/fake/a'), undefined);
    await rt.stop(h, 0);
    assert.deepEqual(host.running(), [h.pid], 'the unrelated process keeps running');
  });

  void it('keeps separate hosts apart, so one test can simulate many nodes', async () => {
    const nodes = Array.from({ length: 200 }, () => new FakeRuntime());
    const handles = await Promise.all(nodes.map((rt, i) => rt.start(request(`web-${i}`))));
    nodes[7]?.markDead(handles[7]!);
    assert.equal(nodes.filter((rt, i) => rt.isRunning(handles[i]!)).length, 199);
    assert.equal(await nodes[8]?.adopt('web-7', '/fake/web-7'), undefined, 'another node cannot see it');
  });
});
