/** `pilot nodes`, `pilot orphans [stop ID]`, `pilot drain|cordon|uncordon NODE`. */
import type { NodeView, OrphanView, TargetView } from '../api/wire.js';
import { swarmNodesTable } from './targets.js';
import { fail } from '../core/errors.js';
import { ago, apiClient, output, table, type GlobalOptions } from './context.js';

export async function nodes(opts: GlobalOptions): Promise<void> {
  type Docker = NonNullable<NodeView['runtimes']>['docker'];
  type Isolation = NonNullable<NonNullable<NodeView['runtimes']>['process']>['isolation'];
  const res = await apiClient(opts).call<{ nodes: NodeView[] }>('GET', '/api/v1/nodes');
  // Deploy targets' Swarm nodes, below Pilot's (the API of an older server may not have targets).
  const targets = await apiClient(opts)
    .call<{ targets: TargetView[] }>('GET', '/api/v1/targets')
    .catch(() => ({ targets: [] as TargetView[] }));
  // DOCKER: the engine's version where it answers, "no engine" where it does not (the error: --json).
  const docker = (d: Docker): string | null => (d === undefined ? null : d.available ? (d.version ?? 'yes') : 'no engine');
  // ISOLATION of process instances: "uid+cgroup-v1", "uid", "cgroup-v2", "none"; what is missing is printed below the table.
  const isolation = (i: Isolation): string | null =>
    i === undefined ? null : [i.user ? 'uid' : '', i.cgroup ? `cgroup-${i.cgroupVersion ?? ''}` : ''].filter(Boolean).join('+') || 'none';
  // ROUTER: the node router's ports ("80 https:443"), TABLE: the version it applied (current or
  // behind the control plane's), ROUTER SYNC: its last sync; "-" for a node without a router (or silent for a minute).
  const routerPorts = (r: NodeView['router']): string | null =>
    r ? [r.port === null ? '?' : String(r.port), r.httpsPort === null ? '' : `https:${r.httpsPort}`].filter(Boolean).join(' ') : null;
  const tableOf = (r: NodeView['router']): string | null => (r ? `${r.tableVersion || 'none'}${r.current ? '' : ' (behind)'}` : null);
  output(opts, { ...res, swarm: targets.targets.map((t) => ({ target: t.name, nodes: t.status?.nodes ?? [] })) }, () =>
    [
      table(
        [
          'NODE',
          'ADDRESS',
          'STATUS',
          'SCHEDULING',
          'INSTANCES',
          'ORPHANS',
          'CPUS',
          'MEMORY',
          'DOCKER',
          'ISOLATION',
          'LAST SEEN',
          'ROUTER',
          'TABLE',
          'ROUTER SYNC',
        ],
        res.nodes.map((n) => [
          n.name,
          n.address,
          n.status,
          n.scheduling,
          n.instances,
          n.orphans ?? 0,
          n.cpus,
          n.memoryMb === null ? null : `${n.memoryMb} MB`,
          docker(n.runtimes?.docker),
          isolation(n.runtimes?.process?.isolation),
          ago(n.lastSeenAt),
          routerPorts(n.router),
          tableOf(n.router),
          n.router ? ago(n.router.lastSyncAt) : null,
        ]),
      ),
      ...res.nodes.flatMap((n) =>
        n.runtimes?.process?.isolation?.reason ? [`warning: node ${n.name}: ${n.runtimes.process.isolation.reason}`] : [],
      ),
      ...swarmNodesTable(targets.targets),
    ].join('\n'),
  );
}

/** `pilot orphans` / `pilot orphans stop ID`: instances agents run that the control plane does not know. */
export async function orphans(action: string | undefined, id: string | undefined, opts: GlobalOptions): Promise<void> {
  const api = apiClient(opts);
  if (action === undefined || action === 'list') {
    const res = await api.call<{ orphans: OrphanView[] }>('GET', '/api/v1/orphans');
    output(opts, res, () =>
      res.orphans.length === 0
        ? 'no orphans: every running instance is known to the control plane'
        : table(
            ['ID', 'NODE', 'APP', 'REVISION', 'STATE', 'PORT', 'PID', 'SEEN'],
            res.orphans.map((o) => [
              o.id,
              o.node,
              o.app ?? null,
              o.revision ?? null,
              o.stopping ? 'stopping' : o.state,
              o.port ?? null,
              o.pid ?? null,
              ago(o.since),
            ]),
          ),
    );
    return;
  }
  if (action !== 'stop') throw fail.unknownOrphansAction({ action });
  if (!id) throw fail.orphansStopNeedsId();
  const res = await api.call<{ orphan: OrphanView }>('POST', `/api/v1/orphans/${encodeURIComponent(id)}/stop`);
  output(opts, res, () => `orphan ${res.orphan.id} on node ${res.orphan.node}: stopping`);
}

/** `pilot drain|cordon|uncordon NODE`. */
export async function nodeScheduling(
  action: 'drain' | 'cordon' | 'uncordon',
  node: string,
  opts: GlobalOptions & { force?: boolean },
): Promise<void> {
  const res = await apiClient(opts).call<{ node: string; scheduling: string }>(
    'POST',
    `/api/v1/nodes/${encodeURIComponent(node)}/${action}`,
    opts.force ? { force: true } : {},
  );
  output(
    opts,
    res,
    () =>
      `node ${res.node}: ${res.scheduling}${action === 'drain' ? ' (its instances move to other nodes once their replacements are ready)' : ''}`,
  );
}
