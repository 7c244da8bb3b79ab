/** `pilot status` without an app: the control-plane replicas, the leader and its token, the store and blob store. */
import type { ClusterView } from '../api/wire.js';
import { ago, apiClient, output, table, type GlobalOptions } from './context.js';
import { style } from './style.js';

/** One backend's line: kind, where, healthy or why not, and its probe's time. */
function backendLine(name: string, b: ClusterView['store'] | ClusterView['blobs']): string {
  const s = style();
  const health = b.healthy ? s.green('healthy') : s.red(`unhealthy: ${b.error ?? 'no answer'}`);
  const free = 'freeBytes' in b && b.freeBytes !== undefined ? `, ${(b.freeBytes / 1024 ** 3).toFixed(1)} GiB free` : '';
  return `${name.padEnd(9)}${b.kind} ${b.location}  ${health} (${b.latencyMs} ms${free})`;
}

/** The cluster view as people read it. */
export function clusterLines(v: ClusterView): string {
  const s = style();
  const leader = v.leader
    ? `${v.leader.url}${v.leader.token !== null ? `  token ${v.leader.token}` : ''}${v.leader.expired ? s.red('  (lease expired: an election is due)') : ''}`
    : s.red('none (no replica holds the lease)');
  const lines = [
    `control plane: ${v.mode === 'single' ? 'one process (SQLite): always the leader' : `${v.replicas.length} replica(s) on PostgreSQL`}`,
    `leader   ${leader}`,
    backendLine('store', v.store),
    backendLine('blobs', v.blobs),
    '',
    table(
      ['REPLICA', 'ADDRESS', 'VERSION', 'ROLE', 'LAST SEEN'],
      v.replicas.map((r) => [
        r.id.slice(0, 8) + (r.self ? ' (this)' : ''),
        r.url,
        r.version,
        r.leader ? s.green('leader') : 'follower',
        r.silentMs < 1000 ? 'now' : ago(r.lastSeenAt),
      ]),
    ),
  ];
  if (v.fencedWrites > 0) lines.push('', `${v.fencedWrites} write(s) of this replica refused for a stale leadership token`);
  return lines.join('\n');
}

export async function clusterStatus(opts: GlobalOptions): Promise<void> {
  const v = await apiClient(opts).call<ClusterView>('GET', '/api/v1/cluster');
  output(opts, v, () => clusterLines(v));
}
