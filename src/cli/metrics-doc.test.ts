import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { metricSections, metricsMarkdown, textDocs } from './metrics-doc.js';

describe('docs/metrics.md', () => {
  it('is current: run `npm run docs:reference` after adding or changing a metric', async () => {
    const file = new URL('../../../docs/metrics.md', import.meta.url);
    assert.equal(readFileSync(file, 'utf8'), await metricsMarkdown());
  });

  it('names every metric the sources in src define, with its labels', async () => {
    const sections = await metricSections();
    const byName = new Map(sections.flatMap((s) => s.metrics).map((m) => [m.name, m]));
    for (const name of [
      'pilot_instances',
      'pilot_autoscale_replicas',
      'pilot_autoscale_load',
      'pilot_notify_attempts_total',
      'pilot_router_requests_total',
      'pilot_router_request_duration_seconds',
      'pilot_router_upstream_errors_total',
      'pilot_router_sticky_fallbacks_total',
      'pilot_haproxy_up',
      'pilot_haproxy_reloads_total',
      'process_cpu_seconds_total',
    ]) {
      assert.ok(byName.has(name), name);
      assert.notEqual(byName.get(name)!.help, '', `${name} has a meaning`);
    }
    assert.deepEqual(byName.get('pilot_router_requests_total')!.labels, ['app', 'code', 'revision']);
    assert.deepEqual(byName.get('pilot_router_request_duration_seconds')!.labels, ['app', 'revision']);
    assert.equal(byName.get('pilot_router_request_duration_seconds')!.type, 'histogram');
    assert.deepEqual(byName.get('pilot_autoscale_replicas')!.labels, ['app', 'bound']);
  });

  it('every metric name written in src/ is in the reference', async () => {
    // A metric defined a new way (not through the registries read above) still shows up here.
    const src = new URL('../../../src', import.meta.url).pathname;
    const found = new Set<string>();
    for (const f of readdirSync(src, { recursive: true, encoding: 'utf8' })) {
      if (!f.endsWith('.ts') || f.endsWith('.test.ts')) continue;
      const text = readFileSync(join(src, f), 'utf8');
      for (const m of text.matchAll(/(?:name:\s*|# TYPE |collector\(\s*)'?(pilot_[a-z_]+)/g)) found.add(m[1]!);
    }
    assert.ok(found.size >= 9, `found ${[...found].join(', ')}`);
    const documented = new Set((await metricSections()).flatMap((s) => s.metrics).map((m) => m.name));
    for (const name of found) assert.ok(documented.has(name), `${name} is not in docs/metrics.md`);
  });

  it('reads Prometheus text: types, help, labels of samples', () => {
    const docs = textDocs('# HELP a_total Things.\n# TYPE a_total counter\na_total{x="1",y="a,b=\\"c\\""} 3\n# TYPE b gauge\nb 1\n');
    assert.deepEqual(docs, [
      { name: 'a_total', type: 'counter', help: 'Things.', labels: ['x', 'y'] },
      { name: 'b', type: 'gauge', help: '', labels: [] },
    ]);
  });
});
