/**
 * The contract every Runtime honours, run against each adapter (process, fake, docker) from its own
 * test file. What a runtime cannot share with the others (how to kill an instance behind its back,
 * what its record of an instance is: a pid file, a container) comes from the adapter's harness.
 */
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { isPilotError } from '../../core/errors.js';
import type { InstanceHandle, Runtime, StartRequest } from './runtime.js';
import { waitFor } from './test-support.js';

export interface ContractHarness {
  /** A runtime object over this machine; calling it again simulates an agent restart. */
  makeRuntime(): Runtime;
  /** A request for an instance that runs until stopped, with a fresh stateDir. */
  request(instanceId: string): StartRequest;
  /** A request whose argv[0] does not exist. */
  missingCommand(instanceId: string): StartRequest;
  /** Kill the instance behind the runtime's back (SIGKILL, as the OOM killer would). Idempotent. */
  crash(h: InstanceHandle): void | Promise<void>;
  /**
   * Whether the runtime still keeps a record of the instance of stateDir that adopt would read: the
   * process runtime's pid file, the docker runtime's container (left behind by a crash, removed by stop).
   */
  hasRecord(stateDir: string): boolean | Promise<boolean>;
  /** Release what the harness made (temp dirs). Instances are killed by the tests themselves. */
  cleanup(): Promise<void>;
}

/** Register the runtime contract tests for one adapter. */
export function runtimeContract(
  name: string,
  makeHarness: () => Promise<ContractHarness>,
  opts: { skip?: string | false; timeout?: number } = {},
): void {
  /** A harness and a started instance, both torn down after the test even if it fails. */
  async function setup(t: TestContext, id = 'web-1'): Promise<{ hx: ContractHarness; rt: Runtime; req: StartRequest; h: InstanceHandle }> {
    const hx = await makeHarness();
    t.after(() => hx.cleanup());
    const rt = hx.makeRuntime();
    t.after(() => rt.close?.());
    const req = hx.request(id);
    const h = await rt.start(req);
    t.after(() => hx.crash(h));
    return { hx, rt, req, h };
  }

  void describe(`runtime contract: ${name}`, opts, () => {
    void it('starts an instance that is running, with a handle naming it and a record (pid file, container)', async (t) => {
      const before = Date.now();
      const { hx, rt, req, h } = await setup(t);
      assert.equal(h.instanceId, 'web-1');
      assert.ok(Number.isInteger(h.pid) && h.pid > 0, `pid ${h.pid}`);
      assert.match(h.startTime, /^\d+$/);
      assert.ok(h.startedAt >= before && h.startedAt <= Date.now());
      assert.equal(rt.isRunning(h), true);
      assert.equal(rt.exitInfo(h), undefined, 'no exit info while running');
      assert.equal(await hx.hasRecord(req.stateDir), true);
    });

    void it('stop ends the instance, removes its record and says how it exited', async (t) => {
      const { hx, rt, req, h } = await setup(t);
      await rt.stop(h, 2_000);
      assert.equal(rt.isRunning(h), false);
      assert.equal(await hx.hasRecord(req.stateDir), false);
      assert.deepEqual(rt.exitInfo(h), { code: null, signal: 'SIGTERM' });
    });

    void it('stop is idempotent and also works on an instance that already died', async (t) => {
      const { hx, rt, req, h } = await setup(t);
      await hx.crash(h);
      await waitFor(() => !rt.isRunning(h), 'the crash to be seen');
      await rt.stop(h, 1_000);
      await rt.stop(h, 1_000);
      assert.equal(await hx.hasRecord(req.stateDir), false);
    });

    void it('a new runtime object (agent restart) adopts the running instance from its stateDir', async (t) => {
      const { hx, rt, req, h } = await setup(t);
      const restarted = hx.makeRuntime();
      const adopted = await restarted.adopt(h.instanceId, req.stateDir);
      assert.deepEqual(adopted, h);
      assert.equal(restarted.isRunning(h), true);
      assert.equal(restarted.exitInfo(h), undefined, 'no exit info while running');
      await restarted.stop(h, 2_000);
      assert.equal(restarted.isRunning(h), false);
      await waitFor(() => !rt.isRunning(h), 'the first runtime object to see the stop', 2_000);
      assert.equal(await hx.hasRecord(req.stateDir), false, 'the adopting runtime removes the record');
      assert.equal(await restarted.adopt(h.instanceId, req.stateDir), undefined);
      await restarted.close?.();
    });

    void it('does not adopt without a pid file, or one that names another instance', async (t) => {
      const { hx, req } = await setup(t);
      const rt = hx.makeRuntime();
      t.after(() => rt.close?.());
      assert.equal(await rt.adopt('web-1', hx.request('never-started').stateDir), undefined);
      assert.equal(await rt.adopt('web-2', req.stateDir), undefined);
    });

    void it('does not adopt a stale pid file whose process is gone', async (t) => {
      const { hx, rt, req, h } = await setup(t);
      await hx.crash(h);
      await waitFor(() => !rt.isRunning(h), 'the crash to be seen');
      assert.equal(await hx.hasRecord(req.stateDir), true, 'a crash leaves the record behind');
      const restarted = hx.makeRuntime();
      t.after(() => restarted.close?.());
      assert.equal(await restarted.adopt(h.instanceId, req.stateDir), undefined);
    });

    void it('reports a crash to the runtime that started the instance', async (t) => {
      const { hx, rt, h } = await setup(t);
      await hx.crash(h);
      await waitFor(() => !rt.isRunning(h), 'the crash to be seen');
      assert.deepEqual(rt.exitInfo(h), { code: null, signal: 'SIGKILL' }, 'known as soon as isRunning is false');
    });

    void it('rejects a command that does not exist with deploy_failed and writes no pid file', async (t) => {
      const hx = await makeHarness();
      t.after(() => hx.cleanup());
      const req = hx.missingCommand('bad-1');
      const rt = hx.makeRuntime();
      t.after(() => rt.close?.());
      await assert.rejects(rt.start(req), (e: unknown) => {
        assert.ok(isPilotError(e), `a PilotError, got ${String(e)}`);
        assert.equal(e.code, 'deploy_failed');
        assert.match(e.message, /command not found/);
        return true;
      });
      assert.equal(await hx.hasRecord(req.stateDir), false);
    });

    void it('refuses to start over a live instance in the same stateDir', async (t) => {
      const { hx, rt, req, h } = await setup(t);
      const other = hx.makeRuntime();
      t.after(() => other.close?.());
      await assert.rejects(other.start(req), (e: unknown) => isPilotError(e) && e.code === 'conflict');
      assert.equal(rt.isRunning(h), true);
      assert.deepEqual(await other.adopt(h.instanceId, req.stateDir), h, 'the record still names it');
    });

    void it('starts again in the same stateDir after a stop', async (t) => {
      const { hx, rt, req, h } = await setup(t);
      await rt.stop(h, 2_000);
      const h2 = await rt.start(req);
      t.after(() => hx.crash(h2));
      assert.equal(h2.containerId === undefined, h.containerId === undefined, 'both handles name a container, or neither');
      if (h.containerId !== undefined) assert.notEqual(h2.containerId, h.containerId, 'a new container');
      assert.notDeepEqual({ pid: h2.pid, startTime: h2.startTime }, { pid: h.pid, startTime: h.startTime });
      assert.equal(rt.isRunning(h2), true);
      await rt.stop(h, 1_000); // a stale handle must not touch the new instance or its pid file
      assert.equal(rt.isRunning(h2), true);
      assert.equal(await hx.hasRecord(req.stateDir), true);
      await rt.stop(h2, 2_000);
    });

    void it('puts the logs in the stateDir', async (t) => {
      const hx = await makeHarness();
      t.after(() => hx.cleanup());
      const rt = hx.makeRuntime();
      t.after(() => rt.close?.());
      assert.deepEqual(rt.logFiles('/x/state'), { stdout: '/x/state/stdout.log', stderr: '/x/state/stderr.log' });
    });
  });
}
