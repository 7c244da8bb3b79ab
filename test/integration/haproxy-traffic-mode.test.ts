/**
 * PILOT_HAPROXY_TRAFFIC at start-up: a value that is not a mode stops `pilot up` / `pilot server`
 * with the choices before anything starts (the modes themselves: src/haproxy/traffic-stats.test.ts,
 * and `auto` under a rollout in rollout-routers.test.ts).
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { Harness, tempDir } from './harness.js';

const HAPROXY = process.env.PILOT_HAPROXY_BIN ?? '/usr/sbin/haproxy';
const h = new Harness();

describe('PILOT_HAPROXY_TRAFFIC', { timeout: 120_000, skip: existsSync(HAPROXY) ? false : `${HAPROXY} is missing` }, () => {
  after(() => h.cleanup());

  for (const command of ['up', 'server'] as const) {
    for (const value of ['counters', 'LOG;rm -rf /', ' ']) {
      it(`\`pilot ${command} --router haproxy\` refuses ${JSON.stringify(value)} with the modes, before anything starts`, async () => {
        const home = h.track(tempDir('haproxy-traffic-mode'));
        const r = await h.cli([command, '--router', 'haproxy', '--api-port', '0', '--router-port', '0'], {
          env: { PILOT_HOME: home, PILOT_HAPROXY_TRAFFIC: value },
        });
        assert.notEqual(r.code, 0, r.stdout);
        assert.ok(r.stderr.includes(`PILOT_HAPROXY_TRAFFIC=${JSON.stringify(value)} is not a way`), r.stderr);
        assert.match(r.stderr, /log .*stats .*auto .*off/);
        assert.doesNotMatch(r.stderr, /bug in Pilot|at .*\.js:\d+/);
        assert.deepEqual(
          readdirSync(home).filter((f) => f === 'router' || f === 'server.json'),
          [],
          'no router or server started',
        );
      });
    }
  }
});
