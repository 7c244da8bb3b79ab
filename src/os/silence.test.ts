import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { SilenceTimer, elapsedText } from './silence.js';

describe('SilenceTimer', () => {
  it('notices every period of silence, measured from its start, until stopped', async () => {
    const seen: number[] = [];
    const t = new SilenceTimer(100, (ms) => seen.push(ms));
    await sleep(450);
    t.stop();
    const n = seen.length;
    assert.ok(n >= 2, `notices: ${seen.join(', ')}`);
    assert.ok(seen[0]! >= 95 && seen[1]! > seen[0]!);
    await sleep(250);
    assert.equal(seen.length, n, 'nothing after stop()');
  });

  it('is quiet while poked more often than its period, and while paused; resume() waits a whole period again', async () => {
    const seen: number[] = [];
    const t = new SilenceTimer(300, (ms) => seen.push(ms));
    for (let i = 0; i < 6; i++) {
      await sleep(60);
      t.poke();
    }
    assert.deepEqual(seen, []);
    t.pause();
    await sleep(500);
    t.poke(); // a line printed by someone else while paused does not re-arm it
    await sleep(400);
    assert.deepEqual(seen, []);
    t.resume();
    await sleep(450);
    t.stop();
    assert.ok(seen.length >= 1);
    assert.ok(seen[0]! >= 1200, `elapsed counts from the start, paused time included: ${seen[0]}`);
  });

  it('a throwing callback does not stop the notices', async () => {
    let calls = 0;
    const t = new SilenceTimer(50, () => {
      calls++;
      throw new Error('boom');
    });
    await sleep(300);
    t.stop();
    assert.ok(calls >= 2);
  });

  it('formats elapsed time as the notice shows it', () => {
    assert.equal(elapsedText(15_200), '15s');
    assert.equal(elapsedText(59_600), '1m0s');
    assert.equal(elapsedText(130_000), '2m10s');
    assert.equal(elapsedText(3_600_000), '60m0s');
  });
});
