/**
 * For tests that need a Docker engine: `describe('…', { skip: dockerSkip }, …)`. False when the
 * engine answers; otherwise the reason, so node:test reports the suite as skipped. With
 * PILOT_REQUIRE_DOCKER=1 (set by .ci/run) a missing engine is an error instead: CI never skips.
 */
import { probeEngine } from './probe.js';

const status = await probeEngine(undefined, 3000);
if (!status.available && process.env.PILOT_REQUIRE_DOCKER === '1') {
  throw new Error(`PILOT_REQUIRE_DOCKER=1 but ${status.error}`);
}
export const dockerSkip: string | false = status.available ? false : `no Docker engine (${status.error})`;
