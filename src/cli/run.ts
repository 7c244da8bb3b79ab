/** `pilot run [DIR]`: the deploy process from this terminal (source → build → artifact → publish → deploy). */
import { resolve } from 'node:path';
import { runPipeline } from '../pipeline/runner.js';
import { formatDuration } from '../core/duration.js';
import { fail } from '../core/errors.js';
import { apiClient, output, type GlobalOptions } from './context.js';
import { planLines } from './plan-view.js';
import { progress } from './progress.js';
import { loadAppConfig } from '../workspace/load-config.js';

/** What --node may hold: a version or range, as pilot.yaml `node` (no shell, no path, short). */
const NODE_SPEC = /^[0-9A-Za-z.*^~<>=|/ -]{1,64}$/;

export async function run(
  dir: string | undefined,
  opts: GlobalOptions & { allowDirty?: boolean; node?: string; cache?: boolean; dryRun?: boolean },
): Promise<void> {
  if (opts.node !== undefined && !NODE_SPEC.test(opts.node.trim())) {
    throw fail.invalidNodeFlag({ node: opts.node.slice(0, 80) });
  }
  const api = apiClient(opts);
  if (opts.dryRun) return planRun(resolve(dir ?? '.'), opts);
  const abort = new AbortController();
  const onSignal = (): void => abort.abort();
  process.once('SIGINT', onSignal);
  // With --json the log goes to stderr (stdout is the result); on a terminal a status line with a
  // spinner shows the current step and the rollout's progress under the log (progress.ts).
  const bar = progress(opts.json ? process.stderr : process.stdout);
  try {
    const out = (line: string): void => bar.line(line);
    const result = await runPipeline(
      {
        source: { kind: 'worktree', dir: resolve(dir ?? '.'), allowDirty: Boolean(opts.allowDirty) },
        trigger: 'cli',
        out,
        signal: abort.signal,
        nodeOverride: opts.node,
        noCache: opts.cache === false,
      },
      api,
    );
    bar.done();
    if (opts.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    else {
      const d = result.durations;
      process.stdout.write(
        `timings: source ${formatDuration(d.source)}, build ${formatDuration(d.build)}, package ${formatDuration(d.package)}, publish ${formatDuration(d.publish)}, deploy ${formatDuration(d.deploy)}\n`,
      );
    }
  } finally {
    bar.done();
    process.off('SIGINT', onSignal);
  }
}

/**
 * `pilot run --dry-run`: the plan of deploying the folder's pilot.yaml, from the server's planner,
 * before anything is built (no run is recorded, nothing is built or published, nothing changes).
 * The artifact does not exist yet, so the plan cannot prefer nodes that hold it already.
 */
async function planRun(dir: string, opts: GlobalOptions): Promise<void> {
  const { input, config } = await loadAppConfig(dir);
  const plan = await apiClient(opts).planDeploy(config.name, { config: input });
  output(opts, plan, () => planLines(plan, `deploying ${config.name} as revision ${plan.revision}`).join('\n'));
}
