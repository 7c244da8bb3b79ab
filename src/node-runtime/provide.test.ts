import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../api/client.js';
import type { PilotError } from '../core/errors.js';
import { provideNodeRuntime } from './provide.js';

const dir = mkdtempSync(join(tmpdir(), 'pilot-provide-'));
after(() => rmSync(dir, { recursive: true, force: true }));
// Never called: the platform is checked before anything is asked of the control plane or the registry.
const api = new ApiClient('http://127.0.0.1:9', 'unused');

describe('providing the runtime on a build machine', () => {
  it('refuses a pinned version on a platform other than linux-x64, naming what is supported', async () => {
    const app = mkdtempSync(join(dir, 'app-'));
    writeFileSync(join(app, '.nvmrc'), '22\n');
    for (const machine of [
      { platform: 'darwin', arch: 'arm64' },
      { platform: 'linux', arch: 'arm64' },
    ]) {
      await assert.rejects(
        provideNodeRuntime({
          app: 'a',
          commit: 'c',
          appDir: app,
          configNode: undefined,
          api,
          cacheDir: join(dir, 'cache'),
          log: () => undefined,
          machine,
        }),
        (e: PilotError) =>
          e.code === 'unsupported_platform' &&
          e.message.includes(`${machine.platform}-${machine.arch}`) &&
          /supported platforms are linux-x64/.test(e.message),
      );
    }
  });

  it('with no version named, an unsupported platform deploys unpinned with a warning', async () => {
    const app = mkdtempSync(join(dir, 'plain-'));
    writeFileSync(join(app, 'package.json'), '{"name":"plain"}');
    const lines: string[] = [];
    const r = await provideNodeRuntime({
      app: 'plain',
      commit: 'c',
      appDir: app,
      configNode: undefined,
      api,
      cacheDir: join(dir, 'cache'),
      log: (l) => lines.push(l),
      machine: { platform: 'darwin', arch: 'arm64' },
    });
    assert.equal(r, undefined);
    assert.match(
      lines.join('\n'),
      /warning: the builder's Node\.js cannot be pinned \(Pilot cannot pin a Node\.js runtime on darwin-arm64/,
    );
  });
});
