/**
 * `pilot experiment start|status|end APP`: A/B experiments (control/experiments.ts). `status`
 * joins the experiment with the app's traffic figures (GET /api/v1/apps/APP/traffic) per variant.
 */
import { fail } from '../core/errors.js';
import { formatStickyBy } from '../core/experiment.js';
import type { ExperimentView } from '../control/experiments.js';
import type { AppTraffic } from '../control/traffic-routes.js';
import type { RolloutRecord } from '../store/store.js';
import { ago, apiClient, table, type GlobalOptions } from './context.js';

export interface StartOptions extends GlobalOptions {
  variant?: string;
  split?: string;
  by?: string;
}

/** `--variant b=REV` → REV. */
export function parseVariant(text: string | undefined): number {
  const m = /^b=([1-9]\d{0,8})$/.exec(text ?? '');
  if (m === null) {
    throw fail.variantFlagInvalid({ text: text ?? '' });
  }
  return Number(m[1]);
}

/** `--split N` → N, a whole number 0–100 (the server checks again). */
export function parseSplit(text: string | undefined): number {
  if (text === undefined || !/^\d{1,3}$/.test(text) || Number(text) > 100) {
    throw fail.splitFlagInvalid({ text: text ?? '' });
  }
  return Number(text);
}

/** The app's traffic route's answer. */
type WindowedTraffic = AppTraffic & { readonly windowSeconds: number };

const pct = (v: number): string => `${(v * 100).toFixed(1)}%`;
const ms = (v: number | null): string => (v === null ? '-' : v < 1000 ? `${v.toFixed(v < 10 ? 2 : 0)}ms` : `${(v / 1000).toFixed(2)}s`);

/** The human view of an experiment and its variants' figures. */
export function renderExperiment(e: ExperimentView, traffic: WindowedTraffic | undefined): string {
  const head =
    `experiment #${e.id} of ${e.app}: ${e.status}` +
    (e.status === 'running'
      ? `, since ${new Date(e.startedAt).toISOString()} (${ago(e.startedAt)})`
      : `, ended ${e.endedAt === null ? '-' : new Date(e.endedAt).toISOString()}${e.reason ? `: ${e.reason}` : ''}`) +
    `\nsticky by ${formatStickyBy(e.by)}, split a ${100 - e.split}% / b ${e.split}%`;
  const rows = e.variants.map((v) => {
    const r = traffic?.revisions.find((x) => x.revision === v.revision);
    return [
      v.name,
      v.revision,
      `${v.weight}%`,
      r ? r.rps.toFixed(1) : '-',
      r ? r.requests : '-',
      r ? pct(r.errorRate) : '-',
      r ? ms(r.latencyMs.p50) : '-',
      r ? ms(r.latencyMs.p99) : '-',
    ];
  });
  const window = traffic ? `\n(figures: the router's last ${traffic.windowSeconds}s)` : '';
  return `${head}\n${table(['VARIANT', 'REVISION', 'SPLIT', 'REQ/S', 'REQUESTS', '5XX', 'P50', 'P99'], rows)}${window}`;
}

export async function experimentStart(app: string, opts: StartOptions): Promise<void> {
  const body = { variant: parseVariant(opts.variant), split: parseSplit(opts.split), ...(opts.by ? { by: opts.by } : {}) };
  const api = apiClient(opts);
  const res = await api.call<{ experiment: ExperimentView }>('POST', `/api/v1/apps/${encodeURIComponent(app)}/experiment`, body);
  if (opts.json) return void process.stdout.write(JSON.stringify(res, null, 2) + '\n');
  const e = res.experiment;
  process.stdout.write(
    `experiment #${e.id} started on ${app}: a = revision ${e.variants[0]!.revision} (${100 - e.split}%), b = revision ${e.variants[1]!.revision} (${e.split}%), sticky by ${formatStickyBy(e.by)}\n` +
      `follow it with \`pilot experiment status ${app}\`; end it with \`pilot experiment end ${app} --keep a|b\`\n`,
  );
}

export async function experimentStatus(app: string, opts: GlobalOptions & { window?: string }): Promise<void> {
  const api = apiClient(opts);
  const base = `/api/v1/apps/${encodeURIComponent(app)}`;
  const { experiment } = await api.call<{ experiment: ExperimentView | null }>('GET', `${base}/experiment`);
  const traffic =
    experiment?.status === 'running'
      ? await api.call<WindowedTraffic>('GET', `${base}/traffic?window=${encodeURIComponent(opts.window ?? '60s')}`)
      : undefined;
  if (opts.json) {
    const variants = experiment?.variants.map((v) => ({
      ...v,
      traffic: traffic?.revisions.find((r) => r.revision === v.revision) ?? null,
    }));
    const out = experiment
      ? { experiment: { ...experiment, variants }, windowSeconds: traffic?.windowSeconds ?? null }
      : { experiment: null };
    return void process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  }
  if (!experiment) {
    process.stdout.write(
      `${app} has never run an experiment; start one with \`pilot experiment start ${app} --variant b=REV --split 50\`\n`,
    );
    return;
  }
  process.stdout.write(renderExperiment(experiment, traffic) + '\n');
}

export async function experimentEnd(app: string, opts: GlobalOptions & { keep?: string }): Promise<void> {
  if (opts.keep !== 'a' && opts.keep !== 'b') {
    throw fail.keepFlagInvalid({ text: opts.keep ?? '' });
  }
  const api = apiClient(opts);
  const res = await api.call<{ experiment: ExperimentView; rollout: RolloutRecord | null }>(
    'POST',
    `/api/v1/apps/${encodeURIComponent(app)}/experiment/end`,
    { keep: opts.keep },
  );
  if (opts.json) return void process.stdout.write(JSON.stringify(res, null, 2) + '\n');
  const e = res.experiment;
  const kept = e.variants.find((v) => v.name === opts.keep)!;
  const other = e.variants.find((v) => v.name !== opts.keep)!;
  process.stdout.write(
    res.rollout
      ? `experiment #${e.id} ended: keeping b (revision ${kept.revision}); rollout #${res.rollout.id} makes it active, then revision ${other.revision}'s instances drain and stop (\`pilot status ${app}\`)\n`
      : `experiment #${e.id} ended: keeping a (revision ${kept.revision}); revision ${other.revision}'s instances drain and stop\n`,
  );
}
