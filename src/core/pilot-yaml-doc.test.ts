import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { AppConfigSchema } from './app-config.js';
import { pilotYamlFields, pilotYamlMarkdown } from './pilot-yaml-doc.js';

describe('docs/pilot-yaml.md', () => {
  it('is current: run `npm run docs:reference` after changing the pilot.yaml schema', () => {
    const file = new URL('../../../docs/pilot-yaml.md', import.meta.url);
    assert.equal(readFileSync(file, 'utf8'), pilotYamlMarkdown(AppConfigSchema));
  });

  it('is linked from the README with the other references', () => {
    const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
    for (const doc of ['docs/pilot-yaml.md', 'docs/metrics.md', 'docs/errors.md']) assert.ok(readme.includes(`](${doc})`), doc);
  });

  it('lists every field of the schema, nested ones by path, with its description', () => {
    const paths = pilotYamlFields(AppConfigSchema).map((f) => f.path);
    for (const p of [
      'name',
      'run',
      'env.<KEY>',
      'strategy.steps[].weight',
      'strategy.analysis.maxP99',
      'volumes[].path',
      'autoscale.min',
    ]) {
      assert.ok(paths.includes(p), p);
    }
    assert.equal(new Set(paths).size, paths.length, 'no field twice');
    // A new field needs a description in the schema (src/core/app-config.ts): the reference says what it means.
    const bare = pilotYamlFields(AppConfigSchema).filter((f) => f.description === '');
    assert.deepEqual(
      bare.map((f) => f.path),
      [],
    );
    const doc = pilotYamlMarkdown(AppConfigSchema);
    assert.match(doc, /\| `replicas` \| integer \| ≥ 1; ≤ 100 \| {2}\| /);
    assert.match(doc, /\| `strategy.type` \| .* \| yes \|/);
  });

  it('reads constraints, unions and free-form keys of any schema', () => {
    const doc = pilotYamlMarkdown({
      type: 'object',
      required: ['a'],
      properties: {
        a: {
          anyOf: [
            { const: 'x', type: 'string' },
            { const: 'y', type: 'string' },
          ],
          description: 'pipe | inside',
        },
        b: { type: 'array', items: { type: 'object', properties: { c: { type: 'integer', minimum: 2 } } } },
        d: { type: 'object', patternProperties: { '^[A-Z]+$': { type: 'string', maxLength: 3 } } },
      },
    });
    assert.match(doc, /\| `a` \| "x" or "y" \| {2}\| yes \| pipe \\\| inside \|/);
    assert.match(doc, /\| `b\[\]\.c` \| integer \| ≥ 2 \|/);
    assert.match(doc, /\| `d\.<KEY>` \| string \| key: pattern `\^\[A-Z\]\+\$`; length ≤ 3 \|/);
  });
});
