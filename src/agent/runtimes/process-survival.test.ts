import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { rotateIfNeeded } from '../log-rotate.js';
import { isSameProcess } from '../proc.js';
import { ProcessRuntime } from './process-runtime.js';
import type { InstanceHandle, StartRequest } from './runtime.js';
import { killByPid, makeAppDir, waitFor, type AppDir } from './test-support.js';

function request(dir: AppDir, instanceId: string, mode: string): StartRequest {
  return {
    instanceId,
    stateDir: join(dir.root, 'state', instanceId),
    cwd: dir.root,
    argv: [process.execPath, dir.app, mode],
    env: { PATH: '/usr/bin:/bin' },
  };
}

const sizeOf = (file: string): number => {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
};

/** An "agent": starts one instance with the compiled ProcessRuntime, prints its handle, idles. */
const agentSource = (runtimeUrl: string): string => `
import { ProcessRuntime } from ${JSON.stringify(runtimeUrl)};
const h = await new ProcessRuntime().start(JSON.parse(process.argv[2]));
console.log(JSON.stringify(h));
setInterval(() => {}, 1 << 30);
`;

void describe('process runtime across agent restarts', () => {
  void it('an instance outlives a SIGKILLed agent, keeps logging, and a new runtime adopts it', async (t) => {
    const dir = await makeAppDir();
    t.after(() => dir.remove());
    const agentJs = join(dir.root, 'agent.mjs');
    await writeFile(agentJs, agentSource(new URL('./process-runtime.js', import.meta.url).href));
    const req = request(dir, 'survivor-1', 'tick');
    const agent = spawn(process.execPath, [agentJs, JSON.stringify(req)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const agentPid = agent.pid;
    assert.ok(agentPid !== undefined);
    const agentExit = once(agent, 'exit');
    t.after(() => killByPid(agentPid));
    let h: InstanceHandle | undefined;
    t.after(() => h && killByPid(h.pid, h.startTime));
    const lines = createInterface({ input: agent.stdout });
    for await (const line of lines) {
      h = JSON.parse(line) as InstanceHandle;
      break;
    }
    assert.ok(h !== undefined, 'the agent printed a handle');
    const instance = h;

    process.kill(agentPid, 'SIGKILL');
    await agentExit;
    const logs = new ProcessRuntime().logFiles(req.stateDir);
    const before = sizeOf(logs.stdout);
    await sleep(400);
    assert.equal(isSameProcess(instance.pid, instance.startTime), true, 'the instance survived its agent');
    assert.ok(sizeOf(logs.stdout) > before, 'its log keeps growing');
    assert.doesNotMatch(readFileSync(logs.stderr, 'utf8'), /EPIPE/);

    const restarted = new ProcessRuntime();
    assert.deepEqual(await restarted.adopt('survivor-1', req.stateDir), instance);
    await restarted.stop(instance, 2_000);
    assert.equal(isSameProcess(instance.pid, instance.startTime), false);
  });

  void it('does not adopt or signal a live process whose pid a stale pid file names (pid reuse)', async (t) => {
    const dir = await makeAppDir();
    t.after(() => dir.remove());
    const rt = new ProcessRuntime();
    // The bystander traps SIGTERM and says so: any signal but SIGKILL would show in its log.
    const bystanderReq = request(dir, 'bystander', 'ignore-term');
    const bystander = await rt.start(bystanderReq);
    t.after(() => killByPid(bystander.pid, bystander.startTime));
    await waitFor(() => readFileSync(rt.logFiles(bystanderReq.stateDir).stdout, 'utf8').includes('ready'), 'the bystander');

    // web-1 once ran as this pid, died, and the kernel gave the number to the bystander.
    const stale: InstanceHandle = { instanceId: 'web-1', pid: bystander.pid, startTime: String(Number(bystander.startTime) - 1), startedAt: 1 };
    const staleDir = join(dir.root, 'state', 'web-1');
    await mkdir(staleDir, { recursive: true });
    await writeFile(join(staleDir, 'pid.json'), JSON.stringify({ ...stale, argv: ['node', 'server.js'] }));

    const restarted = new ProcessRuntime();
    assert.equal(await restarted.adopt('web-1', staleDir), undefined);
    assert.equal(restarted.isRunning(stale), false);
    await restarted.stop(stale, 200);
    await sleep(100);
    assert.equal(isSameProcess(bystander.pid, bystander.startTime), true);
    assert.doesNotMatch(readFileSync(rt.logFiles(bystanderReq.stateDir).stdout, 'utf8'), /ignored SIGTERM/);
  });
});

void describe('log rotation of a running instance', () => {
  void it('copy-truncates stdout.log while the instance keeps appending to it', async (t) => {
    const dir = await makeAppDir();
    t.after(() => dir.remove());
    const rt = new ProcessRuntime();
    const req = request(dir, 'chatty-1', 'tick');
    const h = await rt.start(req);
    t.after(() => killByPid(h.pid, h.startTime));
    const { stdout } = rt.logFiles(req.stateDir);
    await waitFor(() => /tick 5\n/.test(readFileSync(stdout, 'utf8')), 'a few ticks');

    assert.equal(await rotateIfNeeded(stdout, 50, 2), true);
    await waitFor(() => /tick \d+\n/.test(readFileSync(stdout, 'utf8')), 'ticks after the rotation');
    const rotated = readFileSync(`${stdout}.1`, 'utf8');
    const current = readFileSync(stdout, 'utf8');
    assert.match(rotated, /^pid \d+\n/, 'the old content moved to .1');
    assert.match(current, /^tick \d+\n/, 'O_APPEND: new lines start at offset 0, no hole of NUL bytes');
    const lastOld = Math.max(...[...rotated.matchAll(/tick (\d+)/g)].map((m) => Number(m[1])));
    const firstNew = Number(/tick (\d+)/.exec(current)?.[1]);
    assert.ok(firstNew > lastOld, `numbering continues (${lastOld} then ${firstNew})`);
    await rt.stop(h, 2_000);
  });
});
