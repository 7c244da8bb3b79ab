import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { isSameProcess } from '../../os/proc.js';
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
    const stale: InstanceHandle = {
      instanceId: 'web-1',
      pid: bystander.pid,
      startTime: String(Number(bystander.startTime) - 1),
      startedAt: 1,
    };
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

void describe('log bound of a running instance', () => {
  void it('rotates inside the log writer at every write: no file above the bound, no line lost, at most keep old files', async (t) => {
    const dir = await makeAppDir();
    t.after(() => dir.remove());
    const rt = new ProcessRuntime({ logMaxBytes: 200, logKeep: 2 });
    t.after(() => rt.close());
    const req = request(dir, 'chatty-1', 'tick');
    const h = await rt.start(req);
    t.after(() => killByPid(h.pid, h.startTime));
    const { stdout } = rt.logFiles(req.stateDir);
    // Read the three files in one go, oldest first, while they rotate under us.
    const ticks = (): number[] =>
      [`${stdout}.2`, `${stdout}.1`, stdout].flatMap((f) =>
        existsSync(f) ? [...readFileSync(f, 'utf8').matchAll(/tick (\d+)/g)].map((m) => Number(m[1])) : [],
      );
    await waitFor(() => existsSync(`${stdout}.2`) && ticks().some((n) => n >= 60), 'sixty ticks, several rotations');
    await rt.stop(h, 2_000);
    for (const f of [stdout, `${stdout}.1`, `${stdout}.2`]) assert.ok(statSync(f).size <= 200, `${f} is ${statSync(f).size} bytes`);
    assert.equal(existsSync(`${stdout}.3`), false, 'keep = 2');
    const seen = ticks();
    for (let i = 1; i < seen.length; i++) assert.equal(seen[i], seen[i - 1]! + 1, `consecutive across rotations: ${seen.join(',')}`);
  });
});
