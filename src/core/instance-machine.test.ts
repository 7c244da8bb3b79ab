import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  initialMachine,
  machineConfig,
  step,
  exitWords,
  STABLE_MS,
  UNHEALTHY_AFTER,
  TAIL_EVERY_MS,
  type InstanceEffect,
  type InstanceEvent,
  type InstanceMachine,
  type MachineConfig,
} from './instance-machine.js';
import type { InstanceState } from './types.js';

const web: MachineConfig = machineConfig({
  kind: undefined,
  port: undefined,
  health: { path: '/health', intervalMs: 1000, timeoutMs: 500 },
  stopTimeoutMs: 5000,
  releaseTimeoutMs: undefined,
});
const fixed: MachineConfig = { ...web, fixedPort: true };
const release: MachineConfig = machineConfig({
  kind: 'release',
  port: undefined,
  health: { path: '/', intervalMs: 1000, timeoutMs: 500 },
  stopTimeoutMs: 5000,
  releaseTimeoutMs: 60_000,
});

const types = (effects: readonly InstanceEffect[]): string[] => effects.map((e) => e.type);

/** Feed events in order, each at its time; returns the machine and every effect. */
function run(m: InstanceMachine, events: readonly (readonly [InstanceEvent, number])[]): { m: InstanceMachine; effects: InstanceEffect[] } {
  const effects: InstanceEffect[] = [];
  for (const [ev, now] of events) {
    const r = step(m, ev, now);
    m = r.machine;
    effects.push(...r.effects);
  }
  return { m, effects };
}

/** A web instance started at t=0 (tick → start, spawning, started). */
function startedWeb(config = web, at = 0): InstanceMachine {
  return run(initialMachine(config), [
    [{ type: 'tick' }, at],
    [{ type: 'spawning' }, at],
    [{ type: 'started' }, at],
  ]).m;
}

function readyWeb(at = 100): InstanceMachine {
  return step(startedWeb(), { type: 'probed', ok: true }, at).machine;
}

describe('instance machine: transitions the agent makes', () => {
  it('starts a pending instance at the first tick, probes it 50 ms after it started', () => {
    const m0 = initialMachine(web);
    assert.deepEqual(types(step(m0, { type: 'tick' }, 0).effects), ['start']);
    const m1 = step(m0, { type: 'spawning' }, 10).machine;
    assert.equal(m1.state, 'starting');
    assert.equal(m1.startedAt, 10);
    const r = step(m1, { type: 'started' }, 20);
    assert.equal(r.machine.running, true);
    assert.equal(r.machine.nextProbeAt, 70);
    assert.deepEqual(types(r.effects), ['save', 'report']);
    assert.deepEqual(types(step(r.machine, { type: 'tick' }, 69).effects), [], 'not before nextProbeAt');
    assert.deepEqual(types(step(r.machine, { type: 'tick' }, 70).effects), ['probe']);
  });

  it('becomes ready at the first probe that answers, clears the error and the tail, probes at the interval', () => {
    const m = { ...startedWeb(), lastError: 'health check GET /health failed: connection refused', logTail: 'booting' };
    const r = step(m, { type: 'probed', ok: true }, 500);
    assert.equal(r.machine.state, 'ready');
    assert.equal(r.machine.readySince, 500);
    assert.equal(r.machine.lastError, undefined);
    assert.equal(r.machine.logTail, undefined);
    assert.equal(r.machine.nextProbeAt, 1500);
    assert.deepEqual(types(r.effects), ['report']);
    assert.deepEqual(types(step(r.machine, { type: 'probed', ok: true }, 1500).effects), [], 'still ready: nothing to report');
  });

  it('probes a starting instance at least every 100 ms and names the failed check, with where the app listens', () => {
    const r = step(
      startedWeb(),
      {
        type: 'probed',
        ok: false,
        refused: true,
        error: 'connection refused',
        note: 'the app listens on 127.0.0.1:8000, not on PORT=4100',
      },
      200,
    );
    assert.equal(r.machine.state, 'starting');
    assert.equal(r.machine.nextProbeAt, 300);
    assert.equal(r.machine.probeFailures, 1);
    assert.equal(
      r.machine.lastError,
      'health check GET /health failed: connection refused (the app listens on 127.0.0.1:8000, not on PORT=4100)',
    );
  });

  it('takes a ready instance out at once when refused, after 3 failures in a row otherwise', () => {
    const refused = step(readyWeb(), { type: 'probed', ok: false, refused: true, error: 'connection refused' }, 1000);
    assert.equal(refused.machine.state, 'unhealthy');
    assert.equal(refused.machine.readySince, undefined);
    assert.ok(types(refused.effects).includes('report'));
    let m = readyWeb();
    for (let i = 1; i < UNHEALTHY_AFTER; i++) {
      m = step(m, { type: 'probed', ok: false, error: 'timeout after 500 ms' }, 1000 * i).machine;
      assert.equal(m.state, 'ready', `still ready after ${i} timeouts`);
    }
    m = step(m, { type: 'probed', ok: false, error: 'HTTP 503' }, 5000).machine;
    assert.equal(m.state, 'unhealthy');
    assert.equal(m.lastError, 'health check GET /health failed: HTTP 503');
    const back = step(m, { type: 'probed', ok: true }, 6000).machine;
    assert.equal(back.state, 'ready');
    assert.equal(back.probeFailures, 0);
  });

  it('reads the tail of a failing instance only after TAIL_EVERY_MS since its start, then at most every TAIL_EVERY_MS', () => {
    const m = startedWeb();
    const fail: InstanceEvent = { type: 'probed', ok: false, error: 'connection refused', refused: true };
    assert.ok(!types(step(m, fail, TAIL_EVERY_MS).effects).includes('capture-tail'), 'booting: no tail yet');
    const r = step(m, fail, TAIL_EVERY_MS + 1);
    assert.deepEqual(r.effects, [{ type: 'capture-tail', flush: false }]);
    assert.ok(!types(step(r.machine, fail, 2 * TAIL_EVERY_MS).effects).includes('capture-tail'));
    assert.ok(types(step(r.machine, fail, 2 * TAIL_EVERY_MS + 2).effects).includes('capture-tail'));
    const t = step(r.machine, { type: 'tail', text: 'Error: boom' }, 2500);
    assert.equal(t.machine.logTail, 'Error: boom');
    assert.deepEqual(types(t.effects), ['report']);
  });

  it('backs off a crash: fresh port, leftovers killed, saved, tail read; 1 s then 2 s then 4 s', () => {
    let m = startedWeb();
    const r = step(m, { type: 'exited', exit: { code: 1, signal: null } }, 1000);
    assert.equal(r.machine.state, 'backoff');
    assert.equal(r.machine.running, false);
    assert.equal(r.machine.restarts, 1);
    assert.equal(r.machine.lastError, 'exited with code 1');
    assert.equal(r.machine.nextStartAt, 2000);
    assert.deepEqual(types(r.effects), ['fresh-port', 'kill-leftovers', 'save', 'log', 'capture-tail']);
    assert.deepEqual(r.effects.at(-1), { type: 'capture-tail', flush: true });
    m = r.machine;
    assert.deepEqual(types(step(m, { type: 'tick' }, 1999).effects), []);
    assert.deepEqual(types(step(m, { type: 'tick' }, 2000).effects), ['start']);
    m = run(m, [
      [{ type: 'spawning' }, 2000],
      [{ type: 'started' }, 2000],
      [{ type: 'exited', exit: { code: null, signal: 'SIGKILL' } }, 2100],
    ]).m;
    assert.equal(m.nextStartAt, 2100 + 2000);
    assert.equal(m.lastError, 'exited with signal SIGKILL');
    m = run(m, [
      [{ type: 'spawning' }, 4100],
      [{ type: 'started' }, 4100],
      [{ type: 'exited', exit: { code: 137, signal: null, reason: 'killed: out of memory (limit 64 MB)' } }, 4200],
    ]).m;
    assert.equal(m.nextStartAt, 4200 + 4000);
    assert.equal(m.lastError, 'killed: out of memory (limit 64 MB)');
    assert.equal(m.restarts, 3);
  });

  it('keeps a fixed port across a restart', () => {
    const r = step(startedWeb(fixed), { type: 'exited', exit: undefined }, 1000);
    assert.ok(!types(r.effects).includes('fresh-port'));
    assert.equal(r.machine.lastError, 'process exited', 'an adopted process: no status');
  });

  it('starts the back-off series again after STABLE_MS of ready', () => {
    let m = readyWeb(100);
    m = step(m, { type: 'exited', exit: { code: 1, signal: null } }, 200).machine;
    m = run(m, [
      [{ type: 'spawning' }, 1200],
      [{ type: 'started' }, 1200],
      [{ type: 'probed', ok: true }, 1300],
    ]).m;
    const early = step(m, { type: 'exited', exit: { code: 1, signal: null } }, 1300 + STABLE_MS).machine;
    assert.equal(early.consecutiveCrashes, 2, 'ready exactly STABLE_MS: not yet stable');
    const late = step(m, { type: 'exited', exit: { code: 1, signal: null } }, 1301 + STABLE_MS).machine;
    assert.equal(late.consecutiveCrashes, 1);
    assert.equal(late.nextStartAt, 1301 + STABLE_MS + 1000);
    assert.equal(late.restarts, 2, 'restarts always count');
  });

  it('fails a start and retries it after the back-off', () => {
    const m = step(initialMachine(web), { type: 'spawning' }, 0).machine;
    const r = step(m, { type: 'start-failed', error: 'node: command not found (instance web-1, cwd /x)' }, 100);
    assert.equal(r.machine.state, 'failed');
    assert.equal(r.machine.lastError, 'node: command not found (instance web-1, cwd /x)');
    assert.equal(r.machine.nextStartAt, 1100);
    assert.equal(r.machine.finished, false);
    assert.deepEqual(types(r.effects), ['log', 'report'], 'a web instance is not saved on a failed start');
    assert.deepEqual(types(step(r.machine, { type: 'tick' }, 1100).effects), ['start']);
  });

  it('removes an unwanted instance: stopping with its grace period, then stopped', () => {
    const m = step(readyWeb(), { type: 'desired', wanted: false, stopListed: true }, 200).machine;
    assert.equal(m.removing, true);
    const r = step(m, { type: 'tick' }, 300);
    assert.equal(r.machine.state, 'stopping');
    assert.deepEqual(r.effects, [{ type: 'report' }, { type: 'remove', graceMs: 5000 }]);
    assert.equal(step(r.machine, { type: 'stopped' }, 400).machine.state, 'stopped');
    const idle = step(step(initialMachine(web), { type: 'desired', wanted: false, stopListed: true }, 0).machine, { type: 'tick' }, 0);
    assert.equal(idle.machine.state, 'pending', 'nothing runs: not reported as stopping');
    assert.deepEqual(types(idle.effects), ['remove']);
  });

  it('removes rather than restarts an unwanted instance whose process died', () => {
    const m = step(readyWeb(), { type: 'desired', wanted: false, stopListed: true }, 200).machine;
    assert.deepEqual(types(step(m, { type: 'exited', exit: { code: 0, signal: null } }, 300).effects), ['report', 'remove']);
  });

  it('keeps an instance the control plane does not know as an orphan, logged once; stops it only when named', () => {
    const m = readyWeb();
    const o = step(m, { type: 'desired', wanted: false, stopListed: false }, 200);
    assert.equal(o.machine.orphan, true);
    assert.equal(o.machine.removing, false);
    assert.deepEqual(types(o.effects), ['log']);
    assert.deepEqual(step(o.machine, { type: 'desired', wanted: false, stopListed: false }, 300).effects, [], 'logged once');
    assert.equal(step(o.machine, { type: 'desired', wanted: true, stopListed: false }, 300).machine.orphan, false, 'known again');
    assert.equal(step(o.machine, { type: 'desired', wanted: false, stopListed: true }, 300).machine.removing, true);
    const again = step(
      step(o.machine, { type: 'desired', wanted: false, stopListed: true }, 300).machine,
      { type: 'desired', wanted: true, stopListed: false },
      400,
    ).machine;
    assert.equal(again.removing, true, 'a removal is never taken back');
  });

  it('ignores a probe answer for an instance that is gone or going', () => {
    const gone = step(startedWeb(), { type: 'exited', exit: { code: 1, signal: null } }, 100).machine;
    assert.deepEqual(step(gone, { type: 'probed', ok: true }, 200), { machine: gone, effects: [] });
    const going = step(readyWeb(), { type: 'desired', wanted: false, stopListed: true }, 200).machine;
    assert.equal(step(going, { type: 'probed', ok: false, refused: true, error: 'connection refused' }, 300).machine.state, 'ready');
  });

  it('re-adopts a running instance as starting and probes it at once; a dead one restarts at the next tick', () => {
    const r = step(initialMachine(web, 4), { type: 'adopted', running: true }, 7000);
    assert.equal(r.machine.state, 'starting');
    assert.equal(r.machine.restarts, 4);
    assert.deepEqual(types(r.effects), ['probe']);
    const dead = step(initialMachine(web, 4), { type: 'adopted', running: false }, 7000).machine;
    assert.equal(dead.state, 'backoff');
    assert.deepEqual(types(step(dead, { type: 'tick' }, 7000).effects), ['start']);
  });

  it('puts the exit into words', () => {
    assert.equal(exitWords({ code: 3, signal: null }), 'exited with code 3');
    assert.equal(exitWords({ code: null, signal: 'SIGTERM' }), 'exited with signal SIGTERM');
    assert.equal(
      exitWords({ code: 137, signal: null, reason: 'killed: out of memory (limit 64 MB)' }),
      'killed: out of memory (limit 64 MB)',
    );
    assert.equal(exitWords(undefined), 'process exited');
  });
});

describe('instance machine: release phase', () => {
  const startedRelease = (at = 0): InstanceMachine =>
    run(initialMachine(release), [
      [{ type: 'tick' }, at],
      [{ type: 'spawning' }, at],
      [{ type: 'started' }, at],
    ]).m;

  it('ends stopped on exit 0: read how it ended, tail, save, report; never probed, never started again', () => {
    const m = startedRelease();
    assert.deepEqual(step(m, { type: 'tick' }, 1000).effects, [], 'never probed');
    const e = step(m, { type: 'exited', exit: { code: 0, signal: null } }, 1500);
    assert.deepEqual(e.effects, [{ type: 'end-release', timedOut: false, graceMs: 0 }]);
    const r = step(e.machine, { type: 'release-ended', exit: { code: 0, signal: null }, timedOut: false }, 1500);
    assert.equal(r.machine.state, 'stopped');
    assert.equal(r.machine.finished, true);
    assert.equal(r.machine.lastError, undefined);
    assert.deepEqual(types(r.effects), ['capture-tail', 'save', 'log', 'report']);
    assert.deepEqual(step(r.machine, { type: 'tick' }, 100_000).effects, []);
  });

  it('fails with the exit code and the time it took, or the signal, or an unknown status', () => {
    const m = startedRelease(1000);
    assert.equal(
      step(m, { type: 'release-ended', exit: { code: 3, signal: null }, timedOut: false }, 2600).machine.lastError,
      'release phase exited with code 3 after 2s',
    );
    assert.equal(
      step(m, { type: 'release-ended', exit: { code: null, signal: 'SIGKILL' }, timedOut: false }, 1200).machine.lastError,
      'release phase killed by signal SIGKILL after 0s',
    );
    assert.equal(
      step(m, { type: 'release-ended', exit: undefined, timedOut: false }, 1200).machine.lastError,
      'release phase exited (status unknown: the agent restarted meanwhile) after 0s',
    );
    assert.equal(step(m, { type: 'release-ended', exit: undefined, timedOut: false }, 1200).machine.state, 'failed');
  });

  it('is stopped (2 s grace) and failed after its timeout', () => {
    const m = startedRelease(0);
    assert.deepEqual(step(m, { type: 'tick' }, 60_000).effects, [], 'exactly the timeout: not yet');
    assert.deepEqual(step(m, { type: 'tick' }, 60_001).effects, [{ type: 'end-release', timedOut: true, graceMs: 2000 }]);
    const r = step(m, { type: 'release-ended', exit: { code: null, signal: 'SIGTERM' }, timedOut: true }, 62_000);
    assert.equal(r.machine.state, 'failed');
    assert.equal(r.machine.lastError, 'release phase timed out after 60s (deploy.release_timeout)');
  });

  it('fails for good when it cannot start, and is saved so that an agent restart does not run it', () => {
    const r = step(initialMachine(release), { type: 'start-failed', error: 'a release phase needs the process runtime' }, 0);
    assert.equal(r.machine.finished, true);
    assert.equal(r.machine.lastError, 'release phase could not start: a release phase needs the process runtime');
    assert.ok(types(r.effects).includes('save'));
    assert.deepEqual(step(r.machine, { type: 'tick' }, 1_000_000).effects, []);
  });

  it('after an agent restart: watched if running, ended if its exit was recorded, started if it never ran, kept if it had ended', () => {
    const running = step(initialMachine(release), { type: 'adopted', running: true }, 500);
    assert.equal(running.machine.state, 'starting');
    assert.equal(running.machine.startedAt, 500);
    assert.deepEqual(running.effects, []);
    assert.deepEqual(step(initialMachine(release), { type: 'adopted', running: false, releaseEnded: true }, 500).effects, [
      { type: 'end-release', timedOut: false, graceMs: 0 },
    ]);
    const never = step(initialMachine(release), { type: 'adopted', running: false }, 500).machine;
    assert.deepEqual(step(never, { type: 'tick' }, 500).effects, [{ type: 'start' }]);
    const kept = step(
      initialMachine(release),
      { type: 'restored', state: 'failed', lastError: 'release phase exited with code 1 after 0s', logTail: 'no such table' },
      0,
    ).machine;
    assert.equal(kept.finished, true);
    assert.equal(kept.logTail, 'no such table');
    assert.deepEqual(step(kept, { type: 'tick' }, 10).effects, []);
  });
});

// ---- properties over random event sequences ----

const exitArb = fc.option(
  fc.record({
    code: fc.option(fc.integer({ min: 0, max: 255 }), { nil: null }),
    signal: fc.option(fc.constantFrom('SIGKILL', 'SIGTERM', 'SIGSEGV'), { nil: null }),
  }),
  { nil: undefined },
);
const eventArb: fc.Arbitrary<InstanceEvent> = fc.oneof(
  { weight: 4, arbitrary: fc.constant<InstanceEvent>({ type: 'tick' }) },
  { weight: 2, arbitrary: exitArb.map((exit): InstanceEvent => ({ type: 'exited', exit })) },
  { weight: 2, arbitrary: fc.constant<InstanceEvent>({ type: 'spawning' }) },
  { weight: 2, arbitrary: fc.constant<InstanceEvent>({ type: 'started' }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 20 }).map((error): InstanceEvent => ({ type: 'start-failed', error })) },
  {
    weight: 3,
    arbitrary: fc
      .record({ ok: fc.boolean(), refused: fc.boolean(), error: fc.constantFrom('connection refused', 'timeout after 500 ms', 'HTTP 503') })
      .map((p): InstanceEvent => ({ type: 'probed', ...p })),
  },
  {
    weight: 1,
    arbitrary: fc.record({ exit: exitArb, timedOut: fc.boolean() }).map((r): InstanceEvent => ({ type: 'release-ended', ...r })),
  },
  {
    weight: 1,
    arbitrary: fc.option(fc.string({ maxLength: 20 }), { nil: undefined }).map((text): InstanceEvent => ({ type: 'tail', text })),
  },
  {
    weight: 1,
    arbitrary: fc.record({ wanted: fc.boolean(), stopListed: fc.boolean() }).map((d): InstanceEvent => ({ type: 'desired', ...d })),
  },
);
/** Events with strictly non-decreasing times (gaps up to 40 s, so back-off caps and stability are reached). */
const historyArb = fc.array(fc.tuple(eventArb, fc.integer({ min: 0, max: 40_000 })), { maxLength: 60 });
const configArb = fc.constantFrom(web, fixed, release);

/**
 * Feed a history the way the agent does: an answer (spawning, started, start-failed, probed,
 * release-ended) arrives only when the machine asked for it, and while an asked step runs (the
 * agent's `busy`) no tick or exit is delivered; `exited` only for a process it holds. The other
 * events (desired, tail) arrive whenever the history says.
 */
function replay(
  config: MachineConfig,
  history: readonly (readonly [InstanceEvent, number])[],
  check: (before: InstanceMachine, ev: InstanceEvent, after: InstanceMachine, effects: readonly InstanceEffect[], now: number) => void,
): InstanceMachine {
  let m = initialMachine(config);
  let now = 0;
  let asked: 'start' | 'end-release' | 'probe' | undefined;
  for (const [ev, gap] of history) {
    now += gap;
    const answer =
      ev.type === 'spawning' || ev.type === 'started' || ev.type === 'start-failed'
        ? 'start'
        : ev.type === 'release-ended'
          ? 'end-release'
          : ev.type === 'probed'
            ? 'probe'
            : undefined;
    if (answer !== undefined && answer !== asked) continue;
    if ((ev.type === 'tick' || ev.type === 'exited') && asked !== undefined) continue;
    if (ev.type === 'exited' && !m.running) continue;
    const r = step(m, ev, now);
    check(m, ev, r.machine, r.effects, now);
    if (ev.type === 'started' || ev.type === 'start-failed' || ev.type === 'release-ended' || ev.type === 'probed') asked = undefined;
    for (const e of r.effects) if (e.type === 'start' || e.type === 'end-release' || e.type === 'probe') asked = e.type;
    m = r.machine;
  }
  return m;
}

const STATES: ReadonlySet<InstanceState> = new Set([
  'pending',
  'starting',
  'ready',
  'unhealthy',
  'backoff',
  'failed',
  'stopping',
  'stopped',
]);

describe('instance machine: properties', () => {
  it('never reaches an invalid state', () => {
    fc.assert(
      fc.property(configArb, historyArb, (config, history) => {
        replay(config, history, (_b, ev, m, effects) => {
          assert.ok(STATES.has(m.state));
          assert.ok(m.restarts >= 0 && m.consecutiveCrashes >= 0 && m.probeFailures >= 0);
          assert.ok(m.consecutiveCrashes <= m.restarts + 1000, 'bounded');
          assert.equal(m.config, config, 'the config never changes');
          if (m.state === 'ready' || m.state === 'unhealthy') assert.ok(m.running, `${m.state} without a process (after ${ev.type})`);
          if (m.state === 'ready') assert.notEqual(m.readySince, undefined);
          if (m.state === 'backoff' || m.state === 'failed' || m.state === 'pending') assert.ok(!m.running, `${m.state} with a process`);
          if (m.finished) assert.ok(m.state === 'stopped' || m.state === 'failed' || m.state === 'stopping', `finished in ${m.state}`);
          if (m.config.kind === 'release')
            assert.ok(m.state !== 'ready' && m.state !== 'unhealthy' && m.state !== 'backoff', `release in ${m.state}`);
          if (m.config.kind === 'release') assert.ok(!effects.some((e) => e.type === 'probe'), 'a release is never probed');
          assert.ok(
            effects.filter((e) => e.type === 'start' || e.type === 'probe' || e.type === 'remove' || e.type === 'end-release').length <= 1,
            'one async step at a time',
          );
        });
      }),
      { numRuns: 500 },
    );
  });

  it('a crash always leads to back-off with a delay that grows and is capped at 30 s', () => {
    fc.assert(
      fc.property(
        configArb.filter((c) => c.kind === 'web'),
        historyArb,
        (config, history) => {
          let previous = 0;
          replay(config, history, (b, ev, m, effects, now) => {
            if (ev.type !== 'exited' || b.removing) return;
            assert.equal(m.state, 'backoff');
            assert.equal(m.running, false);
            assert.equal(m.restarts, b.restarts + 1);
            const delay = m.nextStartAt - now;
            assert.ok(delay >= 1000 && delay <= 30_000, `delay ${delay}`);
            const stable = b.readySince !== undefined && now - b.readySince > STABLE_MS;
            if (stable) assert.equal(delay, 1000, 'stable for 30 s: the series starts again');
            else if (b.consecutiveCrashes > 0 || b.state === 'failed') assert.ok(delay >= previous, `grows: ${delay} after ${previous}`);
            previous = delay;
            assert.ok(effects.some((e) => e.type === 'kill-leftovers'));
            assert.ok(effects.some((e) => e.type === 'capture-tail'));
            assert.equal(
              effects.some((e) => e.type === 'fresh-port'),
              !config.fixedPort,
            );
          });
        },
      ),
      { numRuns: 500 },
    );
  });

  it('crash delays double until the cap while the instance never gets stable', () => {
    let m = startedWeb();
    let now = 0;
    const delays: number[] = [];
    for (let i = 0; i < 10; i++) {
      now += 10;
      m = step(m, { type: 'exited', exit: { code: 1, signal: null } }, now).machine;
      delays.push(m.nextStartAt - now);
      now = m.nextStartAt;
      m = run(m, [
        [{ type: 'spawning' }, now],
        [{ type: 'started' }, now],
      ]).m;
    }
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000, 30_000, 30_000]);
  });

  it('a stop request always ends in stopped (the agent performs remove, then stopped)', () => {
    fc.assert(
      fc.property(configArb, historyArb, fc.integer({ min: 0, max: 60_000 }), (config, history, later) => {
        let m = replay(config, history, () => undefined);
        let now = history.reduce((t, [, g]) => t + g, 0);
        m = step(m, { type: 'desired', wanted: false, stopListed: true }, now).machine;
        assert.equal(m.removing, true);
        now += later;
        // Whatever the machine observes next (its process dying, a tick), it asks for removal.
        const r = step(m, m.running ? { type: 'exited', exit: undefined } : { type: 'tick' }, now);
        const remove = r.effects.find((e) => e.type === 'remove');
        assert.ok(remove, `remove asked in ${m.state}`);
        assert.equal(remove.graceMs, config.stopTimeoutMs);
        if (m.running) assert.equal(r.machine.state, 'stopping');
        assert.equal(step(r.machine, { type: 'stopped' }, now).machine.state, 'stopped');
        // Nothing brings it back.
        const after = step(r.machine, { type: 'desired', wanted: true, stopListed: false }, now).machine;
        assert.ok(after.removing);
        assert.ok(!step(after, { type: 'tick' }, now + 100_000).effects.some((e) => e.type === 'start'));
      }),
      { numRuns: 300 },
    );
  });

  it('a release instance never restarts: started at most once, never after it finished', () => {
    fc.assert(
      fc.property(historyArb, (history) => {
        let starts = 0;
        replay(release, history, (b, _ev, _m, effects) => {
          if (effects.some((e) => e.type === 'start')) {
            assert.ok(!b.finished, 'started after it finished');
            starts++;
          }
          assert.ok(!effects.some((e) => e.type === 'fresh-port' || e.type === 'probe' || e.type === 'kill-leftovers'));
        });
        assert.ok(starts <= 1, `started ${starts} times`);
      }),
      { numRuns: 500 },
    );
  });

  it('is ready only after a start: probe success never makes a machine without a process ready', () => {
    fc.assert(
      fc.property(configArb, historyArb, (config, history) => {
        let everStarted = false;
        replay(config, history, (_b, ev, m) => {
          if (ev.type === 'started') everStarted = true;
          if (m.state === 'ready') assert.ok(everStarted && m.running);
        });
        // A probe answer delivered out of turn (no process) changes nothing.
        const m0 = initialMachine(config);
        assert.deepEqual(step(m0, { type: 'probed', ok: true }, 5).machine, m0);
      }),
      { numRuns: 500 },
    );
  });

  it('never asks for a start while a process runs, nor for a probe while none does', () => {
    fc.assert(
      fc.property(configArb, historyArb, (config, history) => {
        replay(config, history, (b, _ev, _m, effects) => {
          if (effects.some((e) => e.type === 'start')) assert.ok(!b.running);
          if (effects.some((e) => e.type === 'probe')) assert.ok(b.running);
        });
      }),
      { numRuns: 500 },
    );
  });

  it('holds its invariants whatever order events come in (a confused or hostile caller): removal and finish are never undone, restarts never go down', () => {
    const anyEvent = fc.oneof(
      eventArb,
      fc.boolean().map((running): InstanceEvent => ({ type: 'adopted', running, releaseEnded: !running })),
      fc.constant<InstanceEvent>({ type: 'stopped' }),
      fc
        .constantFrom('stopped', 'failed' as const)
        .map((state): InstanceEvent => ({ type: 'restored', state, lastError: undefined, logTail: undefined })),
    );
    fc.assert(
      fc.property(
        configArb,
        fc.array(fc.tuple(anyEvent, fc.integer({ min: -5000, max: 40_000 })), { maxLength: 80 }),
        (config, history) => {
          let m = initialMachine(config);
          let now = 0;
          for (const [ev, gap] of history) {
            now += gap; // time may even go backwards: nothing may throw
            const r = step(m, ev, now);
            assert.ok(STATES.has(r.machine.state));
            assert.ok(r.machine.restarts >= m.restarts);
            if (m.removing) assert.ok(r.machine.removing, 'a removal is never taken back');
            if (m.finished)
              assert.ok(
                r.machine.finished && (r.machine.state === 'stopped' || r.machine.state === 'failed'),
                `finished, then ${r.machine.state} after ${ev.type}`,
              );
            if (m.finished)
              assert.ok(!r.effects.some((e) => e.type === 'start' || e.type === 'probe'), 'a finished release is never started nor probed');
            m = r.machine;
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('ignores answers that make no sense for the instance', () => {
    const w = readyWeb();
    assert.deepEqual(
      step(w, { type: 'release-ended', exit: { code: 0, signal: null }, timedOut: false }, 500),
      { machine: w, effects: [] },
      'a web instance has no release end',
    );
    const done = run(initialMachine(release), [[{ type: 'start-failed', error: 'x' }, 0]]).m;
    assert.deepEqual(step(done, { type: 'started' }, 10), { machine: done, effects: [] }, 'a finished release does not come back to life');
    assert.deepEqual(
      step(done, { type: 'release-ended', exit: { code: 0, signal: null }, timedOut: false }, 10),
      { machine: done, effects: [] },
      'it ended once',
    );
    const idle = initialMachine(web);
    assert.deepEqual(
      step(idle, { type: 'exited', exit: { code: 1, signal: null } }, 10),
      { machine: idle, effects: [] },
      'no process, no crash',
    );
  });
});
