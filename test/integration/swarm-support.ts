/**
 * Test support for the Swarm target tests: remove every service, secret and config a test's target
 * made (they carry its label), waiting for the tasks to go first (a secret in use cannot be removed).
 */
import type { Engine } from '../../src/docker/engine.js';
import { sleep } from './harness.js';

export async function removeTargetObjects(engine: Engine, target: string): Promise<void> {
  const filters = { label: [`dev.pilot.target=${target}`] };
  for (const s of await engine.listServices({ filters }).catch(() => []))
    await engine
      .getService(s.ID)
      .remove()
      .catch(() => undefined);
  for (let i = 0; i < 20 && (await engine.listTasks({ filters }).catch(() => [])).length > 0; i++) await sleep(250);
  for (let i = 0; i < 20; i++) {
    const secrets = await engine.listSecrets({ filters }).catch(() => []);
    const configs = await engine.listConfigs({ filters }).catch(() => []);
    if (secrets.length + configs.length === 0) break;
    for (const s of secrets)
      await engine
        .getSecret(s.ID)
        .remove()
        .catch(() => undefined);
    for (const c of configs)
      await engine
        .getConfig(c.ID)
        .remove()
        .catch(() => undefined);
    await sleep(250);
  }
}
