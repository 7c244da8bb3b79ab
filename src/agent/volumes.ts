/**
 * Where an app's volumes live on this node. Process runtime: a folder per volume under the agent's
 * home, `<home>/volumes/<app>/<name>`, given to the instance as $PILOT_VOLUME_<NAME>. Docker: a
 * named volume per node, app and volume, mounted at the volume's path (the same variable names the
 * mount point). Nothing here deletes data: a volume outlives its instances, revisions and the app
 * (`pilot volumes forget` only forgets where it is; the data stays on the node for an operator).
 */
import { chmodSync, chownSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { volumeEnvName, type VolumeConfig } from '../core/volume-env.js';

/** The process runtime's folder for an app's volume. */
export const processVolumeDir = (home: string, app: string, name: string): string => join(home, 'volumes', app, name);

/**
 * Create the app's volume folders (0700: other apps on the node cannot read them) and return the
 * variables that name them. `owner` is the uid/gid the instance runs as, when it is not the agent's
 * own (its per-app uid, app-sandbox.ts): the folder is handed to it.
 */
export function processVolumeEnv(
  home: string,
  app: string,
  volumes: readonly VolumeConfig[] | undefined,
  owner?: { uid: number; gid: number },
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const v of volumes ?? []) {
    const dir = processVolumeDir(home, app, v.name);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (owner) {
      // The app's own uid reaches its volume through volumes/<app>/ (search only) and owns the folder.
      chmodSync(dirname(dir), 0o711);
      chownSync(dir, owner.uid, owner.gid);
    }
    env[volumeEnvName(v.name)] = dir;
  }
  return env;
}

/** Docker's name for the volume of `app` on `node`: pilot.<node>.<app>.<name> (node names made safe for Docker). */
export function dockerVolumeName(node: string, app: string, name: string): string {
  return `pilot.${node.replace(/[^A-Za-z0-9_.-]/g, '_')}.${app}.${name}`;
}

/** The variables a container gets for its volumes: each names its mount point. */
export function containerVolumeEnv(volumes: readonly VolumeConfig[] | undefined): Record<string, string> {
  return Object.fromEntries((volumes ?? []).map((v) => [volumeEnvName(v.name), v.path]));
}
