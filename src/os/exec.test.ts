import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isPilotError } from '../core/errors.js';
import { formatArgv, mustSucceed, runCommand, type RunOptions } from './exec.js';
import { MAX_LINE_CHARS } from './lines.js';

const node = (code: string): string[] => [process.execPath, '-e', code];
const base = (over: Partial<RunOptions> = {}): RunOptions => ({
  cwd: tmpdir(),
  env: { PATH: process.env['PATH'] ?? '' },
  timeoutMs: 20_000,
  ...over,
});

/** Alive and not a zombie: an orphan whose reaper is slow still counts as gone. */
async function alive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return stat !== '' && stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
}

async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 40; i++) {
    if (!(await alive(pid))) return true;
    await sleep(50);
  }
  return false;
}

/** A child that starts a grandchild in its own group, prints both pids, and then waits forever. */
const FAMILY = `
  const { spawn } = require('node:child_process');
  const g = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  console.log('pids ' + process.pid + ' ' + g.pid);
  setInterval(() => {}, 1000);
`;

function pidsFrom(lines: string[]): number[] {
  const line = lines.find((l) => l.startsWith('pids '));
  assert.ok(line, 'the child printed its pids');
  return line.split(' ').slice(1).map(Number);
}

describe('runCommand', () => {
  it('streams lines in order, joining partial writes and dropping CR of CRLF', async () => {
    const seen: string[] = [];
    const code = `
      process.stdout.write('par');
      setTimeout(() => { process.stdout.write('tial\\r\\nsecond\\n'); for (let i = 0; i < 500; i++) process.stdout.write(i + '\\n'); process.stdout.write('no newline at end'); }, 50);
    `;
    const r = await runCommand(node(code), base({ onLine: (s, l) => seen.push(`${s}:${l}`) }));
    assert.equal(r.code, 0);
    assert.equal(r.signal, null);
    assert.deepEqual(seen.slice(0, 3), ['stdout:partial', 'stdout:second', 'stdout:0']);
    assert.deepEqual(
      seen.slice(2, 502),
      Array.from({ length: 500 }, (_, i) => `stdout:${i}`),
    );
    assert.equal(seen.at(-1), 'stdout:no newline at end');
    assert.equal(seen.length, 503);
  });

  it('tags stderr lines and keeps the last lines of both streams as the tail', async () => {
    const seen: string[] = [];
    const code = `for (let i = 0; i < 100; i++) console.log('out ' + i); console.error('boom');`;
    const r = await runCommand(node(code), base({ maxOutputTail: 3, onLine: (s, l) => s === 'stderr' && seen.push(l) }));
    assert.deepEqual(seen, ['boom']);
    assert.equal(r.tail.length, 3);
    assert.ok(r.tail.includes('boom'));
    assert.ok(r.tail.includes('out 99'));
  });

  it('cuts absurdly long lines and keeps multi-byte characters whole', async () => {
    const seen: string[] = [];
    const code = `process.stdout.write('é'.repeat(5) + '\\n' + 'x'.repeat(${MAX_LINE_CHARS * 4}) + '\\nafter\\n')`;
    await runCommand(node(code), base({ onLine: (_s, l) => seen.push(l) }));
    assert.equal(seen[0], 'ééééé');
    assert.ok(seen[1]!.startsWith('x'.repeat(MAX_LINE_CHARS)));
    assert.match(seen[1]!, /\[… \d+ more characters cut\]$/);
    assert.equal(seen[2], 'after');
  });

  it('reports exit codes and signals; mustSucceed turns failures into build_failed with the tail', async () => {
    const ok = await runCommand(node('process.exit(0)'), base());
    assert.equal(mustSucceed(ok, ['x']), ok);
    const argv = node(`console.log('compiling'); console.error('error TS2304: cannot find name'); process.exit(3)`);
    const r = await runCommand(argv, base());
    assert.equal(r.code, 3);
    assert.throws(
      () => mustSucceed(r, ['npm', 'run', 'build']),
      (e: unknown) => {
        assert.ok(isPilotError(e) && e.code === 'build_failed');
        assert.match(e.message, /^step `npm run build` exited with code 3:\n {2}compiling\n {2}error TS2304/);
        return true;
      },
    );
    const killed = await runCommand(node(`process.kill(process.pid, 'SIGKILL')`), base());
    assert.equal(killed.code, null);
    assert.equal(killed.signal, 'SIGKILL');
    assert.throws(() => mustSucceed(killed, ['x']), /was killed by SIGKILL \(no output\)/);
  });

  it('passes exactly the given environment and no shell', async () => {
    const seen: string[] = [];
    await runCommand(
      [process.execPath, '-p', 'JSON.stringify([process.env, process.argv.slice(1)])', '$HOME', '`id`;|'],
      base({
        env: { PATH: '/usr/bin', ONLY: 'this' },
        onLine: (_s, l) => seen.push(l),
      }),
    );
    const [env, args] = JSON.parse(seen[0]!) as [Record<string, string>, string[]];
    assert.deepEqual(env, { PATH: '/usr/bin', ONLY: 'this' });
    assert.deepEqual(args, ['$HOME', '`id`;|']);
  });

  it('on timeout kills the whole process group and says how long it waited', async () => {
    const lines: string[] = [];
    const started = performance.now();
    await assert.rejects(runCommand(node(FAMILY), base({ timeoutMs: 700, onLine: (_s, l) => lines.push(l) })), (e: unknown) => {
      assert.ok(isPilotError(e) && e.code === 'step_timeout');
      assert.match(e.message, /^step `[^\n]+` timed out after 700ms$/);
      return true;
    });
    assert.ok(performance.now() - started < 5000, 'SIGTERM was enough, no 5 s wait');
    for (const pid of pidsFrom(lines)) assert.ok(await gone(pid), `pid ${pid} is gone`);
  });

  it('escalates to SIGKILL when the command ignores SIGTERM', async () => {
    const lines: string[] = [];
    const stubborn = `process.on('SIGTERM', () => console.log('ignoring TERM')); ${FAMILY}`;
    await assert.rejects(
      runCommand(node(stubborn), base({ timeoutMs: 500, killGraceMs: 300, onLine: (_s, l) => lines.push(l) })),
      /timed out/,
    );
    assert.ok(lines.includes('ignoring TERM'));
    for (const pid of pidsFrom(lines)) assert.ok(await gone(pid), `pid ${pid} is gone`);
  });

  it('stops what a finished command left behind instead of waiting for it', async () => {
    const lines: string[] = [];
    const code = `
      const { spawn } = require('node:child_process');
      const g = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'inherit' });
      console.log('pids ' + process.pid + ' ' + g.pid);
      process.exit(0);
    `;
    const started = performance.now();
    const r = await runCommand(node(code), base({ onLine: (_s, l) => lines.push(l) }));
    assert.equal(r.code, 0);
    assert.ok(performance.now() - started < 5000);
    for (const pid of pidsFrom(lines)) assert.ok(await gone(pid), `pid ${pid} is gone`);
  });

  it('is cancelled by an abort signal, stopping the group', async () => {
    const ac = new AbortController();
    const lines: string[] = [];
    const run = runCommand(
      node(FAMILY),
      base({
        signal: ac.signal,
        onLine: (_s, l) => {
          lines.push(l);
          ac.abort();
        },
      }),
    );
    await assert.rejects(run, (e: unknown) => isPilotError(e) && e.code === 'cancelled' && /was cancelled/.test(e.message));
    for (const pid of pidsFrom(lines)) assert.ok(await gone(pid), `pid ${pid} is gone`);
    await assert.rejects(runCommand(node('1'), base({ signal: ac.signal })), /was cancelled/);
  });

  it('stops the command when onLine throws, and rejects with that error', async () => {
    const lines: string[] = [];
    const run = runCommand(
      node(FAMILY),
      base({
        onLine: (_s, l) => {
          lines.push(l);
          throw new Error('log store is full');
        },
      }),
    );
    await assert.rejects(run, /log store is full/);
    for (const pid of pidsFrom(lines)) assert.ok(await gone(pid), `pid ${pid} is gone`);
  });

  it('names a missing executable, a missing folder and a file that cannot run', async () => {
    await assert.rejects(runCommand(['pilot-no-such-tool', 'install'], base({ env: { PATH: '/usr/bin:/bin' } })), (e: unknown) => {
      assert.ok(isPilotError(e) && e.code === 'build_failed');
      assert.equal(e.message, '`pilot-no-such-tool` not found on PATH (/usr/bin:/bin)');
      return true;
    });
    await assert.rejects(runCommand(['node'], base({ cwd: '/nonexistent/pilot' })), /working folder \/nonexistent\/pilot does not exist/);
    const dir = await mkdtemp(path.join(tmpdir(), 'pilot-exec-'));
    try {
      await writeFile(path.join(dir, 'script'), '#!/bin/sh\necho hi\n');
      await chmod(path.join(dir, 'script'), 0o644);
      await assert.rejects(runCommand(['./script'], base({ cwd: dir })), /`\.\/script` is not executable/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    await assert.rejects(runCommand([], base()), (e: unknown) => isPilotError(e) && e.code === 'invalid_config');
  });
});

describe('formatArgv', () => {
  it('quotes words a reader could misread', () => {
    assert.equal(formatArgv(['npm', 'ci', '--no-audit']), 'npm ci --no-audit');
    assert.equal(formatArgv(['sh', '-c', "echo 'hi' $X"]), `sh -c 'echo '\\''hi'\\'' $X'`);
    assert.equal(formatArgv(['node', '-e', 'a\nb']), 'node -e "a\\nb"');
  });
});

describe('runCommand silence notices', () => {
  it('calls onSilence after each quiet period with the time since the start, and never after the exit', async () => {
    const notices: number[] = [];
    const r = await runCommand(node('setTimeout(() => {}, 1300)'), base({ silenceMs: 300, onSilence: (ms) => notices.push(ms) }));
    assert.equal(r.code, 0);
    // Under load the timers run late, never early: at least two notices, increasing, each ≥ 300 ms apart from the start.
    assert.ok(notices.length >= 2, `notices: ${notices.join(', ')}`);
    assert.ok(notices[0]! >= 290, `first notice at ${notices[0]} ms`);
    for (let i = 1; i < notices.length; i++) assert.ok(notices[i]! > notices[i - 1]!);
    const count = notices.length;
    await sleep(700);
    assert.equal(notices.length, count, 'no notice after the command exited');
  });

  it('is reset by every output line: a chatty command gets no notice', async () => {
    const notices: number[] = [];
    const code = 'let i = 0; const t = setInterval(() => { console.log(i); if (++i === 12) clearInterval(t); }, 100);';
    const r = await runCommand(node(code), base({ silenceMs: 1500, onSilence: (ms) => notices.push(ms) }));
    assert.equal(r.code, 0);
    assert.deepEqual(notices, []);
  });

  it('a throwing onSilence does not stop the command', async () => {
    const r = await runCommand(
      node('setTimeout(() => console.log("done"), 600)'),
      base({
        silenceMs: 100,
        onSilence: () => {
          throw new Error('boom');
        },
      }),
    );
    assert.equal(r.code, 0);
    assert.deepEqual(r.tail, ['done']);
  });
});
