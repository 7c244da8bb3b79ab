/** `pilot targets add|list|remove`: deploy targets (Docker Swarm managers), and their Swarm nodes for `pilot nodes`. */
import type { TargetView } from '../api/wire.js';
import { ago, apiClient, output, table, type GlobalOptions } from './context.js';

export async function targetsAdd(name: string, opts: GlobalOptions & { docker: string; ports?: string }): Promise<void> {
  const res = await apiClient(opts).call<TargetView>('POST', '/api/v1/targets', {
    name,
    docker: opts.docker,
    ...(opts.ports === undefined ? {} : { ports: opts.ports }),
  });
  output(
    opts,
    res,
    () =>
      `target ${res.name} added (Swarm manager at ${res.docker}; task ports ${res.ports.from}-${res.ports.to + 99}): apps with \`target: ${res.name}\` and \`runtime: docker\` in pilot.yaml run as Swarm services`,
  );
}

export async function targetsRemove(name: string, opts: GlobalOptions): Promise<void> {
  const res = await apiClient(opts).call<{ removed: string }>('DELETE', `/api/v1/targets/${encodeURIComponent(name)}`);
  output(opts, res, () => `target ${res.removed} removed`);
}

export async function targetsList(opts: GlobalOptions): Promise<void> {
  const res = await apiClient(opts).call<{ targets: TargetView[] }>('GET', '/api/v1/targets');
  output(opts, res, () =>
    res.targets.length === 0
      ? 'no deploy target (`pilot targets add NAME --docker unix:///var/run/docker.sock` adds a Docker Swarm)'
      : [
          table(
            ['TARGET', 'KIND', 'DOCKER', 'NODE', 'SWARM', 'SWARM NODES', 'TASKS', 'APPS', 'LAST REPORT'],
            res.targets.map((t) => [
              t.name,
              t.kind,
              t.docker,
              t.node ? `${t.node.name} (${t.node.status})` : 'not registered yet',
              t.status === null ? null : t.status.ok ? 'ok' : 'not answering',
              t.status?.nodes.length ?? null,
              t.status ? t.status.tasks.filter((x) => x.state === 'running').length + ' running' : null,
              t.apps.join(', ') || null,
              t.status ? ago(t.status.at) : null,
            ]),
          ),
          ...res.targets.flatMap((t) => (t.status?.error ? [`warning: target ${t.name}: ${t.status.error}`] : [])),
        ].join('\n'),
  );
}

/** The Swarm nodes of every target, for `pilot nodes` (empty when there is no target). */
export function swarmNodesTable(targets: readonly TargetView[]): string[] {
  const rows = targets.flatMap((t) =>
    (t.status?.nodes ?? []).map((n) => [
      t.name,
      n.hostname,
      n.address,
      n.role + (n.leader ? ' (leader)' : ''),
      n.state,
      n.availability,
      (t.status?.tasks ?? []).filter((x) => x.desiredState === 'running' && x.node === n.hostname).length,
    ]),
  );
  const silent = targets
    .filter((t) => t.status && !t.status.ok)
    .map((t) => `warning: target ${t.name}: ${t.status?.error ?? 'not answering'}`);
  if (rows.length === 0 && silent.length === 0) return [];
  return [
    '',
    'Swarm nodes (deploy targets):',
    table(['TARGET', 'NODE', 'ADDRESS', 'ROLE', 'STATE', 'AVAILABILITY', 'TASKS'], rows),
    ...silent,
  ];
}

/** `pilot status` of a Swarm app: each slot's tasks, newest first (a replaced task and its replacement). */
export function swarmTasksTable(target: TargetView, app: string): string[] {
  const tasks = (target.status?.tasks ?? []).filter((t) => t.app === app);
  if (tasks.length === 0) return [];
  return [
    '',
    `Swarm tasks (target ${target.name}):`,
    table(
      ['SERVICE', 'SLOT', 'TASK', 'STATE', 'DESIRED', 'NODE', 'PORT', 'INSTANCE', 'ERROR', 'UPDATED'],
      tasks.map((t) => [
        t.service,
        t.slot,
        t.id.slice(0, 12),
        t.state,
        t.desiredState,
        t.node,
        t.port,
        t.instance ?? '(free slot)',
        [t.error, t.exitCode ? `exit ${t.exitCode}` : ''].filter(Boolean).join(', ') || null,
        ago(t.updatedAt),
      ]),
    ),
  ];
}
