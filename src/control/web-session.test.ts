import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readCookie, sessionCookie, WebSessions } from './web-session.js';

describe('dashboard sessions', () => {
  const clock = { t: 1_000_000 };
  const settings = { maxAgeMs: 10_000, idleMs: 3_000, max: 3 };
  let valid = 'tok-a';
  const make = (): WebSessions =>
    new WebSessions(
      (t) => t === valid,
      settings,
      () => clock.t,
    );

  it('opens only for a valid token, with a random id and CSRF token', () => {
    const s = make();
    assert.throws(() => s.create('wrong'), /invalid token/);
    const a = s.create('tok-a');
    const b = s.create('tok-a');
    assert.notEqual(a.id, b.id);
    assert.notEqual(a.view.csrf, b.view.csrf);
    assert.notEqual(a.id, a.view.csrf);
    assert.ok(s.touch(a.id));
    assert.equal(s.touch('unknown'), undefined);
  });

  it('ends after the idle limit, or the absolute limit however busy', () => {
    const s = make();
    clock.t = 0;
    const idle = s.create('tok-a');
    clock.t = 2_999;
    assert.ok(s.touch(idle.id), 'within the idle limit');
    clock.t = 6_000;
    assert.equal(s.touch(idle.id), undefined, 'idle 3001 ms');
    assert.equal(s.touch(idle.id), undefined, 'and stays ended');
    clock.t = 0;
    const busy = s.create('tok-a');
    for (clock.t = 1_000; clock.t <= 10_000; clock.t += 1_000) assert.ok(s.touch(busy.id), `busy at ${clock.t}`);
    clock.t = 10_001;
    assert.equal(s.touch(busy.id), undefined, 'past the absolute limit');
  });

  it('ends when the token it came from stops being valid', () => {
    const s = make();
    valid = 'tok-a';
    const a = s.create('tok-a');
    valid = 'tok-b';
    assert.equal(s.touch(a.id), undefined);
    valid = 'tok-a';
    assert.equal(s.touch(a.id), undefined, 'gone for good, not suspended');
  });

  it('keeps at most `max` sessions, dropping the oldest', () => {
    const s = make();
    const ids = [1, 2, 3, 4].map(() => s.create('tok-a').id);
    assert.equal(s.size, 3);
    assert.equal(s.touch(ids[0]!), undefined);
    assert.ok(s.touch(ids[3]!));
  });

  it('reads and writes the cookie', () => {
    assert.equal(readCookie('a=1; pilot_session=abc; b=2', 'pilot_session'), 'abc');
    assert.equal(readCookie('xpilot_session=abc', 'pilot_session'), undefined);
    assert.equal(readCookie('pilot_session=', 'pilot_session'), undefined);
    assert.equal(readCookie(undefined, 'pilot_session'), undefined);
    assert.equal(sessionCookie('id1', false, 60_000), 'pilot_session=id1; Path=/; HttpOnly; SameSite=Strict; Max-Age=60');
    assert.match(sessionCookie('id1', true, 60_000), /; Secure$/);
    assert.match(sessionCookie('', true, 60_000), /^pilot_session=; .*Max-Age=0; Secure$/);
  });
});
