/** Nodes: health, capacity and use, labels, the Docker engine, isolation; cordon, uncordon, drain. */
import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { useLoad } from '../hooks.js';
import { ErrorBox, Loading } from '../parts/error-box.js';
import { Action } from '../parts/confirm.js';
import { ago, mb } from '../format.js';
import type { NodeInfo } from '../types.js';

export function NodesPage() {
  const nodes = useLoad(
    (signal) => api<{ nodes: NodeInfo[] }>('GET', '/api/v1/nodes', undefined, signal),
    [],
    (e) => e.kind.startsWith('node.') || e.kind === 'instance.placed' || e.kind === 'instance.removed',
  );
  return (
    <section>
      <h1>Nodes</h1>
      <ErrorBox error={nodes.error} title="Nodes could not be read" />
      {!nodes.data && !nodes.error ? <Loading what="nodes" /> : null}
      {nodes.data?.nodes.length === 0 ? (
        <p class="empty">
          No node has joined: start <code>pilot agent</code> with a join token.
        </p>
      ) : null}
      <div class="nodes-grid" data-testid="nodes">
        {nodes.data?.nodes.map((n) => (
          <NodeCard key={n.id} n={n} total={nodes.data!.nodes.length} />
        ))}
      </div>
    </section>
  );
}

function NodeCard({ n, total }: { n: NodeInfo; total: number }) {
  const [force, setForce] = useState(false);
  const name = encodeURIComponent(n.name);
  const docker = n.runtimes?.docker;
  const iso = n.runtimes?.process?.isolation;
  const labels = Object.entries(n.labels ?? {});
  return (
    <article class="card" data-node={n.name}>
      <h2>
        {n.name} <span class={`badge ${n.status === 'ready' ? 'ok' : n.status === 'down' ? 'bad' : 'warn'}`}>{n.status}</span>{' '}
        <span class={`badge ${n.scheduling === 'eligible' ? '' : 'warn'}`}>{n.scheduling}</span>
      </h2>
      <dl class="facts">
        <dt>Address</dt>
        <dd>
          <code>{n.address}</code>
        </dd>
        <dt>Capacity</dt>
        <dd>
          {n.cpus ?? '—'} CPU · {mb(n.memoryMb)}
        </dd>
        <dt>Use</dt>
        <dd>
          {n.instances} instance(s){n.orphans ? <span class="warn"> · {n.orphans} orphan(s)</span> : null}
        </dd>
        <dt>Labels</dt>
        <dd>{labels.length ? labels.map(([k, v]) => <code key={k} class="host">{`${k}=${v}`}</code>) : <span class="muted">none</span>}</dd>
        <dt>Docker</dt>
        <dd>
          {docker ? (
            docker.available ? (
              `engine ${docker.version ?? 'available'}`
            ) : (
              <span class="muted">{docker.error ?? 'not available'}</span>
            )
          ) : (
            '—'
          )}
        </dd>
        <dt>Isolation</dt>
        <dd>
          {iso
            ? `${iso.user ? 'own uid per app' : 'shared uid'}, ${iso.cgroup ? `cgroup ${iso.cgroupVersion ?? ''} limits` : 'no cgroup limits'}`
            : '—'}
          {iso?.reason ? <div class="small muted">{iso.reason}</div> : null}
        </dd>
        <dt>Last heard</dt>
        <dd>{ago(n.lastSeenAt)}</dd>
      </dl>
      <div class="actions">
        <Action
          label="Cordon"
          disabled={n.scheduling !== 'eligible' ? `already ${n.scheduling}` : undefined}
          question={`Cordon ${n.name}? Nothing new is placed there; what runs keeps running.`}
          run={async () => {
            await api('POST', `/api/v1/nodes/${name}/cordon`, {});
            return `${n.name} cordoned`;
          }}
        />
        <Action
          label="Uncordon"
          disabled={n.scheduling === 'eligible' ? 'already eligible' : undefined}
          question={`Make ${n.name} eligible for new instances again?`}
          run={async () => {
            await api('POST', `/api/v1/nodes/${name}/uncordon`, {});
            return `${n.name} eligible`;
          }}
        />
        <Action
          label="Drain"
          danger
          disabled={n.scheduling === 'draining' ? 'already draining' : undefined}
          question={`Drain ${n.name}? Its instances move to other nodes, then stop here.`}
          run={async () => {
            await api('POST', `/api/v1/nodes/${name}/drain`, { force });
            return `${n.name} draining`;
          }}
        >
          <label class="small">
            <input type="checkbox" checked={force} onChange={(e) => setForce((e.target as HTMLInputElement).checked)} /> force
            {total === 1 ? ' (needed: this is the only node)' : ''}
          </label>
        </Action>
      </div>
    </article>
  );
}
