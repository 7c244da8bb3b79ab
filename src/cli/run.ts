/** `pilot run [DIR]`: the deploy process from this terminal (source → build → artifact → publish → deploy). */
import { resolve } from 'node:path';
import { runPipeline } from '../pipeline/runner.js';
import { formatDuration } from '../core/duration.js';
import { apiClient, type GlobalOptions } from './context.js';

export async function run(dir: string | undefined, opts: GlobalOptions & { allowDirty?: boolean; cache?: boolean }): Promise<void> {
  const api = apiClient(opts);
  const abort = new AbortController();
  const onSignal = (): void => abort.abort();
  process.once('SIGINT', onSignal);
  try {
    const out = opts.json ? (line: string) => process.stderr.write(line + '\n') : (line: string) => process.stdout.write(line + '\n');
    const result = await runPipeline({ source: { kind: 'worktree', dir: resolve(dir ?? '.'), allowDirty: Boolean(opts.allowDirty) }, trigger: 'cli', out, signal: abort.signal, noCache: opts.cache === false }, api);
    if (opts.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    else {
      const d = result.durations;
      process.stdout.write(`timings: source ${formatDuration(d.source)}, build ${formatDuration(d.build)}, package ${formatDuration(d.package)}, publish ${formatDuration(d.publish)}, deploy ${formatDuration(d.deploy)}\n`);
    }
  } finally {
    process.off('SIGINT', onSignal);
  }
}
