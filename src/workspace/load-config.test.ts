import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isPilotError } from '../core/errors.js';
import { loadAppConfig } from './load-config.js';

const root = mkdtempSync(join(tmpdir(), 'pilot-load-config-'));
after(() => rmSync(root, { recursive: true, force: true }));

function app(folder: string, pkg: object | undefined, yaml?: string): string {
  const dir = join(root, folder);
  mkdirSync(dir, { recursive: true });
  if (pkg) writeFileSync(join(dir, 'package.json'), JSON.stringify(pkg));
  if (yaml !== undefined) writeFileSync(join(dir, 'pilot.yaml'), yaml);
  return dir;
}

describe('loadAppConfig: the app name', () => {
  it('takes pilot.yaml name, else the package.json name (scope dropped), else the folder', async () => {
    assert.equal((await loadAppConfig(app('a1', { name: 'shop' }, 'name: web\n'))).config.name, 'web');
    assert.equal((await loadAppConfig(app('a2', { name: '@acme/Shop' }))).config.name, 'shop');
    assert.equal((await loadAppConfig(app('checkout', { name: 'my_app' }))).config.name, 'checkout');
  });

  it('makes a valid name when neither is one (a lesson folder inside a sample repository)', async () => {
    const dir = app('01-up-and-running', { name: '01-up-and-running' });
    assert.equal((await loadAppConfig(dir)).config.name, 'up-and-running');
    assert.equal((await loadAppConfig(app('02_x', {}))).config.name, 'x');
  });

  it('says where the name came from when none can be made, without blaming a pilot.yaml that is not there', async () => {
    const err = await loadAppConfig(app('2024', { name: '1999' })).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(isPilotError(err));
    assert.equal(err.code, 'invalid_config');
    assert.equal(err.message, 'no app name: package.json name "1999" is not one and the folder name "2024" is not one either');
    assert.match(err.hint ?? '', /Set `name:` in pilot\.yaml/);
  });
});
