/** One app's traffic per revision: the figures now, and req/s and p99 over time (pushed by the server every 2 s: rates carry no event). */
import { useRef } from 'preact/hooks';
import { useFigures } from '../hooks.js';
import { ErrorBox } from '../parts/error-box.js';
import { TimeChart } from '../parts/chart.js';
import { num, pct } from '../format.js';
import type { AppTraffic } from '../types.js';
import { PALETTE } from './palette.js';

const KEEP = 90;

export function Traffic({ path }: { path: string }) {
  const history = useRef<{ t: number; byRev: Map<number, { rps: number; p99: number | null; err: number }> }[]>([]);
  const s = useFigures(
    `${path}/traffic?window=10s&every=2s`,
    (t: AppTraffic) => {
      const byRev = new Map<number, { rps: number; p99: number | null; err: number }>();
      for (const r of t.revisions) if (r.revision !== null) byRev.set(r.revision, { rps: r.rps, p99: r.latencyMs.p99, err: r.errorRate });
      history.current.push({ t: Date.now() / 1000, byRev });
      if (history.current.length > KEEP) history.current.shift();
      return t;
    },
    [path],
  );
  const revs = [...new Set(history.current.flatMap((h) => [...h.byRev.keys()]))].sort((a, b) => a - b);
  const xs = history.current.map((h) => h.t);
  const rps = revs.map((r) => history.current.map((h) => h.byRev.get(r)?.rps ?? null));
  const p99 = revs.map((r) => history.current.map((h) => h.byRev.get(r)?.p99 ?? null));
  const series = (what: string) => revs.map((r, i) => ({ label: `rev ${r} ${what}`, color: PALETTE[i % PALETTE.length]! }));
  return (
    <div>
      <ErrorBox error={s.error} title="Traffic figures unavailable" />
      {s.last ? (
        <table class="grid compact" data-testid="traffic">
          <thead>
            <tr>
              <th scope="col">Revision</th>
              <th scope="col" class="num">
                req/s
              </th>
              <th scope="col" class="num">
                requests (10 s)
              </th>
              <th scope="col" class="num">
                errors
              </th>
              <th scope="col" class="num">
                p50
              </th>
              <th scope="col" class="num">
                p99
              </th>
            </tr>
          </thead>
          <tbody>
            {s.last.revisions.map((r) => (
              <tr key={String(r.revision)} data-revision={r.revision ?? ''}>
                <th scope="row">
                  {r.revision ?? 'no ready instance'}
                  {r.active ? <span class="badge ok">active</span> : null}
                </th>
                <td class="num">{num(r.rps)}</td>
                <td class="num">{r.requests}</td>
                <td class={`num ${r.errorRate > 0 ? 'bad' : ''}`}>{pct(r.errorRate)}</td>
                <td class="num">{num(r.latencyMs.p50)} ms</td>
                <td class="num">{num(r.latencyMs.p99)} ms</td>
              </tr>
            ))}
            {s.last.revisions.length === 0 ? (
              <tr>
                <td colSpan={6} class="muted">
                  No requests in the last 10 s.
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      ) : null}
      {revs.length > 0 && xs.length < 2 ? <p class="muted small">Collecting figures for the charts…</p> : null}
      {revs.length > 0 && xs.length >= 2 ? (
        <div class="charts">
          <TimeChart title="Requests per second" testId="traffic-chart" series={series('req/s')} data={[xs, ...rps]} yLabel="req/s" />
          <TimeChart title="p99 latency" series={series('p99')} data={[xs, ...p99]} yLabel="ms" />
        </div>
      ) : null}
    </div>
  );
}
