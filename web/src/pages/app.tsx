/**
 * One app: its revisions (commit, artifact, Node version or image, what deployed it), the running
 * rollout (steps, weights, analysis verdicts over time), instances per node, traffic per revision,
 * live logs, and the actions (promote, abort, rollback, scale), each confirmed and disabled with
 * the reason when the API would refuse it.
 */
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, ApiError, followText } from '../api.js';
import { feed, type PilotEvent } from '../events.js';
import { useLoad, useSample } from '../hooks.js';
import { ErrorBox, Loading } from '../parts/error-box.js';
import { Action } from '../parts/confirm.js';
import { TimeChart } from '../parts/chart.js';
import { ago, clock, num, pct, short, when } from '../format.js';
import type { AppDetail, AppTraffic, Run } from '../types.js';

const PALETTE = ['#2f7ed8', '#e4572e', '#17a673', '#9b59b6', '#f0a30a', '#76818e'];
const KEEP = 90;

export function AppPage({ name }: { name: string }) {
  const path = `/api/v1/apps/${encodeURIComponent(name)}`;
  const mine = (e: PilotEvent): boolean => e.app === name;
  const detail = useLoad((signal) => api<AppDetail>('GET', path, undefined, signal), [path], mine);
  const runs = useLoad(
    (signal) => api<{ runs: Run[] }>('GET', `/api/v1/runs?app=${encodeURIComponent(name)}&limit=200`, undefined, signal),
    [name],
    (e) => mine(e) && e.kind.startsWith('run.'),
  );
  // Whether a rollback would be admitted now: the API's own dry run says so (and why not).
  const rollback = useLoad(
    (signal) => api<{ revision: number }>('POST', `${path}/rollback?dryRun=true`, {}, signal),
    [path],
    (e) => mine(e) && /^(deploy|rollout)\./.test(e.kind),
  );
  const d = detail.data;
  if (detail.error && !d)
    return (
      <section>
        <h1>{name}</h1>
        <ErrorBox error={detail.error} title={`App ${JSON.stringify(name)} could not be read`} />
        <p>
          <a href="/apps">All apps</a>
        </p>
      </section>
    );
  if (!d) return <Loading what={name} />;
  const byRun = new Map((runs.data?.runs ?? []).map((r) => [r.id, r]));
  const active = d.app.activeRevision;
  const r = d.rollout;
  return (
    <section>
      <h1>
        {d.app.name}{' '}
        <span class="muted small">
          revision {active ?? 'none'} · {d.app.replicas} replica(s), set by {d.app.replicasSetBy}
        </span>
      </h1>
      <ErrorBox error={detail.error} title="Latest read failed (showing the previous one)" />
      <p class="small">
        {d.app.hosts.map((h) => (
          <code key={h} class="host">
            {h}
          </code>
        ))}
      </p>
      {d.routing.problems.length > 0 ? (
        <div class="error" role="alert">
          <strong>Routing problems</strong>
          <ul>
            {d.routing.problems.map((p, i) => (
              <li key={i}>{String(p)}</li>
            ))}
          </ul>
        </div>
      ) : null}

      <div class="actions" aria-label="Actions">
        <Action
          label="Promote"
          disabled={!r ? 'no rollout in progress' : r.steps === undefined ? `a ${r.strategy} rollout has no steps to promote` : undefined}
          question={`Move the canary of ${name} to its next step now?`}
          run={async () => {
            await api('POST', `${path}/promote`, {});
            return 'promote recorded: the next step starts at the next reconcile';
          }}
        />
        <Action
          label="Abort"
          danger
          disabled={r ? undefined : 'no rollout in progress'}
          question={`Abort the rollout of ${name} to revision ${r?.toRevision ?? '?'}? Its instances stop; the stable revision keeps serving.`}
          run={async () => {
            await api('POST', `${path}/abort`, {});
            return 'rollout aborted';
          }}
        />
        <Action
          label="Rollback"
          danger
          disabled={rollback.error ? rollback.error.message : !rollback.data ? 'checking…' : undefined}
          question={`Roll ${name} back from revision ${active ?? '?'} to revision ${rollback.data?.revision ?? '?'}?`}
          run={async () => {
            const res = await api<{ rollout: { id: number; toRevision: number } }>('POST', `${path}/rollback`, {});
            return `rollout #${res.rollout.id} to revision ${res.rollout.toRevision} started`;
          }}
        />
        <Scale name={name} path={path} replicas={d.app.replicas} autoscaled={d.app.autoscale !== null && d.app.autoscale !== undefined} />
      </div>

      <h2>Rollout</h2>
      <Rollout d={d} />

      <h2>Traffic per revision</h2>
      <Traffic path={path} />

      <h2>Instances</h2>
      <Instances d={d} />

      <h2>Revisions</h2>
      <table class="grid" data-testid="revisions">
        <thead>
          <tr>
            <th scope="col">#</th>
            <th scope="col">Commit</th>
            <th scope="col">Artifact</th>
            <th scope="col">Runtime</th>
            <th scope="col">Deployed by</th>
            <th scope="col">When</th>
          </tr>
        </thead>
        <tbody>
          {d.revisions.map((rev) => {
            const run = rev.runId !== null ? byRun.get(rev.runId) : undefined;
            return (
              <tr key={rev.number} class={rev.active ? 'active' : ''} data-revision={rev.number}>
                <th scope="row">
                  {rev.number}
                  {rev.active ? <span class="badge ok">active</span> : null}
                </th>
                <td>
                  <code title={rev.commit}>{short(rev.commit)}</code>
                  {rev.dirty ? <span class="badge warn">dirty</span> : null}
                  {run?.message ? <div class="small commit-message">{run.message}</div> : null}
                </td>
                <td>
                  <code title={rev.artifact}>{short(rev.artifact)}</code>
                </td>
                <td>{rev.image ? <code>{rev.image}</code> : rev.node ? `Node ${rev.node.version}` : rev.runtime}</td>
                <td>
                  {rev.runId !== null ? <a href={`/runs/${rev.runId}`}>run #{rev.runId}</a> : <span class="muted">—</span>}
                  {run ? (
                    <span class="small">
                      {' '}
                      {run.trigger}
                      {run.author ? ` by ${run.author}` : ''}
                    </span>
                  ) : null}
                </td>
                <td class="small">{when(rev.createdAt)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>

      <h2>Logs</h2>
      <Logs name={name} />
    </section>
  );
}

function Scale({ name, path, replicas, autoscaled }: { name: string; path: string; replicas: number; autoscaled: boolean }) {
  const [n, setN] = useState(replicas);
  useEffect(() => setN(replicas), [replicas]);
  const bad = !Number.isInteger(n) || n < 0 || n > 100;
  return (
    <Action
      label="Scale"
      disabled={autoscaled ? 'the autoscaler owns the replica count (pilot.yaml autoscale)' : undefined}
      question={`Set the replica count of ${name}?`}
      run={async () => {
        if (bad) throw new ApiError(400, 'invalid_argument', `${n} is not a replica count`, 'Give a whole number from 0 to 100.');
        await api('POST', `${path}/scale`, { replicas: n });
        return `${name} scaled to ${n}`;
      }}
    >
      <label>
        Replicas{' '}
        <input type="number" min={0} max={100} step={1} value={n} onInput={(e) => setN(Number((e.target as HTMLInputElement).value))} />
      </label>
    </Action>
  );
}

function Rollout({ d }: { d: AppDetail }) {
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
    }
    if (r && xs.length > 0) {
      xs.push(Date.now() / 1000);
      weight.push(r.weights.canary);
      pass.push(null);
      failed.push(null);
    }
    return [xs, weight, pass, failed];
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
          ]}
          data={data}
          height={150}
          yLabel="%"
        />
      ) : null}
    </div>
  );
}

function Traffic({ path }: { path: string }) {
  const history = useRef<{ t: number; byRev: Map<number, { rps: number; p99: number | null; err: number }> }[]>([]);
  const s = useSample(
    async (signal) => {
      const t = await api<AppTraffic>('GET', `${path}/traffic?window=10s`, undefined, signal);
      const byRev = new Map<number, { rps: number; p99: number | null; err: number }>();
      for (const r of t.revisions) if (r.revision !== null) byRev.set(r.revision, { rps: r.rps, p99: r.latencyMs.p99, err: r.errorRate });
      history.current.push({ t: Date.now() / 1000, byRev });
      if (history.current.length > KEEP) history.current.shift();
      return t;
    },
    2000,
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

function Instances({ d }: { d: AppDetail }) {
  const nodes = [...new Set(d.instances.map((i) => i.node))].sort();
  if (nodes.length === 0) return <p class="muted">No instances.</p>;
  return (
    <div class="nodes-grid" data-testid="instances">
      {nodes.map((n) => (
        <div class="card" key={n}>
          <h3>
            <a href="/nodes">{n}</a>
          </h3>
          <ul class="plain">
            {d.instances
              .filter((i) => i.node === n)
              .map((i) => (
                <li key={i.id} data-instance={i.id}>
                  <span class={`badge state-${i.state}`}>{i.state}</span> <code>{i.id}</code> rev {i.revision}
                  {i.port ? <span class="muted small"> :{i.port}</span> : null}
                  {i.restarts > 0 ? <span class="warn small"> {i.restarts} restart(s)</span> : null}
                  <span class="muted small"> {i.startedAt ? `up since ${clock(i.startedAt)}` : ''}</span>
                </li>
              ))}
          </ul>
        </div>
      ))}
    </div>
  );
}

/** The app's live output: a followed stream, re-opened when a new revision goes live. */
export function Logs({ name }: { name: string }) {
  const [lines, setLines] = useState<string[]>([]);
  const [state, setState] = useState<'following' | 'ended' | 'error'>('following');
  const [error, setError] = useState<ApiError | undefined>(undefined);
  const [generation, setGeneration] = useState(0);
  const pre = useRef<HTMLPreElement>(null);
  useEffect(
    () =>
      feed.subscribe((e) => {
        if (
          e !== 'reset' &&
          e.app === name &&
          (e.kind === 'deploy.activated' || (e.kind === 'instance.state' && e.payload.state === 'ready'))
        )
          setGeneration((g) => g + 1);
      }),
    [name],
  );
  useEffect(() => {
    const abort = new AbortController();
    let buf: string[] = [];
    let flush: ReturnType<typeof setTimeout> | undefined;
    setState('following');
    setError(undefined);
    setLines([]);
    followText(
      `/api/v1/apps/${encodeURIComponent(name)}/logs?follow=1&tail=200`,
      (l) => {
        buf.push(l);
        flush ??= setTimeout(() => {
          flush = undefined;
          const add = buf;
          buf = [];
          setLines((old) => [...old, ...add].slice(-1000));
        }, 100);
      },
      abort.signal,
    )
      .then(() => !abort.signal.aborted && setState('ended'))
      .catch((err: unknown) => {
        if (abort.signal.aborted) return;
        setState('error');
        setError(
          err instanceof ApiError
            ? err
            : new ApiError(0, 'stream', 'the log stream broke', 'It re-opens when a revision goes live, or with "Follow again".'),
        );
      });
    return () => {
      abort.abort();
      clearTimeout(flush);
    };
  }, [name, generation]);
  useEffect(() => {
    const el = pre.current;
    if (el && el.scrollHeight - el.scrollTop - el.clientHeight < 80) el.scrollTop = el.scrollHeight;
  }, [lines]);
  return (
    <div>
      <p class="small">
        {state === 'following' ? <span class="badge ok">following</span> : <span class="badge">{state}</span>}{' '}
        {state !== 'following' ? (
          <button type="button" onClick={() => setGeneration((g) => g + 1)}>
            Follow again
          </button>
        ) : null}
      </p>
      <ErrorBox error={error} title="Logs" />
      <pre class="log" ref={pre} tabIndex={0} aria-label={`Logs of ${name}`} data-testid="logs">
        {lines.join('\n')}
      </pre>
    </div>
  );
}
