import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { resolveAppConfig, validateAppConfig } from './app-config.js';
import { PilotError } from './errors.js';

/** pilot.yaml text → resolved config (what `pilot run` and a deploy do). */
const load = (text: string) => resolveAppConfig(validateAppConfig(parse(text)), 'shop');

const refuses = (text: string, re: RegExp, hint?: RegExp): void => {
  assert.throws(
    () => load(text),
    (e: unknown) => {
      assert.ok(e instanceof PilotError, String(e));
      assert.equal(e.code, 'invalid_config');
      assert.match(e.message, re);
      if (hint) assert.match(e.hint ?? '', hint);
      return true;
    },
  );
};

describe('pilot.yaml autoscale', () => {
  it('reads targetRps with the default windows; the app starts at min', () => {
    const c = load('autoscale: { min: 2, max: 10, targetRps: 50 }');
    assert.deepEqual(c.autoscale, {
      min: 2,
      max: 10,
      target: { metric: 'rps', value: 50 },
      scaleUpWindowMs: 0,
      scaleDownWindowMs: 300_000,
    });
    assert.equal(c.replicas, 2);
  });

  it('reads targetCpu written 70%, 70 or 12.5 %, and windows as durations or seconds', () => {
    for (const [v, pct] of [
      ['70%', 70],
      ['70', 70],
      ['"12.5 %"', 12.5],
      ['100%', 100],
      ['1', 1],
    ] as const) {
      const c = load(`autoscale: { min: 1, max: 3, targetCpu: ${v}, scaleDownWindow: 30s, scaleUpWindow: 10 }`);
      assert.deepEqual(c.autoscale?.target, { metric: 'cpu', value: pct });
      assert.equal(c.autoscale?.scaleDownWindowMs, 30_000);
      assert.equal(c.autoscale?.scaleUpWindowMs, 10_000);
    }
  });

  it('takes replicas as the starting count within [min, max]', () => {
    assert.equal(load('replicas: 4\nautoscale: { min: 2, max: 10, targetRps: 5 }').replicas, 4);
    refuses('replicas: 1\nautoscale: { min: 2, max: 10, targetRps: 5 }', /replicas \(1\) is outside min 2 to max 10/, /starting count/);
    refuses('replicas: 11\nautoscale: { min: 2, max: 10, targetRps: 5 }', /replicas \(11\) is outside/);
  });

  it('refuses min > max, naming both', () => {
    refuses('autoscale: { min: 5, max: 2, targetRps: 50 }', /autoscale: min \(5\) is greater than max \(2\)/, /min ≤ max/);
  });

  it('refuses no target and two targets', () => {
    refuses('autoscale: { min: 1, max: 2 }', /no target: set targetRps or targetCpu/, /exactly one target/);
    refuses('autoscale: { min: 1, max: 2, targetRps: 5, targetCpu: 50% }', /targetRps and targetCpu are both set/);
  });

  it('refuses out-of-range numbers with the field and what is allowed', () => {
    refuses('autoscale: { min: 0, max: 2, targetRps: 5 }', /autoscale\.min: must be integer >= 1/);
    refuses('autoscale: { min: 1, max: 101, targetRps: 5 }', /autoscale\.max: must be integer >= 1 <= 100/);
    refuses('autoscale: { min: 1, max: 2.5, targetRps: 5 }', /autoscale\.max: must be integer/);
    refuses('autoscale: { min: 1, max: 2, targetRps: 0 }', /autoscale\.targetRps: must be number > 0/);
    refuses('autoscale: { min: 1, max: 2, targetRps: -3 }', /autoscale\.targetRps/);
    refuses('autoscale: { min: 1, max: 2, targetCpu: 0 }', /targetCpu 0 must be from 1 to 100 %/);
    refuses('autoscale: { min: 1, max: 2, targetCpu: 150% }', /targetCpu "150%" must be from 1 to 100 %/);
    refuses('autoscale: { min: 1, max: 2, targetCpu: "seventy" }', /autoscale\.targetCpu: must be string matching .* or number/);
    refuses('autoscale: { min: 1, max: 2, targetRps: 5, scaleDownWindow: soon }', /autoscale\.scaleDownWindow/);
    refuses('autoscale: { min: 1, max: 2, targetRps: 5, scaleDownWindow: 2h }', /scaleDownWindow "2h" must be a duration from 0s to 1h/);
  });

  it('refuses unknown fields, a misspelled or snake_case one included, and a non-mapping', () => {
    refuses('autoscale: { min: 1, max: 2, target_rps: 5 }', /autoscale\.target_rps: unknown field/);
    refuses('autoscale: { min: 1, max: 2, targetRPS: 5 }', /autoscale\.targetRPS: unknown field/);
    refuses('autoscale: 5', /autoscale: must be object/);
    refuses('autoscale: { max: 2, targetRps: 5 }', /autoscale\.min/);
  });

  it('refuses a max that volumes with a fixed port cannot place', () => {
    refuses(
      'port: 3000\nvolumes: [{ name: data }]\nautoscale: { min: 1, max: 3, targetRps: 5 }',
      /fixed port \(3000\) allows one instance per node, so max: 3 cannot be placed/,
    );
    assert.equal(load('port: 3000\nvolumes: [{ name: data }]\nautoscale: { min: 1, max: 1, targetRps: 5 }').autoscale?.max, 1);
  });

  it('leaves an app without autoscale as it was', () => {
    const c = load('replicas: 3');
    assert.equal(c.autoscale, undefined);
    assert.equal(c.replicas, 3);
  });
});
