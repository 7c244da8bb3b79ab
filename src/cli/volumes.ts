/** `pilot volumes APP` and `pilot volumes forget APP [--name NAME]`; the volume lines of `pilot status`. */
import { apiClient, ago, output, table, type GlobalOptions } from './context.js';

/** A volume as the API shows it (control/volume-routes.ts VolumeView). */
export interface VolumeRow {
  name: string;
  path: string | null;
  node: string | null;
  nodeStatus: string | null;
  placedAt: number | null;
}

/** One line per volume: `volume data on node n1` (with the node's state when it is not ready). */
export function volumeLines(volumes: readonly VolumeRow[]): string[] {
  return volumes.map((v) =>
    v.node === null
      ? `volume ${v.name}: not placed yet (the node of the first instance will hold it)`
      : `volume ${v.name} on node ${v.node}${v.nodeStatus !== null && v.nodeStatus !== 'ready' ? ` (${v.nodeStatus})` : ''}${v.path === null ? ' (no longer in pilot.yaml)' : ''}`,
  );
}

export async function volumes(app: string, opts: GlobalOptions): Promise<void> {
  const res = await apiClient(opts).call<{ volumes: VolumeRow[] }>('GET', `/api/v1/apps/${encodeURIComponent(app)}/volumes`);
  output(opts, res, () =>
    res.volumes.length === 0
      ? `${app} has no volumes (pilot.yaml: volumes: [{ name: data, path: /data }])`
      : table(
          ['VOLUME', 'PATH', 'NODE', 'NODE STATE', 'PLACED'],
          res.volumes.map((v) => [v.name, v.path, v.node ?? 'not placed yet', v.nodeStatus, v.placedAt === null ? null : ago(v.placedAt)]),
        ),
  );
}

export async function volumesForget(app: string, opts: GlobalOptions & { name?: string }): Promise<void> {
  const q = opts.name === undefined ? '' : `?name=${encodeURIComponent(opts.name)}`;
  const res = await apiClient(opts).call<{ forgotten: VolumeRow[] }>('DELETE', `/api/v1/apps/${encodeURIComponent(app)}/volumes${q}`);
  output(opts, res, () =>
    res.forgotten.length === 0
      ? `${app}: no volume was placed; nothing to forget`
      : res.forgotten
          .map(
            (v) =>
              `forgot volume ${v.name} on node ${v.node}: the next instance of ${app} starts with it empty on the node the scheduler picks (the data stays on ${v.node})`,
          )
          .join('\n'),
  );
}
