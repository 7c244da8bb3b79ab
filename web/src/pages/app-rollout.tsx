/** One app's rollout: the running one as people read it, and its weight and verdicts over time (from the event feed). */
import { useEffect, useMemo, useState } from 'preact/hooks';
import { feed, type PilotEvent } from '../events.js';
import { TimeChart } from '../parts/chart.js';
import { ago } from '../format.js';
import type { AppDetail } from '../types.js';
import { PALETTE } from './palette.js';

export function Rollout({ d }: { d: AppDetail }) {
  const r = d.rollout;
  const last = d.rollouts[0];
  const id = r?.id ?? last?.id;
  // The rollout's steps and verdicts over time, from the event feed (already live, nothing polled).
  const [events, setEvents] = useState<PilotEvent[]>(() => feed.events);
  useEffect(() => feed.subscribe(() => setEvents([...feed.events])), []);
  const data = useMemo(() => {
    const mine = events.filter((e) => e.app === d.app.name && e.payload.rollout === id);
    const xs: number[] = [];
    const weight: (number | null)[] = [];
    const pass: (number | null)[] = [];
    const failed: (number | null)[] = [];
    const waiting: (number | null)[] = [];
    let w = 0;
    for (const e of mine) {
      if (e.kind === 'rollout.started') w = 0;
      else if (e.kind === 'rollout.step') w = Number(e.payload.weight);
      else if (e.kind === 'rollout.finished') w = e.payload.status === 'succeeded' ? 100 : 0;
      else if (e.kind !== 'rollout.analysis') continue;
      xs.push(e.time / 1000);
      weight.push(w);
      const v = e.kind === 'rollout.analysis' ? String(e.payload.verdict) : undefined;
      pass.push(v === 'pass' ? w : null);
      failed.push(v === 'fail' ? w : null);
      waiting.push(v !== undefined && v !== 'pass' && v !== 'fail' ? w : null);
    }
    if (r && xs.length > 0) {
      xs.push(Date.now() / 1000);
      weight.push(r.weights.canary);
      pass.push(null);
      failed.push(null);
      waiting.push(null);
    }
    return [xs, weight, pass, failed, waiting];
  }, [events, id, r?.weights.canary]);
  return (
    <div data-testid="rollout">
      {r ? (
        <div class="rollout" data-status="running" data-step={r.step ?? ''} data-weight={r.weights.canary}>
          <p>
            <strong>
              Rollout #{r.id} to revision {r.toRevision}
            </strong>{' '}
            <span class="badge">{r.strategy}</span> {r.step !== undefined ? `step ${r.step}/${r.steps}` : ''} — {r.description}
          </p>
          <div class="weights" role="img" aria-label={`stable ${r.weights.stable}%, new revision ${r.weights.canary}%`}>
            <span class="stable" style={{ flexGrow: r.weights.stable }}>
              stable {r.weights.stable}%
            </span>
            <span class="canary" style={{ flexGrow: r.weights.canary }}>
              new {r.weights.canary}%
            </span>
          </div>
          <p class="small">
            Waiting for: {r.waiting}
            {r.command ? ` · command: ${r.command}` : ''}
          </p>
          {r.verdict ? (
            <p class={`small verdict verdict-${r.verdict.verdict}`}>
              Analysis: <strong>{r.verdict.verdict}</strong> — {r.verdict.reason}
            </p>
          ) : null}
        </div>
      ) : last ? (
        <p data-status={last.status}>
          No rollout running. Last: #{last.id} to revision {last.toRevision},{' '}
          <span class={`badge ${last.status === 'succeeded' ? 'ok' : 'bad'}`}>{last.status}</span>
          {last.reason ? <span class="small"> — {last.reason}</span> : null}{' '}
          <span class="muted small">{ago(last.finishedAt ?? last.startedAt)}</span>
        </p>
      ) : (
        <p class="muted">No rollout yet.</p>
      )}
      {data[0]!.length > 0 ? (
        <TimeChart
          title={`Rollout #${id}: new revision's weight and analysis verdicts`}
          testId="rollout-chart"
          series={[
            { label: 'weight %', color: PALETTE[0]!, kind: 'step' },
            { label: 'pass', color: '#17a673', kind: 'points' },
            { label: 'fail', color: '#d64541', kind: 'points' },
            { label: 'wait', color: '#8a94a6', kind: 'points' },
          ]}
          data={data}
          height={150}
          yLabel="%"
        />
      ) : null}
    </div>
  );
}
