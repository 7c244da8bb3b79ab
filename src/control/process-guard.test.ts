import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

const guard = new URL('./process-guard.js', import.meta.url).href;
const pinoUrl = import.meta.resolve('pino');

/** Run `body` in a fresh Node process with the guards installed (logging JSON to stdout). */
function runGuarded(body: string): { status: number | null; lines: { level: number; msg: string }[]; stdout: string } {
  const script = `
    import { pino } from ${JSON.stringify(pinoUrl)};
    import { installProcessGuards } from ${JSON.stringify(guard)};
    import { EventEmitter } from 'node:events';
    const log = pino({ base: null }, pino.destination({ dest: 1, sync: true }));
    installProcessGuards(log);
    const code = (c) => Object.assign(new Error(c), { code: c });
    ${body}
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  const lines = r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: number; msg: string });
  return { status: r.status, lines, stdout: r.stdout + r.stderr };
}

describe('process guards', () => {
  it('log and carry on for a client gone away, a full disk, and any unhandled rejection', () => {
    const r = runGuarded(`
      void Promise.reject(code('ECONNRESET'));                       // a client's abort nobody awaited
      void Promise.reject(new TypeError('x is not a function'));      // a bug, but one async chain only
      setTimeout(() => new EventEmitter().emit('error', code('EPIPE')), 10);  // an 'error' nobody listens to
      setTimeout(() => { throw code('ENOSPC'); }, 20);
      setTimeout(() => console.log('still alive'), 100);
    `);
    assert.equal(r.status, 0, r.stdout);
    assert.match(r.stdout, /still alive/);
    const msgs = r.lines.map((l) => `${l.level} ${l.msg}`);
    assert.equal(msgs.filter((m) => /^40 a connection or stream failed/.test(m)).length, 3, msgs.join('\n'));
    assert.equal(msgs.filter((m) => /^50 unhandled promise rejection \(a bug in Pilot: carrying on\)/.test(m)).length, 1, msgs.join('\n'));
  });

  it('exit 70 on any other uncaught exception, after logging it', () => {
    const r = runGuarded(`
      setTimeout(() => { throw new TypeError('state is broken'); }, 10);
      setTimeout(() => console.log('should not print'), 200);
    `);
    assert.equal(r.status, 70, r.stdout);
    assert.doesNotMatch(r.stdout, /should not print/);
    assert.ok(
      r.lines.some((l) => l.level === 60 && /uncaught exception: state may be inconsistent, exiting/.test(l.msg)),
      r.stdout,
    );
  });
});
