/**
 * Notifications: which deploy events of the feed (core/events.ts) an operator hears about, and the
 * bodies sent to a generic JSON webhook and to a Slack-compatible incoming webhook. Pure: the
 * worker (control/notifications.ts) reads the facts, signs and sends.
 *
 *   feed event                          notification
 *   rollout.started                     deploy.started   (a rollback's too, with rollback: true)
 *   rollout.finished succeeded          deploy.live      (to an earlier revision: deploy.rolled_back)
 *   rollout.finished failed             deploy.failed    (reason; the previous revision keeps serving)
 *   rollout.command promote[-full]      canary.promoted
 *   rollout.command abort               canary.aborted
 *   autoscale.changed                   autoscale.changed (from, to, reason)
 */
import type { PilotEvent } from './events.js';
import { fail } from './errors.js';

export const NOTIFY_EVENTS = [
  'deploy.started',
  'deploy.live',
  'deploy.failed',
  'deploy.rolled_back',
  'canary.promoted',
  'canary.aborted',
  'autoscale.changed',
] as const;
export type NotifyEvent = (typeof NOTIFY_EVENTS)[number];
/** What an endpoint hears when `--events` is not given: everything but the autoscaler's changes. */
export const DEFAULT_NOTIFY_EVENTS: readonly NotifyEvent[] = NOTIFY_EVENTS.filter((e) => e !== 'autoscale.changed');

export type NotifyKind = 'json' | 'slack';
export const NOTIFY_KINDS: readonly NotifyKind[] = ['json', 'slack'];

/** A list of event names (full, `deploy.live`, or short, `live`; `all`), checked; empty or undefined: the default. */
export function parseNotifyEvents(raw: readonly string[] | undefined): NotifyEvent[] {
  if (raw === undefined || raw.length === 0) return [...DEFAULT_NOTIFY_EVENTS];
  const out = new Set<NotifyEvent>();
  for (const word of raw
    .flatMap((r) => r.split(','))
    .map((w) => w.trim())
    .filter((w) => w !== '')) {
    if (word === 'all') {
      for (const e of NOTIFY_EVENTS) out.add(e);
      continue;
    }
    const hit = NOTIFY_EVENTS.find((e) => e === word || e.split('.')[1] === word);
    if (!hit) throw fail.notifyEventUnknown({ event: word, known: NOTIFY_EVENTS.join(', ') });
    out.add(hit);
  }
  return NOTIFY_EVENTS.filter((e) => out.has(e));
}

/** An endpoint URL checked: http or https only (the operator chooses where; other schemes are refused), no fragment. */
export function checkEndpointUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw fail.notifyUrlInvalid({ problem: 'it is not a URL' });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw fail.notifyUrlInvalid({ problem: `the scheme "${url.protocol.replace(/:$/, '')}" is refused: only http and https are sent to` });
  if (url.hostname === '') throw fail.notifyUrlInvalid({ problem: 'it has no host' });
  if (raw.length > 2048) throw fail.notifyUrlInvalid({ problem: 'it is longer than 2048 characters' });
  return url;
}

/**
 * A URL as it may be shown: scheme, host and port; the path (where Slack keeps its secret), the
 * query and any user:password replaced by `…`.
 */
export function maskUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return '…';
  }
  const hidden = url.username !== '' || url.password !== '' || url.pathname.length > 1 || url.search !== '';
  return `${url.protocol}//${url.host}${hidden ? '/…' : '/'}`;
}

/** What the worker knows about the event's rollout and revision (read from the store). */
export interface NotifyFacts {
  readonly fromRevision?: number | undefined;
  readonly commit?: string | undefined;
  readonly run?: number | undefined;
}

/** One notification, before it is written for an endpoint. */
export interface Notification {
  /** `test`: `pilot notify test`. */
  readonly event: NotifyEvent | 'test';
  readonly app: string;
  /** The feed event it comes from. */
  readonly eventId: number;
  /** Wall-clock ms of the feed event. */
  readonly time: number;
  readonly revision: number | null;
  readonly previousRevision: number | null;
  readonly commit: string | null;
  readonly rollout: number | null;
  readonly run: number | null;
  readonly reason: string | null;
  /** One line for people. */
  readonly summary: string;
  readonly details: Readonly<Record<string, unknown>>;
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);

/** The notification a feed event makes, or undefined when it makes none. */
export function notificationOf(e: PilotEvent, facts: NotifyFacts): Notification | undefined {
  if (e.app === undefined) return undefined;
  const p = e.payload;
  const base = {
    app: e.app,
    eventId: e.id,
    time: e.time,
    revision: num(p.toRevision),
    previousRevision: num(p.fromRevision) ?? facts.fromRevision ?? null,
    commit: facts.commit ?? null,
    rollout: num(p.rollout),
    run: facts.run ?? null,
    reason: null,
    details: {},
  };
  const rev = base.revision === null ? 'a revision' : `revision ${base.revision}`;
  const from = base.previousRevision;
  const rollback = base.revision !== null && from !== null && base.revision < from;
  switch (e.kind) {
    case 'rollout.started':
      return {
        ...base,
        event: 'deploy.started',
        details: { strategy: str(p.strategy) ?? 'blue-green', rollback },
        summary: `${e.app}: ${rollback ? 'rolling back to' : 'deploying'} ${rev}${from === null ? '' : ` (serving revision ${from})`}`,
      };
    case 'rollout.finished': {
      const reason = str(p.reason);
      if (p.status === 'succeeded')
        return rollback
          ? { ...base, event: 'deploy.rolled_back', reason, summary: `${e.app}: rolled back to ${rev} (from revision ${from})` }
          : { ...base, event: 'deploy.live', reason, summary: `${e.app}: ${rev} is live` };
      const serving = from === null ? '' : `; revision ${from} keeps serving`;
      return {
        ...base,
        event: 'deploy.failed',
        reason,
        details: { rolledBackTo: from },
        summary: `${e.app}: deploy of ${rev} failed${serving}${reason ? `: ${reason.split('\n')[0]!}` : ''}`,
      };
    }
    case 'rollout.command': {
      const command = str(p.command);
      if (command === 'abort')
        return {
          ...base,
          event: 'canary.aborted',
          reason: 'aborted by a person (pilot abort)',
          summary: `${e.app}: rollout of ${rev} aborted`,
        };
      if (command === 'promote' || command === 'promote-full')
        return {
          ...base,
          event: 'canary.promoted',
          details: { full: command === 'promote-full' },
          summary: `${e.app}: rollout of ${rev} promoted${command === 'promote-full' ? ' to 100 %' : ' to its next step'}`,
        };
      return undefined;
    }
    case 'autoscale.changed': {
      const to = num(p.to);
      const reason = str(p.reason);
      return {
        ...base,
        revision: null,
        previousRevision: null,
        rollout: null,
        event: 'autoscale.changed',
        reason,
        details: { from: num(p.from), to },
        summary: `${e.app}: autoscaled from ${String(num(p.from))} to ${String(to)} replicas${reason ? ` (${reason})` : ''}`,
      };
    }
    // Not announced: runs (a run's deploy is its rollout), instances, plans, nodes, experiments, canary steps, certificates.
    case 'run.created':
    case 'run.status':
    case 'run.steps':
    case 'rollout.step':
    case 'rollout.analysis':
    case 'instance.placed':
    case 'instance.desired':
    case 'instance.state':
    case 'instance.removed':
    case 'deploy.revision':
    case 'deploy.activated':
    case 'deploy.plan':
    case 'node.registered':
    case 'node.scheduling':
    case 'node.status':
    case 'experiment.started':
    case 'experiment.ended':
    case 'certificate.changed':
      return undefined;
  }
}

/** The notification `pilot notify test` sends: the same shape as a real one, `event: "test"`. */
export function testNotification(app: string, now: number): Notification {
  return {
    event: 'test',
    app,
    eventId: 0,
    time: now,
    revision: null,
    previousRevision: null,
    commit: null,
    rollout: null,
    run: null,
    reason: null,
    summary: `${app}: test notification from Pilot (this endpoint receives the app's deploy events)`,
    details: {},
  };
}

/** Links a receiver can follow, under the control plane's base URL (`PILOT_PUBLIC_URL`, else its API address). */
export function linksOf(n: Notification, base: string): Record<string, string> {
  const app = `${base}/api/v1/apps/${encodeURIComponent(n.app)}`;
  return {
    app,
    ...(n.rollout === null ? {} : { rollout: `${app}/rollouts/${n.rollout}` }),
    ...(n.run === null ? {} : { run: `${base}/api/v1/runs/${n.run}` }),
  };
}

/** The generic webhook's body (documented in README "Notifications"). */
export function jsonBody(n: Notification, base: string): string {
  return JSON.stringify({
    version: 1,
    event: n.event,
    app: n.app,
    time: new Date(n.time).toISOString(),
    summary: n.summary,
    revision: n.revision,
    previousRevision: n.previousRevision,
    commit: n.commit,
    rollout: n.rollout,
    run: n.run,
    reason: n.reason,
    details: n.details,
    links: linksOf(n, base),
    eventId: n.eventId,
  });
}

/** Slack's mrkdwn escaping: &, < and > only (Slack's "Formatting text" rules). */
export function slackEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

const ICON: Record<NotifyEvent | 'test', string> = {
  test: ':wave:',
  'deploy.started': ':rocket:',
  'deploy.live': ':white_check_mark:',
  'deploy.failed': ':x:',
  'deploy.rolled_back': ':leftwards_arrow_with_hook:',
  'canary.promoted': ':arrow_up:',
  'canary.aborted': ':octagonal_sign:',
  'autoscale.changed': ':chart_with_upwards_trend:',
};

/** The body of a Slack incoming webhook: `text` (the notification's fallback) and `blocks`. */
export function slackBody(n: Notification, base: string): string {
  const links = linksOf(n, base);
  const head = `${ICON[n.event]} *${slackEscape(n.summary)}*`;
  const blocks: unknown[] = [{ type: 'section', text: { type: 'mrkdwn', text: head.slice(0, 3000) } }];
  // A reason may hold the failing instance's last lines: a code block keeps them readable.
  if (n.reason && n.event !== 'deploy.started')
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: '```' + slackEscape(n.reason).slice(0, 2900) + '```' } });
  const context = [
    n.commit ? `commit \`${n.commit.slice(0, 12)}\`` : undefined,
    n.rollout === null ? undefined : `<${links.rollout!}|rollout #${n.rollout}>`,
    n.run === null ? undefined : `<${links.run!}|run #${n.run}>`,
    `\`${n.event}\``,
  ].filter((x): x is string => x !== undefined);
  blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: context.join(' · ') }] });
  return JSON.stringify({ text: n.summary, blocks });
}

/** The body for an endpoint of `kind`. */
export function bodyFor(kind: NotifyKind, n: Notification, base: string): string {
  return kind === 'slack' ? slackBody(n, base) : jsonBody(n, base);
}

/** An attempt's outcome, as the worker saw it. */
export type AttemptOutcome =
  | { readonly kind: 'answered'; readonly code: number }
  | { readonly kind: 'timeout' }
  | { readonly kind: 'network'; readonly error: string };

/** delivered; retry (a timeout, a 5xx, a 429, a connection that failed); or given up (any other answer: retrying the same body cannot help). */
export function judgeAttempt(o: AttemptOutcome): 'delivered' | 'retry' | 'refused' {
  if (o.kind !== 'answered') return 'retry';
  if (o.code >= 200 && o.code < 300) return 'delivered';
  return o.code >= 500 || o.code === 429 || o.code === 408 ? 'retry' : 'refused';
}

/** Back-off before attempt `n + 1` after `n` failed ones: base·2^(n−1), capped. */
export function retryDelayMs(n: number, baseMs: number, capMs: number): number {
  return Math.min(capMs, baseMs * 2 ** Math.max(0, n - 1));
}

/** The endpoint kind asked for; none given: slack for a hooks.slack.com URL, else json. */
export function parseNotifyKind(raw: string | undefined, url: URL): NotifyKind {
  if (raw === undefined || raw === '') return url.hostname === 'hooks.slack.com' ? 'slack' : 'json';
  const k = NOTIFY_KINDS.find((x) => x === raw);
  if (!k) throw fail.notifyKindUnknown({ kind: raw });
  return k;
}
