/**
 * One app: its revisions (commit, artifact, Node version or image, what deployed it), the running
 * rollout (steps, weights, analysis verdicts over time), instances per node, traffic per revision,
 * live logs, and the actions (promote, abort, rollback, scale), each confirmed and disabled with
 * the reason when the API would refuse it.
 */
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError } from '../api.js';
import type { PilotEvent } from '../events.js';
import { useLoad } from '../hooks.js';
import { ErrorBox, Loading } from '../parts/error-box.js';
import { Action } from '../parts/confirm.js';
import { short, when } from '../format.js';
import type { AppDetail, Run } from '../types.js';
import { Rollout } from './app-rollout.js';
import { Traffic } from './app-traffic.js';
import { Instances, Logs } from './app-parts.js';

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
