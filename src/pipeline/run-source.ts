/**
 * Where a run's source comes from: a local git work tree (`pilot run DIR`) or the app's configured
 * repository at a pushed commit (the CD server). Either way the result is the same: a commit SHA
 * and a clean workspace holding exactly the files to build.
 */
import { join } from 'node:path';
import type { AppConfigInput, AppConfig } from '../core/app-config.js';
import { fail } from '../core/errors.js';
import { loadAppConfig } from '../workspace/load-config.js';
import { checkoutWorkspace, resolveSource } from './source.js';

export type RunSource =
  | { readonly kind: 'worktree'; readonly dir: string; readonly allowDirty: boolean }
  | {
      readonly kind: 'git';
      readonly app: string;
      readonly repo: string;
      readonly commit: string;
      readonly runId: number;
      readonly cacheRoot: string;
    };

export interface PreparedSource {
  readonly app: string;
  readonly commit: string;
  readonly dirty: boolean;
  /** Known before the checkout for a work tree; read from the checked-out files for a repository. */
  readonly config: { input: AppConfigInput; config: AppConfig } | undefined;
  /** Lay the files out in `dir` (empty); says what it did, and the commit's first message line. */
  checkout(dir: string, signal?: AbortSignal, onLine?: (line: string) => void): Promise<{ files: number; message: string }>;
}

/** Resolve what to build, before any run is recorded for a work tree. */
export async function prepareSource(src: RunSource, signal?: AbortSignal): Promise<PreparedSource> {
  if (src.kind === 'worktree') {
    const loaded = await loadAppConfig(src.dir);
    const s = await resolveSource(src.dir, { allowDirty: src.allowDirty, ...(signal ? { signal } : {}) });
    return {
      app: loaded.config.name,
      commit: s.commit,
      dirty: s.dirty,
      config: loaded,
      async checkout(dir, sig) {
        const { files } = await checkoutWorkspace(s, dir, sig ? { signal: sig } : {});
        return { files, message: s.message };
      },
    };
  }
  return {
    app: src.app,
    commit: src.commit,
    dirty: false,
    config: undefined,
    async checkout(dir, sig, onLine) {
      const { fetchCommit, checkoutCommit } = await import('./git-cache.js');
      const { gitDir } = await fetchCommit({
        repo: src.repo,
        commit: src.commit,
        cacheRoot: src.cacheRoot,
        ...(sig ? { signal: sig } : {}),
        ...(onLine ? { onLine } : {}),
      });
      const r = await checkoutCommit(gitDir, src.commit, dir, sig ? { signal: sig } : {});
      return { files: r.files, message: r.message };
    },
  };
}

/** The app config of a repository checkout; its name, if any, must be the app's. */
export async function configFromCheckout(app: string, dir: string): Promise<{ input: AppConfigInput; config: AppConfig }> {
  const loaded = await loadAppConfig(dir, app);
  if (loaded.input.name !== undefined && loaded.input.name !== app) {
    throw fail.repoConfigNameMismatch({ name: loaded.input.name, app });
  }
  return loaded;
}

export const appDirOf = (workspace: string): string => join(workspace, 'app');
