/**
 * Volumes (pilot.yaml `volumes`): where each app's volumes live, and `pilot volumes forget`, the
 * one way to let an app whose volume node is gone start with empty volumes elsewhere. The data is
 * never deleted by Pilot: forgetting only drops the placement record (store `volume_placements`);
 * the folder or Docker volume stays on the old node for an operator to copy or remove.
 */
import type { FastifyInstance } from 'fastify';
import { fail } from '../core/errors.js';
import { assertName } from '../core/names.js';
import type { Store } from '../store/store.js';
import type { Reconciler } from './reconciler.js';

/** One volume as `pilot status` and `pilot volumes` show it. */
export interface VolumeView {
  readonly name: string;
  /** runtime docker: the mount point; null when the volume is no longer in the app's config. */
  readonly path: string | null;
  /** The node that holds it; null before the first placement. */
  readonly node: string | null;
  readonly nodeId: string | null;
  /** ready, down, … of that node; null before the first placement or when the node is gone. */
  readonly nodeStatus: string | null;
  readonly placedAt: number | null;
}

/** The app's volumes: those in its config, then any still recorded that the config dropped. */
export async function volumeViews(store: Store, reconciler: Reconciler, app: string): Promise<VolumeView[]> {
  const a = await store.getApp(app);
  const placed = await store.listVolumePlacements(app);
  const nodes = new Map((await store.listNodes()).map((n) => [n.id, n]));
  const view = (name: string, path: string | null): VolumeView => {
    const p = placed.find((x) => x.name === name);
    const node = p && nodes.get(p.nodeId);
    return {
      name,
      path,
      node: node?.name ?? p?.nodeId ?? null,
      nodeId: p?.nodeId ?? null,
      nodeStatus: node ? reconciler.nodeStatus(node.id) : null,
      placedAt: p?.createdAt ?? null,
    };
  };
  const configured = a?.config.volumes ?? [];
  return [
    ...configured.map((v) => view(v.name, v.path)),
    ...placed.filter((p) => !configured.some((v) => v.name === p.name)).map((p) => view(p.name, null)),
  ];
}

export function registerVolumeRoutes(app: FastifyInstance, deps: { store: Store; reconciler: Reconciler }): void {
  const { store, reconciler } = deps;
  const mustExist = async (name: string): Promise<string> => {
    assertName(name);
    if (!(await store.getApp(name))) throw fail.appNotFound({ app: name });
    return name;
  };

  app.get<{ Params: { app: string } }>('/api/v1/apps/:app/volumes', async (req) => ({
    volumes: await volumeViews(store, reconciler, await mustExist(req.params.app)),
  }));

  // Forget where the volumes are (all, or ?name=one): the next placement chooses a node anew, with empty volumes.
  app.delete<{ Params: { app: string }; Querystring: { name?: string } }>('/api/v1/apps/:app/volumes', async (req) => {
    const name = await mustExist(req.params.app);
    const one = req.query.name;
    if (one !== undefined && !/^[a-z][a-z0-9-]{0,30}$/.test(one)) throw fail.invalidVolumeName({ one: one.slice(0, 80) });
    const before = await volumeViews(store, reconciler, name);
    const forgotten = await reconciler.serial(() => store.forgetVolumes(name, one));
    if (one !== undefined && forgotten === 0) throw fail.volumeNotPlaced({ name, one });
    reconciler.enqueue(name);
    return { forgotten: before.filter((v) => v.nodeId !== null && (one === undefined || v.name === one)) };
  });
}
