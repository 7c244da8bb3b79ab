/**
 * `pilot --help` from the help cache (src/cli/help-cache.ts): the same text commander prints,
 * served only for the build and width it was made for.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Harness, tempDir } from './harness.js';

const h = new Harness();
const cache = h.track(tempDir('help-cache'));
after(() => h.cleanup());

describe('pilot --help', () => {
  it('prints what commander prints, from the cache once it is made', async () => {
    const env = { XDG_CACHE_HOME: cache };
    const direct = await h.cli(['--help'], { env: { ...env, PILOT_HELP_CACHE: 'off' } });
    assert.equal(direct.code, 0);
    assert.deepEqual(readdirSync(cache), [], 'PILOT_HELP_CACHE=off writes nothing');
    const miss = await h.cli(['--help'], { env });
    const files = readdirSync(join(cache, 'pilot'));
    assert.equal(files.length, 1);
    const hit = await h.cli(['-h'], { env });
    assert.equal(miss.stdout, direct.stdout);
    assert.equal(hit.stdout, direct.stdout);
    assert.equal(hit.code, 0);
    assert.match(hit.stdout, /^Usage: pilot \[options\] \[command\]/);

    // The cached text is what is served for a matching key (the fast path is taken) …
    const file = join(cache, 'pilot', files[0]!);
    const entry = JSON.parse(readFileSync(file, 'utf8')) as { key: string; text: string };
    writeFileSync(file, JSON.stringify({ ...entry, text: 'from the cache\n' }));
    assert.equal((await h.cli(['--help'], { env })).stdout, 'from the cache\n');
    // … and never for another build or width: commander answers and the entry is made anew.
    writeFileSync(file, JSON.stringify({ key: `1:2:${entry.key.split(':')[2]}`, text: 'stale\n' }));
    assert.equal((await h.cli(['--help'], { env })).stdout, direct.stdout);
    assert.equal((JSON.parse(readFileSync(file, 'utf8')) as { text: string }).text, direct.stdout);
    // A damaged cache file is no cache.
    writeFileSync(file, '{not json');
    assert.equal((await h.cli(['--help'], { env })).stdout, direct.stdout);
  });

  it('--version answers without the command tree, as commander would', async () => {
    const fast = await h.cli(['--version']);
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '../../../package.json'), 'utf8')) as { version: string };
    assert.equal(fast.stdout, `${pkg.version}\n`);
    // Other arguments still go through commander.
    const sub = await h.cli(['status', '--help']);
    assert.match(sub.stdout, /--watch/);
  });
});
