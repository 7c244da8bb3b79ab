/** Display helpers: plain strings, rendered through text bindings (never as HTML). */

export function ago(ms: number | null | undefined, now = Date.now()): string {
  if (ms === null || ms === undefined) return '—';
  const s = Math.round((now - ms) / 1000);
  if (s < 0) return 'just now';
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function clock(ms: number): string {
  return new Date(ms).toLocaleTimeString(undefined, { hour12: false });
}

export function when(ms: number | null | undefined): string {
  return ms ? new Date(ms).toLocaleString(undefined, { hour12: false }) : '—';
}

export function duration(from: number | null | undefined, to: number | null | undefined, now = Date.now()): string {
  if (!from) return '—';
  const ms = (to ?? now) - from;
  if (ms < 1000) return `${ms}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  return `${Math.floor(ms / 60_000)}m ${Math.round((ms % 60_000) / 1000)}s`;
}

export const short = (sha: string | null | undefined, n = 12): string => (sha ? sha.replace(/^sha256:/, '').slice(0, n) : '—');

export const pct = (x: number | null | undefined): string =>
  x === null || x === undefined ? '—' : `${(x * 100).toFixed(x < 0.01 && x > 0 ? 2 : 1)}%`;

export const num = (x: number | null | undefined, digits = 1): string => (x === null || x === undefined ? '—' : x.toFixed(digits));

export const mb = (x: number | null | undefined): string =>
  x === null || x === undefined ? '—' : x >= 1024 ? `${(x / 1024).toFixed(1)} GiB` : `${x} MiB`;

/** One line summing up an event's payload for the timeline. */
export function summary(kind: string, p: Record<string, unknown>): string {
  const v = (k: string): string => (p[k] === undefined || p[k] === null ? '' : String(p[k]));
  switch (kind) {
    case 'run.created':
      return `run #${v('run')} ${v('trigger')} ${short(v('commit') || undefined)}`.trim();
    case 'run.status':
      return `run #${v('run')}: ${v('from')} → ${v('status')}${v('error') ? ` (${v('error')})` : ''}`;
    case 'rollout.started':
      return `rollout #${v('rollout')} to revision ${v('toRevision')}`;
    case 'rollout.finished':
      return `rollout #${v('rollout')} ${v('status')}${v('reason') ? `: ${v('reason')}` : ''}`;
    case 'rollout.step':
      return `rollout #${v('rollout')} step ${v('step')}: weight ${v('previousWeight')}% → ${v('weight')}%`;
    case 'rollout.analysis':
      return `rollout #${v('rollout')} analysis ${v('verdict')}: ${v('reason')}`;
    case 'deploy.activated':
      return `revision ${v('revision')} serves${v('previous') ? ` (was ${v('previous')})` : ''}`;
    case 'run.steps': {
      const steps = (p.steps as { name: string; status: string }[] | undefined) ?? [];
      const now = steps.find((s) => s.status === 'running') ?? [...steps].reverse().find((s) => s.status !== 'pending');
      return `run #${v('run')}: ${steps.map((s) => `${s.name} ${s.status === 'succeeded' ? '✓' : s.status === 'failed' ? '✗' : s.status === 'running' ? '…' : '·'}`).join(' ')}${now ? ` (${now.name} ${now.status})` : ''}`;
    }
    case 'deploy.revision':
      return `revision ${v('revision')} of ${short(v('commit') || undefined)}${p.dirty ? ' (dirty)' : ''}`;
    case 'deploy.plan': {
      const n = (k: string): number => (Array.isArray(p[k]) ? (p[k] as unknown[]).length : 0);
      const parts = [n('placed') && `${n('placed')} placed`, n('drain') && `${n('drain')} draining`, n('stop') && `${n('stop')} stopped`];
      if (p.activate) parts.push(`revision ${v('activate')} activated`);
      if (p.finish) parts.push(`rollout ${v('finish')}`);
      if (p.unplaced) parts.push(`unplaced: ${v('unplaced')}`);
      return `plan: ${parts.filter(Boolean).join(', ') || 'nothing to do'}`;
    }
    case 'instance.placed':
      return `${v('instance')} (revision ${v('revision')}) placed on ${v('node')}`;
    case 'instance.state':
      return `${v('instance') || v('id')} ${v('from') ? `${v('from')} → ` : ''}${v('state')}`;
    case 'node.status':
      return `${v('node') || v('name')}: ${v('from') ? `${v('from')} → ` : ''}${v('status')}`;
    default: {
      const text = JSON.stringify(p);
      return text.length > 160 ? text.slice(0, 157) + '…' : text;
    }
  }
}
