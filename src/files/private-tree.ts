/**
 * $PILOT_HOME is private: no other user (in particular no app uid) may read anything in it. This
 * strips every group/other permission from the files and folders of a tree (files → 0600, or 0700
 * when executable; folders → 0700), at start-up, so homes made by older versions (0644 files in
 * 0755 folders) are fixed too. Files created later are born inside these 0700 folders, or are
 * written with an explicit 0600 mode (tokens, keys, server.json), so one pass at start suffices.
 *
 * Two exceptions, for the agent's apps: the root keeps its search bit for others (0711, never
 * listable) when it had it, and `keep` folders are left to their owner (the agent makes the path
 * to its shared release folder 0711 and decides what is inside: see src/agent/README.md).
 */
import { chmodSync, lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** Strip group/other permissions under `root` (see above). Symbolic links are left alone. */
export function makePrivate(root: string, keep: ReadonlySet<string> = new Set()): void {
  const walk = (p: string, isRoot: boolean): void => {
    let st;
    try {
      st = lstatSync(p);
    } catch {
      return; // removed meanwhile
    }
    if (st.isSymbolicLink()) return;
    const mode = st.mode & 0o7777;
    if (st.isDirectory()) {
      const want = isRoot || keep.has(p) ? mode & 0o711 : mode & 0o700;
      if (want !== mode) chmodSync(p, want);
      if (keep.has(p)) return;
      for (const n of readdirSync(p)) walk(join(p, n), false);
    } else if ((mode & 0o077) !== 0) {
      chmodSync(p, mode & 0o700);
    }
  };
  walk(root, true);
}
