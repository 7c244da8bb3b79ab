/**
 * docs/metrics.md, written from the metric registries the processes build (the control plane's
 * gauges in control/metrics.ts, the router's pilot_router_* collectors in router/metrics.ts,
 * HAProxy's health text in haproxy/haproxy-router.ts, prom-client's process defaults), so the
 * reference cannot drift from what `/metrics` serves. Labels are the declared ones, plus those a
 * collector's samples carry (the router's collectors declare none: one request of each kind is
 * recorded into a private registry to read them). `npm run docs:reference` writes the file;
 * metrics-doc.test.ts fails when it is stale.
 */
import { Registry, collectDefaultMetrics } from 'prom-client';
import { registerControlMetrics, storeCallHistogram } from '../control/metrics.js';
import { RouterMetrics } from '../router/metrics.js';
import { haproxyMetricsText } from '../haproxy/haproxy-router.js';

export interface MetricDoc {
  readonly name: string;
  readonly type: string;
  readonly labels: readonly string[];
  readonly help: string;
}

interface MetricLike {
  readonly labelNames?: readonly string[];
  get(): Promise<{ name: string; help: string; type: string; values: readonly { labels: Record<string, unknown> }[] }>;
}

/** Every metric of a registry: name, type, declared and observed labels (a histogram's `le` left out), help. */
export async function registryDocs(registry: Registry): Promise<MetricDoc[]> {
  const out: MetricDoc[] = [];
  for (const m of registry.getMetricsAsArray() as unknown as MetricLike[]) {
    const v = await m.get();
    const labels = new Set(m.labelNames ?? []);
    for (const s of v.values) for (const l of Object.keys(s.labels)) labels.add(l);
    labels.delete('le');
    out.push({ name: v.name, type: String(v.type), labels: [...labels].sort(), help: v.help });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** Metrics written as Prometheus text (`# HELP` / `# TYPE` lines and samples). */
export function textDocs(text: string): MetricDoc[] {
  const byName = new Map<string, { type: string; help: string; labels: Set<string> }>();
  const entry = (name: string) => {
    let e = byName.get(name);
    if (!e) byName.set(name, (e = { type: 'untyped', help: '', labels: new Set() }));
    return e;
  };
  for (const line of text.split('\n')) {
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta) {
      if (meta[1] === 'HELP') entry(meta[2]!).help = meta[3]!;
      else entry(meta[2]!).type = meta[3]!;
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? /.exec(line);
    if (!sample || !byName.has(sample[1]!)) continue;
    for (const m of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) entry(sample[1]!).labels.add(m[1]!);
  }
  return [...byName].map(([name, e]) => ({ name, type: e.type, help: e.help, labels: [...e.labels].sort() }));
}

/** The control plane's own gauges. */
async function controlMetrics(): Promise<MetricDoc[]> {
  const r = new Registry();
  registerControlMetrics(r, { instanceStates: async () => [], autoscaled: async () => [], notifyAttempts: () => new Map() });
  storeCallHistogram(r).observe({ method: 'getApp' }, 0.001);
  return registryDocs(r);
}

/** The router's collectors, with one request of each kind recorded so their labels show. */
async function routerMetrics(): Promise<MetricDoc[]> {
  const r = new Registry();
  const m = new RouterMetrics(r);
  m.request('app', 1, 200, 0.01);
  m.upstreamError('app');
  m.stickyFallback('app');
  return registryDocs(r);
}

/** prom-client's process and Node.js metrics (collectDefaultMetrics), served by the control plane. */
async function defaultMetrics(): Promise<MetricDoc[]> {
  const r = new Registry();
  collectDefaultMetrics({ register: r });
  return registryDocs(r);
}

function table(rows: readonly MetricDoc[]): string[] {
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  return [
    '| metric | type | labels | meaning |',
    '|---|---|---|---|',
    ...rows.map((m) => `| \`${m.name}\` | ${m.type} | ${m.labels.map((l) => `\`${l}\``).join(', ')} | ${cell(m.help)} |`),
  ];
}

/** Every section of docs/metrics.md, as data (the test checks names against it). */
export async function metricSections(): Promise<{ title: string; intro: string; metrics: MetricDoc[] }[]> {
  const haproxy = textDocs(
    haproxyMetricsText({ up: true, pid: 1, restarts: 0, reloads: 0, runtimeUpdates: 0, lastError: undefined, trafficLines: { lost: 0 } }),
  );
  const defaults = await defaultMetrics();
  return [
    {
      title: 'Control plane',
      intro: '`GET /metrics` of `pilot server` / `pilot up` (admin token).',
      metrics: await controlMetrics(),
    },
    {
      title: 'Router',
      intro:
        "Served by the router process (`GET /metrics` on its admin port, router token) and appended to the control plane's `/metrics`; " +
        "with the embedded router, the control plane's own. A node's router (`pilot agent --router-port`) serves the same. " +
        'Canary analysis and the autoscaler read these figures. A histogram also has `le` on its `_bucket` series.',
      metrics: await routerMetrics(),
    },
    {
      title: 'HAProxy data plane',
      intro: "Appended to the router process's `/metrics` when it runs HAProxy (`pilot up --router haproxy`).",
      metrics: haproxy,
    },
    {
      title: 'Process (prom-client defaults)',
      intro:
        "The control plane's Node.js process, from prom-client's `collectDefaultMetrics` (its own documentation explains each). " +
        'Agents export no metrics: their figures reach the control plane with each sync (CPU, instance states).',
      metrics: defaults,
    },
  ];
}

/** The whole of docs/metrics.md. */
export async function metricsMarkdown(): Promise<string> {
  const lines = [
    '# Metrics reference',
    '',
    '<!-- Generated from the metric registries in code by `npm run docs:reference`; do not edit. -->',
    '',
    'Every Prometheus metric Pilot exports, by the process that serves it.',
  ];
  for (const s of await metricSections()) lines.push('', `## ${s.title}`, '', s.intro, '', ...table(s.metrics));
  return lines.join('\n') + '\n';
}
