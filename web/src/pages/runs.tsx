/** Runs: the list, and one run with its steps and durations, its live log, and the delivery it came from. */
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, followText } from '../api.js';
import { useLoad } from '../hooks.js';
import { ErrorBox, Loading } from '../parts/error-box.js';
import { ago, duration, short, when } from '../format.js';
import type { Run } from '../types.js';

const statusClass = (s: string): string =>
  s === 'succeeded' ? 'ok' : s === 'running' || s === 'queued' ? 'run' : s === 'failed' ? 'bad' : 'warn';

export function RunsPage() {
  const runs = useLoad(
    (signal) => api<{ runs: Run[] }>('GET', '/api/v1/runs?limit=100', undefined, signal),
    [],
    (e) => e.kind.startsWith('run.'),
  );
  return (
    <section>
      <h1>Runs</h1>
      <ErrorBox error={runs.error} title="Runs could not be read" />
      {!runs.data && !runs.error ? <Loading what="runs" /> : null}
      {runs.data?.runs.length === 0 ? (
        <p class="empty">
          No runs yet: <code>pilot run</code> or a GitHub push starts one.
        </p>
      ) : null}
      {runs.data && runs.data.runs.length > 0 ? (
        <table class="grid" data-testid="runs">
          <thead>
            <tr>
              <th scope="col">Run</th>
              <th scope="col">App</th>
              <th scope="col">Status</th>
              <th scope="col">Trigger</th>
              <th scope="col">Commit</th>
              <th scope="col">Steps</th>
              <th scope="col">Took</th>
              <th scope="col">Started</th>
            </tr>
          </thead>
          <tbody>
            {runs.data.runs.map((r) => (
              <tr key={r.id} data-run={r.id}>
                <th scope="row">
                  <a href={`/runs/${r.id}`}>#{r.id}</a>
                </th>
                <td>
                  <a href={`/apps/${encodeURIComponent(r.app)}`}>{r.app}</a>
                </td>
                <td>
                  <span class={`badge ${statusClass(r.status)}`}>{r.status}</span>
                </td>
                <td>{r.trigger}</td>
                <td>
                  <code>{short(r.commit)}</code> <span class="small commit-message">{r.message ?? ''}</span>
                </td>
                <td class="small">
                  {r.steps.map((s) => (
                    <span key={s.name} class={`step badge ${statusClass(s.status)}`} title={`${s.name}: ${s.status}`}>
                      {s.name}
                    </span>
                  ))}
                </td>
                <td class="small">{duration(r.startedAt ?? r.createdAt, r.finishedAt)}</td>
                <td class="small muted">{ago(r.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </section>
  );
}

export function RunPage({ id }: { id: string }) {
  const run = useLoad(
    (signal) => api<{ run: Run }>('GET', `/api/v1/runs/${encodeURIComponent(id)}`, undefined, signal),
    [id],
    (e) => e.kind.startsWith('run.') && String(e.payload.run) === id,
  );
  const r = run.data?.run;
  if (run.error && !r)
    return (
      <section>
        <h1>Run {id}</h1>
        <ErrorBox error={run.error} title="The run could not be read" />
      </section>
    );
  if (!r) return <Loading what={`run ${id}`} />;
  const total = Math.max(1, (r.finishedAt ?? Date.now()) - (r.startedAt ?? r.createdAt));
  return (
    <section>
      <h1>
        Run #{r.id} of <a href={`/apps/${encodeURIComponent(r.app)}`}>{r.app}</a>{' '}
        <span class={`badge ${statusClass(r.status)}`} data-testid="run-status">
          {r.status}
        </span>
      </h1>
      {r.error ? (
        <div class="error" role="alert">
          <strong>Failed</strong>: {r.error}
        </div>
      ) : null}
      <dl class="facts">
        <dt>Trigger</dt>
        <dd>{r.trigger}</dd>
        <dt>Commit</dt>
        <dd>
          <code>{r.commit ?? '—'}</code>
          {r.dirty ? <span class="badge warn">dirty</span> : null}
          {r.message ? <div class="commit-message">{r.message}</div> : null}
        </dd>
        {r.author ? (
          <>
            <dt>Author</dt>
            <dd>{r.author}</dd>
          </>
        ) : null}
        <dt>Delivery</dt>
        <dd>
          {r.deliveryId ? (
            <>
              GitHub delivery <code>{r.deliveryId}</code>
              {r.repoFullName ? <> from {r.repoFullName}</> : null}
              {r.branch ? <> on {r.branch}</> : null}
            </>
          ) : (
            <span class="muted">{r.trigger === 'webhook' ? 'webhook (no delivery id)' : `none: started by ${r.trigger}`}</span>
          )}
        </dd>
        {r.retryOf ? (
          <>
            <dt>Retry of</dt>
            <dd>
              <a href={`/runs/${r.retryOf}`}>run #{r.retryOf}</a> (attempt {r.attempt})
            </dd>
          </>
        ) : null}
        <dt>Artifact</dt>
        <dd>
          <code>{r.artifact ?? '—'}</code>
        </dd>
        <dt>Revision</dt>
        <dd>{r.revision ?? '—'}</dd>
        <dt>Started</dt>
        <dd>
          {when(r.startedAt ?? r.createdAt)} · took {duration(r.startedAt ?? r.createdAt, r.finishedAt)}
        </dd>
      </dl>
      <h2>Steps</h2>
      <ol class="steps" data-testid="steps">
        {r.steps.map((s) => {
          const ms = s.startedAt ? (s.finishedAt ?? Date.now()) - s.startedAt : 0;
          return (
            <li key={s.name} data-step={s.name} data-status={s.status}>
              <span class="step-name">{s.name}</span>
              <span class={`badge ${statusClass(s.status)}`}>{s.status}</span>
              <span class="bar" aria-hidden="true">
                <span style={{ width: `${Math.max(1, Math.round((ms / total) * 100))}%` }} />
              </span>
              <span class="small">{duration(s.startedAt, s.finishedAt)}</span>
            </li>
          );
        })}
      </ol>
      <h2>Log</h2>
      <RunLog id={r.id} live={r.status === 'running' || r.status === 'queued'} />
    </section>
  );
}

function RunLog({ id, live }: { id: number; live: boolean }) {
  const [text, setText] = useState('');
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const [ended, setEnded] = useState(false);
  const pre = useRef<HTMLPreElement>(null);
  // Followed while the run runs (the server ends the stream when the run ends); else read once.
  const follow = useRef(live);
  useEffect(() => {
    const abort = new AbortController();
    let acc: string[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    setText('');
    setEnded(false);
    followText(
      `/api/v1/runs/${id}/log${follow.current ? '?follow=1' : ''}`,
      (l) => {
        acc.push(l);
        timer ??= setTimeout(() => {
          timer = undefined;
          const add = acc;
          acc = [];
          setText((t) => (t ? t + '\n' : '') + add.join('\n'));
        }, 100);
      },
      abort.signal,
    )
      .then(() => !abort.signal.aborted && setEnded(true))
      .catch((err: unknown) => {
        if (!abort.signal.aborted) setError(err instanceof ApiError ? err : new ApiError(0, 'stream', 'the log stream broke', undefined));
      });
    return () => {
      abort.abort();
      clearTimeout(timer);
    };
  }, [id]);
  useEffect(() => {
    const el = pre.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [text]);
  return (
    <div>
      <ErrorBox error={error} title="Run log" />
      <pre class="log" ref={pre} tabIndex={0} data-testid="run-log" aria-label={`Log of run ${id}`}>
        {text}
      </pre>
      {follow.current ? <p class="small muted">{ended ? 'The run ended.' : 'Following…'}</p> : null}
    </div>
  );
}
