/**
 * Follow a rollout until it ends, printing each instance's state change, the last lines of output
 * of an instance that fails, and the output of the release phase; throws if the rollout fails
 * (its reason carries the failing instance's last lines). Woken by the event feed (GET
 * /api/v1/events), polling only against a server without one.
 */
import { fail } from '../core/errors.js';
import type { ApiClient } from '../api/client.js';
import { followEvents } from '../api/sse.js';

/** How many lines of the release phase's output go into the run log. */
const RELEASE_LINES = 200;

export async function followRollout(
  api: ApiClient,
  app: string,
  rolloutId: number,
  opts: { timeoutMs: number; out: (line: string) => void; signal?: AbortSignal; pollMs?: number },
): Promise<void> {
  const seen = new Map<string, string>();
  const tails = new Map<string, string>();
  const releasesShown = new Set<string>();
  const releaseIds = new Set<string>();
  const deadline = performance.now() + opts.timeoutMs;
  const showRelease = async (id: string): Promise<void> => {
    if (releasesShown.has(id)) return;
    releasesShown.add(id);
    const lines = await releaseOutput(api, app, id).catch(() => undefined);
    if (lines === undefined) return;
    opts.out(lines.length === 0 ? 'release phase printed nothing' : `release phase output (last ${RELEASE_LINES} lines at most):`);
    for (const l of lines) opts.out(`  | ${l}`);
  };
  let shownProgress = '';
  /** One read of the rollout, printing what changed; true once it succeeded, throws once it failed. */
  const observe = async (): Promise<boolean> => {
    const r = await api.rollout(app, rolloutId);
    // A stepped rollout (canary, rolling): its weight and analysis verdict as they change.
    const g = r.rollout.progress;
    if (g && r.rollout.status === 'running' && (g.weight > 0 || g.verdict)) {
      const canary = r.rollout.strategy?.type === 'canary';
      const line =
        `${canary ? `canary step ${g.step + 1}/${r.rollout.strategy?.type === 'canary' ? r.rollout.strategy.steps.length : '?'}: ` : ''}` +
        `${g.weight}% of the traffic on revision ${r.rollout.toRevision}` +
        (g.verdict ? `; analysis ${g.verdict.verdict}: ${g.verdict.reason}` : '');
      if (line !== shownProgress) opts.out((shownProgress = line));
    }
    for (const i of r.instances) {
      const release = i.kind === 'release';
      const state = release ? (i.state === 'stopped' ? 'succeeded' : i.state === 'failed' ? 'failed' : 'running') : i.state;
      const text = `${state}${i.port && !release ? ` on ${i.address ? `${i.address}:` : 'port '}${i.port}` : ''}${i.lastError && i.state !== 'ready' ? ` (${i.lastError})` : ''}`;
      if (seen.get(i.id) !== text) {
        seen.set(i.id, text);
        opts.out(release ? `release phase ${i.id}: ${text}` : `instance ${i.id}: ${text}`);
      }
      if (release) releaseIds.add(i.id);
      if (release && (i.state === 'stopped' || i.state === 'failed')) await showRelease(i.id);
      // A crash (or a start that failed) shows what the app said, once per new tail; a failing probe's
      // tail changes as the app logs, so it comes with the rollout's reason instead.
      else if (!release && i.logTail && (i.state === 'backoff' || i.state === 'failed') && tails.get(i.id) !== i.logTail) {
        tails.set(i.id, i.logTail);
        opts.out(`last output of ${i.id}:`);
        for (const l of i.logTail.split('\n')) opts.out(`  | ${l}`);
      }
    }
    // A release instance may be stopped and forgotten before a read saw it end: its kept logs remain.
    if (r.rollout.status !== 'running') {
      for (const id of releaseIds) {
        // Traffic moved only after the release phase exited 0: say so when no answer showed its end.
        if (r.rollout.status === 'succeeded' && !/^(succeeded|failed)/.test(seen.get(id) ?? '')) {
          seen.set(id, 'succeeded');
          opts.out(`release phase ${id}: succeeded`);
        }
        await showRelease(id);
      }
    }
    if (r.rollout.status === 'succeeded') {
      opts.out(`rollout #${rolloutId} succeeded: traffic switched to revision ${r.rollout.toRevision}`);
      return true;
    }
    if (r.rollout.status === 'failed' && /^superseded by /.test(r.rollout.reason ?? '')) {
      // A newer deploy (a later push, another `pilot run`) took over: this one did not fail.
      throw fail.rolloutSuperseded({ rollout: rolloutId, reason: r.rollout.reason ?? 'superseded' });
    }
    if (r.rollout.status === 'failed') {
      const kept = r.activeRevision === null ? 'no revision is serving' : `revision ${r.activeRevision} keeps serving`;
      // The reason's first line, then where it stood, then the app's own words (the reason's other lines).
      const [first, ...rest] = (r.rollout.reason ?? 'unknown reason').split('\n');
      throw fail.rolloutFailed({ rolloutId, first: first ?? '', kept, rest, app });
    }
    return false;
  };

  // Reads are triggered by the event feed (an event of this app's rollouts, instances or revisions,
  // or a (re)connection, after which what was missed is read in one go). A server without the feed
  // (an older Pilot: 404) or a feed that fails for good: read every pollMs, as before.
  let mode = 'events' as 'events' | 'poll';
  let dirty = false;
  let wake: (() => void) | undefined;
  const poke = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const feedStop = new AbortController();
  const onAbort = (): void => poke();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const feed = followEvents(api, {
    app,
    signal: feedStop.signal,
    on: (item) => {
      if (item.type === 'reset' || /^(rollout|instance|deploy)\./.test(item.event.kind)) {
        dirty = true;
        poke();
      }
    },
    connected: () => {
      dirty = true;
      poke();
    },
    // A dropped stream: read at once, as a poll would have. A server that is gone fails that read
    // (the CLI ends with the server's absence, as before the feed), one back again answers it.
    onDrop: () => {
      dirty = true;
      poke();
    },
  }).catch(() => {
    mode = 'poll';
    poke();
  });
  try {
    for (;;) {
      if (opts.signal?.aborted) throw fail.rolloutWaitCancelled();
      if (mode === 'poll' || dirty) {
        dirty = false;
        if (await observe()) return;
      }
      const left = deadline - performance.now();
      if (left < 0) throw fail.rolloutTimeout({ rolloutId, timeoutMs: Math.round(opts.timeoutMs / 1000) });
      await new Promise<void>((res) => {
        const t = setTimeout(done, mode === 'poll' ? (opts.pollMs ?? 150) : left + 10);
        function done(): void {
          clearTimeout(t);
          res();
        }
        wake = done;
      });
    }
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    feedStop.abort();
    await feed;
  }
}

/** The release phase's output lines (without the `[id] ` prefix the logs API adds). */
async function releaseOutput(api: ApiClient, app: string, id: string): Promise<string[]> {
  const res = await api.stream(`/api/v1/apps/${encodeURIComponent(app)}/logs?instance=${encodeURIComponent(id)}&tail=${RELEASE_LINES}`);
  const text = await res.text();
  const prefix = `[${id}] `;
  return text
    .split('\n')
    .filter((l) => l.startsWith(prefix))
    .map((l) => l.slice(prefix.length))
    .filter((l) => !l.startsWith('--- '));
}
