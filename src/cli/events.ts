/** `pilot events [-f] [APP]`: what happened (runs, rollouts, instances, revisions, nodes), then what happens. */
import { type PilotError, isPilotError, fail } from '../core/errors.js';
import type { PilotEvent } from '../core/events.js';
import { followEvents } from '../api/sse.js';
import { apiClient, type GlobalOptions } from './context.js';

/** One line per event: time, id, kind, app, and what the payload says. */
export function describeEvent(e: PilotEvent): string {
  const p = e.payload as Record<string, string | number | null | undefined | { name: string; status: string }[]>;
  const t = new Date(e.time).toISOString().slice(11, 23);
  const what = ((): string => {
    switch (e.kind) {
      case 'run.created':
        return `run #${p.run} created (${p.trigger}${p.commit ? ` ${String(p.commit).slice(0, 12)}` : ''}, ${p.status})`;
      case 'run.status':
        return `run #${p.run} ${p.status}${p.error ? `: ${p.error}` : ''}`;
      case 'run.steps':
        return `run #${p.run} steps ${(p.steps as { name: string; status: string }[]).map((s) => `${s.name}=${s.status}`).join(' ')}`;
      case 'rollout.started':
        return `rollout #${p.rollout} started: revision ${p.fromRevision ?? '-'} → ${p.toRevision}`;
      case 'rollout.finished':
        return `rollout #${p.rollout} ${p.status}${p.reason ? `: ${String(p.reason).split('\n')[0]}` : ''}`;
      case 'rollout.step':
        return `rollout #${p.rollout} step ${Number(p.step) + 1}: revision ${p.toRevision} at ${p.weight}% (was ${p.previousWeight}%)`;
      case 'rollout.analysis':
        return `rollout #${p.rollout} analysis ${p.verdict}: ${p.reason}`;
      case 'rollout.command':
        return `rollout #${p.rollout} ${p.command} requested`;
      case 'instance.placed':
        return `instance ${p.instance} placed on ${p.node} (revision ${p.revision}${p.kind === 'release' ? ', release phase' : ''})`;
      case 'instance.desired':
        return `instance ${p.instance} desired ${p.desired}`;
      case 'instance.state':
        return `instance ${p.instance} ${p.state}${p.port ? ` on ${p.address ? `${p.address}:` : 'port '}${p.port}` : ''}${p.lastError && p.state !== 'ready' ? ` (${p.lastError})` : ''}`;
      case 'instance.removed':
        return `instance ${p.instance} removed`;
      case 'deploy.revision':
        return `revision ${p.revision} recorded (${String(p.commit).slice(0, 12)}${p.dirty ? '+dirty' : ''})`;
      case 'deploy.activated':
        return `revision ${p.revision ?? '-'} serves (was ${p.previous ?? '-'})`;
      case 'deploy.plan':
        return `plan committed: ${planSummary(p)}`;
      case 'node.registered':
        return `node ${p.node} registered at ${p.address}`;
      case 'node.scheduling':
        return `node ${p.node} ${p.scheduling}`;
      case 'node.status':
        return `node ${p.node} ${p.status} (was ${p.from})`;
      case 'experiment.started':
        return `experiment #${p.experiment} started: a = revision ${p.control}, b = revision ${p.variant} at ${p.split}% by ${p.by}`;
      case 'experiment.ended':
        return `experiment #${p.experiment} ended${p.kept ? `, kept ${p.kept} (revision ${p.keptRevision})` : ''}${p.reason ? `: ${p.reason}` : ''}`;
      case 'autoscale.changed':
        return `replicas ${p.from} → ${p.to}: ${p.reason}`;
      case 'certificate.changed':
        return `certificate of ${p.host} ${p.change}`;
    }
  })();
  return `${t}  #${e.id}  ${e.kind.padEnd(17)} ${(e.app ?? '-').padEnd(12)} ${what}`;
}

/** `2 placed, 1 drain, 1 stop, activate 3, rollout succeeded, 1 unplaced (no room)` */
function planSummary(p: Record<string, unknown>): string {
  const n = (k: string): number => (Array.isArray(p[k]) ? (p[k] as unknown[]).length : 0);
  const parts = [
    n('placed') > 0 && `${n('placed')} placed`,
    n('drain') > 0 && `${n('drain')} drain`,
    n('stop') > 0 && `${n('stop')} stop`,
    p.activate !== null && p.activate !== undefined && `activate ${String(p.activate)}`,
    typeof p.weight === 'number' && `weight ${p.weight}%`,
    typeof p.verdict === 'string' && `analysis ${p.verdict}`,
    typeof p.finish === 'string' && `rollout ${p.finish}`,
    typeof p.unplaced === 'object' &&
      p.unplaced !== null &&
      `${(p.unplaced as { count: number }).count} unplaced (${(p.unplaced as { reason: string }).reason})`,
  ].filter((x): x is string => typeof x === 'string');
  return parts.length > 0 ? parts.join(', ') : 'nothing to do';
}

export async function events(app: string | undefined, opts: GlobalOptions & { follow?: boolean; limit?: string }): Promise<void> {
  const api = apiClient(opts);
  const q = new URLSearchParams({ limit: opts.limit ?? '50', ...(app ? { app } : {}) });
  let recent: { events: PilotEvent[]; lastId: number };
  try {
    recent = await api.call<{ events: PilotEvent[]; lastId: number }>('GET', `/api/v1/events?${q}`);
  } catch (err) {
    if (isPilotError(err) && err.code === 'not_found') throw noFeed(api.baseUrl);
    throw err;
  }
  const print = (e: PilotEvent): void => {
    process.stdout.write(opts.json ? `${JSON.stringify(e)}\n` : `${describeEvent(e)}\n`);
  };
  if (!opts.follow) {
    if (opts.json) process.stdout.write(JSON.stringify(recent, null, 2) + '\n');
    else process.stdout.write(recent.events.length === 0 ? 'no events yet\n' : recent.events.map(describeEvent).join('\n') + '\n');
    return;
  }
  for (const e of recent.events) print(e);
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let dropped = false;
  try {
    await followEvents(api, {
      app,
      after: recent.lastId,
      signal: stop.signal,
      on: (item) => {
        if (item.type === 'event') print(item.event);
        else process.stdout.write(opts.json ? `${JSON.stringify({ reset: item.reset })}\n` : `--- ${item.reset.message}\n`);
      },
      connected: () => {
        if (dropped) process.stderr.write('reconnected: resuming after the last event printed\n');
        dropped = false;
      },
      onDrop: (err) => {
        if (!dropped) process.stderr.write(`event stream dropped (${(err as Error).message}); reconnecting…\n`);
        dropped = true;
      },
    });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function noFeed(server: string): PilotError {
  return fail.serverWithoutEvents({ server });
}
