/** Apps: active revision, ready instances, req/s, error rate, a p99 sparkline, the URL. */
import { useRef } from 'preact/hooks';
import { api } from '../api.js';
import { useFigures, useLoad } from '../hooks.js';
import { ErrorBox, Loading } from '../parts/error-box.js';
import { Spark } from '../parts/chart.js';
import { num, pct, ago } from '../format.js';
import type { AppSummary, AppTraffic } from '../types.js';

const KEEP = 40;

/** Per app: the whole app's figures over the window (all revisions together). */
export function totals(t: AppTraffic): { rps: number; errorRate: number | null; p99: number | null } {
  let rps = 0;
  let requests = 0;
  let errors = 0;
  let p99: number | null = null;
  for (const r of t.revisions) {
    rps += r.rps;
    requests += r.requests;
    errors += r.errorRate * r.requests;
    if (r.latencyMs.p99 !== null) p99 = Math.max(p99 ?? 0, r.latencyMs.p99);
  }
  return { rps, errorRate: requests > 0 ? errors / requests : null, p99 };
}

export function AppsPage() {
  const apps = useLoad(
    (signal) => api<{ apps: AppSummary[] }>('GET', '/api/v1/apps', undefined, signal),
    [],
    (e) => /^(deploy|rollout|instance|autoscale)\./.test(e.kind) || e.kind === 'run.created',
  );
  const history = useRef(new Map<string, (number | null)[]>());
  const traffic = useFigures(
    '/api/v1/traffic?window=10s&every=3s',
    (t: { apps: AppTraffic[] }) => {
      const now = new Map(t.apps.map((a) => [a.app, totals(a)]));
      for (const [app, figures] of now) {
        const h = history.current.get(app) ?? [];
        h.push(figures.p99);
        if (h.length > KEEP) h.shift();
        history.current.set(app, h);
      }
      return now;
    },
    [],
  );
  return (
    <section>
      <h1>Apps</h1>
      <ErrorBox error={apps.error} title="Apps could not be read" />
      <ErrorBox error={traffic.error} title="Traffic figures unavailable" />
      {!apps.data && !apps.error ? <Loading what="apps" /> : null}
      {apps.data && apps.data.apps.length === 0 ? (
        <p class="empty">
          No apps yet. Deploy one from its folder with <code>pilot run</code> (try <code>pilot run examples/hello</code>).
        </p>
      ) : null}
      {apps.data && apps.data.apps.length > 0 ? (
        <table class="grid" data-testid="apps">
          <thead>
            <tr>
              <th scope="col">App</th>
              <th scope="col">Revision</th>
              <th scope="col">Ready</th>
              <th scope="col" class="num">
                req/s
              </th>
              <th scope="col" class="num">
                Errors
              </th>
              <th scope="col">p99 (10 s)</th>
              <th scope="col">URL</th>
              <th scope="col">Changed</th>
            </tr>
          </thead>
          <tbody>
            {apps.data.apps.map((a) => {
              const t = traffic.last?.get(a.name);
              const p99s = history.current.get(a.name) ?? [];
              return (
                <tr key={a.name} data-app={a.name}>
                  <th scope="row">
                    <a href={`/apps/${encodeURIComponent(a.name)}`}>{a.name}</a>
                  </th>
                  <td>{a.activeRevision ?? <span class="muted">none</span>}</td>
                  <td class={a.ready < a.replicas ? 'warn' : ''}>
                    {a.ready}/{a.replicas}
                    {a.autoscale ? (
                      <span class="muted small">
                        {' '}
                        (auto {a.autoscale.min}–{a.autoscale.max})
                      </span>
                    ) : null}
                  </td>
                  <td class="num">{t ? num(t.rps) : '—'}</td>
                  <td class={`num ${t?.errorRate ? 'bad' : ''}`}>{t ? pct(t.errorRate) : '—'}</td>
                  <td>
                    <Spark values={p99s} label={`p99 latency of ${a.name}`} />{' '}
                    <span class="small">{t?.p99 !== null && t?.p99 !== undefined ? `${num(t.p99)} ms` : ''}</span>
                  </td>
                  <td>
                    {a.url ? (
                      <a href={a.url} rel="noreferrer" target="_blank">
                        {a.url}
                      </a>
                    ) : (
                      <span class="muted">—</span>
                    )}
                  </td>
                  <td class="muted small">{ago(a.updatedAt)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      ) : null}
    </section>
  );
}
