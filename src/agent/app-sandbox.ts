/**
 * Where apps with their own uid may go in the agent's home, and how the agent prepares it: the
 * release and runtime caches (read-only to apps) and one work folder per instance (the app's own).
 *
 *   <agent home>  0711          (and the folder above it, $PILOT_HOME for `pilot up`/`pilot agent`)
 *   ├── releases/ 0711          <digest>/ 0755 root-owned (shareTree); downloads/ 0700
 *   ├── runtimes/ 0711 node/ 0711 <digest>/ 0755 likewise; npm/ 0711 (the paired npm) likewise
 *   ├── work/     0711          <instance>/ 0700 owned by the app uid: home/, tmp/
 *   ├── volumes/  0711          <app>/ 0711 <name>/ 0700 owned by the app uid (volumes.ts)
 *   └── everything else 0700 folders, 0600 files (instances/ with instance.json, node.json, uids.json)
 *
 * 0711 = search only: an app can open a name it already knows but list nothing; every name it could
 * guess in those folders is a 0600 file or a 0700 folder it cannot enter. See README "File modes".
 */
import { chmodSync, chownSync, mkdirSync, rmSync, statSync, type FSWatcher } from 'node:fs';
import { dirname, join } from 'node:path';
import { guardEntries, makePrivate } from '../files/private-tree.js';
import { AppUids, shareTree, traversable, type AppIdentity } from './isolation.js';

export class AppSandbox {
  /** Trees already made readable by app uids in this process (shareTree walks each once). */
  private readonly sharedTrees = new Set<string>();
  private readonly guard: FSWatcher | undefined;
  private readonly uids: AppUids;

  /**
   * `users`: apps get their own uid. Throws (before changing anything above the home) when a folder
   * above the agent home is not searchable by others, since no app uid could reach its release.
   */
  constructor(
    private readonly home: string,
    readonly users: boolean,
  ) {
    mkdirSync(home, { recursive: true, mode: 0o700 });
    const shared = [this.releasesDir, this.runtimesDir, this.workRoot, join(home, 'volumes')];
    if (users) {
      checkAncestors(home);
      // runtimes/npm: the npm paired with a pinned node; volumes/<app>/<name>: the app's own data.
      for (const d of [...shared, join(this.runtimesDir, 'node'), join(this.runtimesDir, 'npm')]) traversable(d);
      mkdirSync(join(this.releasesDir, 'downloads'), { recursive: true, mode: 0o700 });
      chmodSync(join(this.releasesDir, 'downloads'), 0o700); // artifacts being fetched: nobody else's business
    }
    // Everything but the shared folders: instance.json (env, secrets), node.json, logs, uids.json.
    makePrivate(home, new Set(users ? shared : []));
    if (users) {
      chmodSync(home, 0o711);
      const above = dirname(home);
      const mode = statSync(above).mode & 0o7777;
      if ((mode & 0o001) === 0) chmodSync(above, (mode & 0o700) | 0o011);
      this.guard = guardEntries(home, new Set(shared));
    }
    this.uids = new AppUids(join(home, 'uids.json'), home);
  }

  get releasesDir(): string {
    return join(this.home, 'releases');
  }

  get runtimesDir(): string {
    return join(this.home, 'runtimes');
  }

  private get workRoot(): string {
    return join(this.home, 'work');
  }

  /** The app's uid/gid (allocated on first use, stable across restarts), or undefined when apps run as the agent's user. */
  identity(app: string): AppIdentity | undefined {
    return this.users ? this.uids.identity(app) : undefined;
  }

  /** Make a release or runtime tree readable (not writable) by app uids, once per agent process. */
  share(dir: string): void {
    if (!this.users || this.sharedTrees.has(dir)) return;
    shareTree(dir);
    this.sharedTrees.add(dir);
  }

  /** The instance's writable folder (work/<id>, 0700, owned by the app uid, with home/ and tmp/); undefined without app uids. */
  workDir(instanceId: string, user: AppIdentity | undefined): string | undefined {
    if (!this.users || user === undefined) return undefined;
    const dir = join(this.workRoot, instanceId);
    mkdirSync(join(dir, 'home'), { recursive: true, mode: 0o700 });
    mkdirSync(join(dir, 'tmp'), { recursive: true, mode: 0o700 });
    for (const d of [dir, join(dir, 'home'), join(dir, 'tmp')]) {
      const st = statSync(d);
      if (st.uid !== user.uid || st.gid !== user.gid) chownSync(d, user.uid, user.gid);
      if ((st.mode & 0o777) !== 0o700) chmodSync(d, 0o700);
    }
    return dir;
  }

  /** Where the instance's work folder is (or would be), without creating it; undefined without app uids. */
  workPath(instanceId: string): string | undefined {
    return this.users ? join(this.workRoot, instanceId) : undefined;
  }

  /** Remove an instance's work folder (with the instance). */
  removeWork(instanceId: string): void {
    rmSync(join(this.workRoot, instanceId), { recursive: true, force: true });
  }

  close(): void {
    this.guard?.close();
  }
}

/** Every folder above dirname(home) must let others search it (the one just above is fixed by the caller). */
function checkAncestors(home: string): void {
  for (let p = dirname(dirname(home)); ; p = dirname(p)) {
    const mode = statSync(p).mode & 0o7777;
    if ((mode & 0o001) === 0) {
      throw new Error(
        `${p} is not searchable by other users (mode ${mode.toString(8)}), so app users cannot reach their releases under ${home}: put PILOT_HOME elsewhere (e.g. /var/lib/pilot)`,
      );
    }
    if (p === dirname(p)) break;
  }
}
