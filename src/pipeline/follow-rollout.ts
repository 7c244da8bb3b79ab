/** Follow a rollout until it ends, printing each instance's state change; throws if it fails. */
import { PilotError } from '../core/errors.js';
import type { ApiClient } from '../control/api-client.js';

export async function followRollout(
  api: ApiClient, app: string, rolloutId: number,
  opts: { timeoutMs: number; out: (line: string) => void; signal?: AbortSignal; pollMs?: number },
): Promise<void> {
  const seen = new Map<string, string>();
  const deadline = performance.now() + opts.timeoutMs;
  for (;;) {
    if (opts.signal?.aborted) throw new PilotError('deploy_failed', 'cancelled while waiting for the rollout');
    const r = await api.rollout(app, rolloutId);
    for (const i of r.instances) {
      const text = `${i.state}${i.port ? ` on port ${i.port}` : ''}${i.lastError && i.state !== 'ready' ? ` (${i.lastError})` : ''}`;
      if (seen.get(i.id) !== text) {
        seen.set(i.id, text);
        opts.out(`instance ${i.id}: ${text}`);
      }
    }
    if (r.rollout.status === 'succeeded') {
      opts.out(`rollout #${rolloutId} succeeded: traffic switched to revision ${r.rollout.toRevision}`);
      return;
    }
    if (r.rollout.status === 'failed') {
      const kept = r.activeRevision === null ? 'no revision is serving' : `revision ${r.activeRevision} keeps serving`;
      throw new PilotError('deploy_failed', `rollout #${rolloutId} failed: ${r.rollout.reason ?? 'unknown reason'}; ${kept}`, {
        hint: 'See the app\'s output with `pilot logs APP`; fix and run again.',
      });
    }
    if (performance.now() > deadline) {
      throw new PilotError('deploy_failed', `rollout #${rolloutId} still running after ${Math.round(opts.timeoutMs / 1000)}s`);
    }
    await new Promise((res) => setTimeout(res, opts.pollMs ?? 150));
  }
}
