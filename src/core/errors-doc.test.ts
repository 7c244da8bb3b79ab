import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { errorsMarkdown } from './errors-doc.js';
import { CATALOGUE, ERROR_AREAS } from './errors.js';

describe('docs/errors.md', () => {
  it('is current: run `npm run docs:errors` after changing the catalogue', () => {
    const file = new URL('../../../docs/errors.md', import.meta.url);
    assert.equal(readFileSync(file, 'utf8'), errorsMarkdown());
  });

  it('lists every code and every entry once', () => {
    const doc = errorsMarkdown();
    for (const code of Object.keys(CATALOGUE)) assert.ok(doc.includes(`| \`${code}\` |`), code);
    for (const entries of Object.values(ERROR_AREAS)) {
      for (const [name, e] of Object.entries(entries)) assert.equal(doc.split(`| \`${name}\` | \`${e.code}\` |`).length, 2, name);
    }
    assert.match(doc, /\| `appNotFound` \| `app_not_found` \| app "<app>" not found \|/);
  });
});
