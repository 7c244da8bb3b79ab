/** `pilot runs [APP]`, `pilot logs APP [-f] [--previous] [--instance ID]`, `pilot logs --run N`. */
import { fail } from '../core/errors.js';
import { formatDuration } from '../core/duration.js';
import type { RunRecord } from '../core/types.js';
import { ago, apiClient, output, table, type GlobalOptions } from './context.js';

export async function runs(app: string | undefined, opts: GlobalOptions & { limit?: string }): Promise<void> {
  const q = new URLSearchParams({ limit: opts.limit ?? '20', ...(app ? { app } : {}) });
  const res = await apiClient(opts).call<{ runs: RunRecord[] }>('GET', `/api/v1/runs?${q}`);
  output(opts, res, () =>
    res.runs.length === 0
      ? 'no runs yet'
      : table(
          ['RUN', 'APP', 'STATUS', 'COMMIT', 'REVISION', 'DURATION', 'STARTED', 'ERROR'],
          res.runs.map((r) => [
            `#${r.id}`,
            r.app,
            r.status,
            r.commit ? r.commit.slice(0, 12) + (r.dirty ? '+dirty' : '') : null,
            r.revision,
            r.finishedAt ? formatDuration(r.finishedAt - r.createdAt) : null,
            ago(r.createdAt),
            r.error?.split('\n')[0]?.slice(0, 80),
          ]),
        ),
  );
}

export async function logs(
  app: string | undefined,
  opts: GlobalOptions & { follow?: boolean; tail?: string; run?: string; previous?: boolean; instance?: string },
): Promise<void> {
  const api = apiClient(opts);
  let path: string;
  if (opts.run !== undefined) path = `/api/v1/runs/${encodeURIComponent(opts.run)}/log${opts.follow ? '?follow=1' : ''}`;
  else if (app) {
    const q = new URLSearchParams({ tail: opts.tail ?? '100' });
    if (opts.follow) q.set('follow', '1');
    if (opts.previous) q.set('previous', '1');
    if (opts.instance !== undefined) q.set('instance', opts.instance);
    path = `/api/v1/apps/${encodeURIComponent(app)}/logs?${q}`;
  } else throw fail.logsNeedsTarget();
  const res = await api.stream(path);
  if (!res.body) return;
  if (!opts.json) {
    for await (const chunk of res.body) process.stdout.write(chunk);
    return;
  }
  // --json: one document per line ({"line": …}), as the lines arrive (also with -f).
  const decoder = new TextDecoder();
  let buf = '';
  const emit = (line: string): void => void process.stdout.write(JSON.stringify({ line }) + '\n');
  for await (const chunk of res.body) {
    buf += decoder.decode(chunk, { stream: true });
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    for (const l of lines) emit(l);
  }
  buf += decoder.decode();
  if (buf !== '') emit(buf);
}
