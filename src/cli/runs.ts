/** `pilot runs [APP]`, `pilot nodes`, `pilot logs APP [-f] [--previous] [--instance ID]`, `pilot logs --run N`. */
import { PilotError } from '../core/errors.js';
import { formatDuration } from '../core/duration.js';
import type { RunRecord } from '../core/types.js';
import { ago, apiClient, output, table, type GlobalOptions } from './context.js';

export async function runs(app: string | undefined, opts: GlobalOptions & { limit?: string }): Promise<void> {
  const q = new URLSearchParams({ limit: opts.limit ?? '20', ...(app ? { app } : {}) });
  const res = await apiClient(opts).call<{ runs: RunRecord[] }>('GET', `/api/v1/runs?${q}`);
  output(opts, res, () => res.runs.length === 0 ? 'no runs yet' : table(
    ['RUN', 'APP', 'STATUS', 'COMMIT', 'REVISION', 'DURATION', 'STARTED', 'ERROR'],
    res.runs.map((r) => [
      `#${r.id}`, r.app, r.status, r.commit ? r.commit.slice(0, 12) + (r.dirty ? '+dirty' : '') : null, r.revision,
      r.finishedAt ? formatDuration(r.finishedAt - r.createdAt) : null, ago(r.createdAt), r.error?.split('\n')[0]?.slice(0, 80),
    ]),
  ));
}

export async function nodes(opts: GlobalOptions): Promise<void> {
  type Docker = { available: boolean; version?: string; error?: string } | undefined;
  type Isolation = { user: boolean; cgroup: boolean; cgroupVersion?: string; reason?: string } | undefined;
  const res = await apiClient(opts).call<{ nodes: { name: string; address: string; status: string; scheduling: string; instances: number; orphans?: number; cpus: number | null; memoryMb: number | null; lastSeenAt: number; runtimes?: { docker?: Docker; process?: { isolation?: Isolation } } }[] }>('GET', '/api/v1/nodes');
  // DOCKER: the engine's version where it answers, "no engine" where it does not (the error: --json).
  const docker = (d: Docker): string | null => (d === undefined ? null : d.available ? (d.version ?? 'yes') : 'no engine');
  // ISOLATION of process instances: "uid+cgroup-v1", "uid", "cgroup-v2", "none"; what is missing is printed below the table.
  const isolation = (i: Isolation): string | null => (i === undefined ? null : [i.user ? 'uid' : '', i.cgroup ? `cgroup-${i.cgroupVersion ?? ''}` : ''].filter(Boolean).join('+') || 'none');
  output(opts, res, () => [
    table(['NODE', 'ADDRESS', 'STATUS', 'SCHEDULING', 'INSTANCES', 'ORPHANS', 'CPUS', 'MEMORY', 'DOCKER', 'ISOLATION', 'LAST SEEN'],
      res.nodes.map((n) => [n.name, n.address, n.status, n.scheduling, n.instances, n.orphans ?? 0, n.cpus, n.memoryMb === null ? null : `${n.memoryMb} MB`, docker(n.runtimes?.docker), isolation(n.runtimes?.process?.isolation), ago(n.lastSeenAt)])),
    ...res.nodes.flatMap((n) => (n.runtimes?.process?.isolation?.reason ? [`warning: node ${n.name}: ${n.runtimes.process.isolation.reason}`] : [])),
  ].join('\n'));
}

interface Orphan { id: string; node: string; app?: string; revision?: number; state: string; port?: number; pid?: number; since: number; stopping: boolean }

/** `pilot orphans` / `pilot orphans stop ID`: instances agents run that the control plane does not know. */
export async function orphans(action: string | undefined, id: string | undefined, opts: GlobalOptions): Promise<void> {
  const api = apiClient(opts);
  if (action === undefined || action === 'list') {
    const res = await api.call<{ orphans: Orphan[] }>('GET', '/api/v1/orphans');
    output(opts, res, () => res.orphans.length === 0 ? 'no orphans: every running instance is known to the control plane'
      : table(['ID', 'NODE', 'APP', 'REVISION', 'STATE', 'PORT', 'PID', 'SEEN'], res.orphans.map((o) => [o.id, o.node, o.app ?? null, o.revision ?? null, o.stopping ? 'stopping' : o.state, o.port ?? null, o.pid ?? null, ago(o.since)])));
    return;
  }
  if (action !== 'stop') throw new PilotError('bad_request', `unknown orphans action "${action}": use \`pilot orphans\` or \`pilot orphans stop ID\``);
  if (!id) throw new PilotError('bad_request', 'name the instance: `pilot orphans stop ID` (see `pilot orphans`)');
  const res = await api.call<{ orphan: Orphan }>('POST', `/api/v1/orphans/${encodeURIComponent(id)}/stop`);
  output(opts, res, () => `orphan ${res.orphan.id} on node ${res.orphan.node}: stopping`);
}

/** `pilot drain|cordon|uncordon NODE`. */
export async function nodeScheduling(action: 'drain' | 'cordon' | 'uncordon', node: string, opts: GlobalOptions & { force?: boolean }): Promise<void> {
  const res = await apiClient(opts).call<{ node: string; scheduling: string }>('POST', `/api/v1/nodes/${encodeURIComponent(node)}/${action}`, opts.force ? { force: true } : {});
  output(opts, res, () => `node ${res.node}: ${res.scheduling}${action === 'drain' ? ' (its instances move to other nodes once their replacements are ready)' : ''}`);
}

/** `pilot token create --join`, `pilot token list`, `pilot token revoke ID`. */
export async function token(action: 'create' | 'list' | 'revoke', id: string | undefined, opts: GlobalOptions & { join?: boolean }): Promise<void> {
  const api = apiClient(opts);
  if (action === 'create') {
    if (!opts.join) throw new PilotError('bad_request', 'say which kind: `pilot token create --join` (admin tokens live in $PILOT_HOME/admin-token)');
    const res = await api.call<{ id: string; token: string; note: string }>('POST', '/api/v1/tokens/join');
    output(opts, res, () => `join token ${res.id} (shown once):\n  ${res.token}\nuse it with: PILOT_JOIN_TOKEN=${res.token} pilot agent --server ${api.baseUrl} --name NAME --address ADDRESS\n(or save it in a file and pass --token-file FILE; on the command line it would show in ps)`);
  } else if (action === 'list') {
    const res = await api.call<{ tokens: { id: string; createdAt: number; revokedAt?: number }[] }>('GET', '/api/v1/tokens/join');
    output(opts, res, () => table(['ID', 'CREATED', 'REVOKED'], res.tokens.map((t) => [t.id, ago(t.createdAt), t.revokedAt ? ago(t.revokedAt) : null])));
  } else {
    if (!id) throw new PilotError('bad_request', 'name the token: `pilot token revoke ID` (see `pilot token list`)');
    const res = await api.call<{ revoked: string }>('DELETE', `/api/v1/tokens/join/${encodeURIComponent(id)}`);
    output(opts, res, () => `join token ${res.revoked} revoked: agents can no longer register with it (registered nodes keep their own credentials)`);
  }
}

export async function logs(app: string | undefined, opts: GlobalOptions & { follow?: boolean; tail?: string; run?: string; previous?: boolean; instance?: string }): Promise<void> {
  const api = apiClient(opts);
  let path: string;
  if (opts.run !== undefined) path = `/api/v1/runs/${encodeURIComponent(opts.run)}/log${opts.follow ? '?follow=1' : ''}`;
  else if (app) {
    const q = new URLSearchParams({ tail: opts.tail ?? '100' });
    if (opts.follow) q.set('follow', '1');
    if (opts.previous) q.set('previous', '1');
    if (opts.instance !== undefined) q.set('instance', opts.instance);
    path = `/api/v1/apps/${encodeURIComponent(app)}/logs?${q}`;
  }
  else throw new PilotError('bad_request', 'name an app (`pilot logs APP`) or a run (`pilot logs --run N`)');
  const res = await api.stream(path);
  if (res.body) for await (const chunk of res.body) process.stdout.write(chunk);
}
