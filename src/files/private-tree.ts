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
import { chmodSync, lstatSync, readdirSync, watch, type FSWatcher } from 'node:fs';
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

/**
 * Safety net for a folder that others may search (0711): a new entry made in it later with group or
 * other permissions (a folder some code creates on first use with the default 0755) loses them as
 * soon as inotify reports it. Code should still create with explicit modes: this closes the gap for
 * what it forgets, within milliseconds, not at once. Returns the watcher (close it on shutdown).
 */
export function guardEntries(dir: string, keep: ReadonlySet<string> = new Set()): FSWatcher | undefined {
  try {
    const w = watch(dir, { persistent: false }, (_event, name) => {
      if (typeof name !== 'string' || name === '') return;
      const p = `${dir}/${name}`;
      if (keep.has(p)) return;
      try {
        const st = lstatSync(p);
        if (!st.isSymbolicLink() && (st.mode & 0o077) !== 0) chmodSync(p, st.mode & 0o700);
      } catch {
        // gone again
      }
    });
    w.on('error', () => w.close());
    return w;
  } catch {
    return undefined; // no inotify: the start-up pass and explicit modes remain
  }
}
