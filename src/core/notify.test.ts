import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { PilotEvent } from './events.js';
import { isPilotError } from './errors.js';
import {
  NOTIFY_EVENTS,
  checkEndpointUrl,
  jsonBody,
  judgeAttempt,
  maskUrl,
  notificationOf,
  parseNotifyEvents,
  parseNotifyKind,
  retryDelayMs,
  slackBody,
  slackEscape,
} from './notify.js';

const ev = (kind: PilotEvent['kind'], payload: Record<string, unknown>, app: string | undefined = 'shop'): PilotEvent => ({
  id: 42,
  kind,
  app,
  time: Date.UTC(2026, 0, 2, 3, 4, 5),
  payload,
});

function refusedWith(f: () => unknown, code: string, re: RegExp): void {
  assert.throws(f, (e: unknown) => isPilotError(e) && e.code === code && re.test(e.message));
}

describe('notify: endpoints', () => {
  it('accepts http and https URLs and refuses every other scheme, saying so', () => {
    assert.equal(checkEndpointUrl('https://hooks.slack.com/services/T/B/x').hostname, 'hooks.slack.com');
    assert.equal(checkEndpointUrl('http://127.0.0.1:9/hook').port, '9');
    for (const bad of [
      'file:///etc/passwd',
      'javascript:alert(1)',
      'ftp://x.example/a',
      'gopher://127.0.0.1:25/',
      'data:text/plain,hi',
      'unix:/var/run/docker.sock',
    ])
      refusedWith(() => checkEndpointUrl(bad), 'invalid_notify_endpoint', /scheme .* is refused: only http and https/);
    for (const bad of ['', 'not a url', '//no-scheme.example/x', 'http://'])
      refusedWith(() => checkEndpointUrl(bad), 'invalid_notify_endpoint', /not a URL|no host/);
    refusedWith(() => checkEndpointUrl(`https://a.example/${'x'.repeat(3000)}`), 'invalid_notify_endpoint', /longer than 2048/);
  });

  it('never shows the secret part of a URL: path, query, user and password', () => {
    assert.equal(maskUrl('https://hooks.slack.com/services/T000/B000/XXXXSECRET'), 'https://hooks.slack.com/…');
    assert.equal(maskUrl('https://user:pa55@example.com/'), 'https://example.com/…');
    assert.equal(maskUrl('http://127.0.0.1:8080/?token=abc'), 'http://127.0.0.1:8080/…');
    assert.equal(maskUrl('http://receiver.example'), 'http://receiver.example/');
    assert.equal(maskUrl('%%%'), '…');
    for (const u of ['https://hooks.slack.com/services/T000/B000/XXXXSECRET', 'https://u:pa55@e.example/p?q=SECRET'])
      assert.ok(!/SECRET|pa55/.test(maskUrl(u)));
  });

  it('reads event lists in full or short form, and refuses unknown ones with the list', () => {
    assert.deepEqual(
      parseNotifyEvents(undefined),
      NOTIFY_EVENTS.filter((e) => e !== 'autoscale.changed'),
    );
    assert.deepEqual(parseNotifyEvents(['live,failed', ' started ']), ['deploy.started', 'deploy.live', 'deploy.failed']);
    assert.deepEqual(parseNotifyEvents(['all']), [...NOTIFY_EVENTS]);
    assert.deepEqual(parseNotifyEvents(['canary.aborted', 'rolled_back']), ['deploy.rolled_back', 'canary.aborted']);
    refusedWith(() => parseNotifyEvents(['deploy.exploded']), 'invalid_notify_endpoint', /"deploy.exploded".*known: deploy.started/);
    refusedWith(() => parseNotifyEvents(['<script>']), 'invalid_notify_endpoint', /unknown notification event/);
  });

  it('guesses slack for hooks.slack.com and json elsewhere; refuses other kinds', () => {
    assert.equal(parseNotifyKind(undefined, new URL('https://hooks.slack.com/services/x')), 'slack');
    assert.equal(parseNotifyKind(undefined, new URL('https://ci.example/hook')), 'json');
    assert.equal(parseNotifyKind('slack', new URL('https://mattermost.example/hooks/x')), 'slack');
    refusedWith(() => parseNotifyKind('teams', new URL('https://x.example')), 'invalid_notify_endpoint', /"teams"/);
  });
});

describe('notify: which events notify', () => {
  it('maps rollouts, commands and autoscaling to notifications, and nothing else', () => {
    const started = notificationOf(ev('rollout.started', { rollout: 7, fromRevision: 2, toRevision: 3, strategy: 'canary' }), {
      commit: 'c'.repeat(40),
    });
    assert.equal(started?.event, 'deploy.started');
    assert.equal(started?.summary, 'shop: deploying revision 3 (serving revision 2)');
    assert.deepEqual(started?.details, { strategy: 'canary', rollback: false });
    const live = notificationOf(ev('rollout.finished', { rollout: 7, toRevision: 3, status: 'succeeded', reason: null }), {
      fromRevision: 2,
    });
    assert.deepEqual([live?.event, live?.previousRevision], ['deploy.live', 2]);
    const failed = notificationOf(
      ev('rollout.finished', { rollout: 7, toRevision: 3, status: 'failed', reason: 'crashed 3 times\n  last output of x:\n    FATAL' }),
      {
        fromRevision: 2,
      },
    );
    assert.equal(failed?.event, 'deploy.failed');
    assert.equal(failed?.summary, 'shop: deploy of revision 3 failed; revision 2 keeps serving: crashed 3 times');
    assert.match(failed?.reason ?? '', /FATAL/);
    const back = notificationOf(ev('rollout.finished', { rollout: 8, toRevision: 1, status: 'succeeded', reason: null }), {
      fromRevision: 3,
    });
    assert.equal(back?.event, 'deploy.rolled_back');
    const backStart = notificationOf(ev('rollout.started', { rollout: 8, fromRevision: 3, toRevision: 1 }), {});
    assert.deepEqual([backStart?.event, backStart?.details.rollback], ['deploy.started', true]);
    assert.equal(notificationOf(ev('rollout.command', { rollout: 7, toRevision: 3, command: 'abort' }), {})?.event, 'canary.aborted');
    assert.equal(
      notificationOf(ev('rollout.command', { rollout: 7, toRevision: 3, command: 'promote-full' }), {})?.event,
      'canary.promoted',
    );
    const scaled = notificationOf(ev('autoscale.changed', { from: 2, to: 5, reason: 'load 180 rps' }), {});
    assert.deepEqual([scaled?.event, scaled?.details], ['autoscale.changed', { from: 2, to: 5 }]);
    for (const kind of ['run.created', 'instance.state', 'deploy.plan', 'rollout.step', 'node.status'] as const)
      assert.equal(notificationOf(ev(kind, {}), {}), undefined, kind);
    assert.equal(notificationOf({ ...ev('rollout.started', { toRevision: 1 }), app: undefined }, {}), undefined, 'no app: nothing');
    assert.equal(notificationOf(ev('rollout.command', { command: 'shrug' }), {}), undefined);
  });
});

describe('notify: bodies', () => {
  const hostile = notificationOf(
    ev('rollout.finished', {
      rollout: 1,
      toRevision: 2,
      status: 'failed',
      reason: 'boom <!channel> & <https://evil.example|click> ```\n"quotes" \u0000 🚀',
    }),
    { fromRevision: 1, commit: 'f'.repeat(40), run: 12 },
  )!;

  it('the JSON body has the documented fields, and stays valid JSON whatever the reason holds', () => {
    const b = JSON.parse(jsonBody(hostile, 'https://pilot.example')) as Record<string, unknown>;
    assert.deepEqual(Object.keys(b), [
      'version',
      'event',
      'app',
      'time',
      'summary',
      'revision',
      'previousRevision',
      'commit',
      'rollout',
      'run',
      'reason',
      'details',
      'links',
      'eventId',
    ]);
    assert.equal(b.time, '2026-01-02T03:04:05.000Z');
    assert.equal(b.reason, hostile.reason);
    assert.deepEqual(b.links, {
      app: 'https://pilot.example/api/v1/apps/shop',
      rollout: 'https://pilot.example/api/v1/apps/shop/rollouts/1',
      run: 'https://pilot.example/api/v1/runs/12',
    });
  });

  it('the Slack body has text and blocks, with Slack control sequences escaped (no @channel, no forged links)', () => {
    const b = JSON.parse(slackBody(hostile, 'https://pilot.example')) as {
      text: string;
      blocks: { type: string; text?: { text: string }; elements?: { text: string }[] }[];
    };
    assert.match(b.text, /deploy of revision 2 failed/);
    assert.deepEqual(
      b.blocks.map((x) => x.type),
      ['section', 'section', 'context'],
    );
    const reason = b.blocks[1]!.text!.text;
    assert.ok(!reason.includes('<!channel>') && reason.includes('&lt;!channel&gt;'));
    assert.ok(!reason.includes('<https://evil.example'));
    assert.match(b.blocks[2]!.elements![0]!.text, /<https:\/\/pilot\.example\/api\/v1\/apps\/shop\/rollouts\/1\|rollout #1>/);
    assert.equal(slackEscape('a & <b>'), 'a &amp; &lt;b&gt;');
    const long = notificationOf(ev('rollout.finished', { rollout: 1, toRevision: 2, status: 'failed', reason: 'x'.repeat(10_000) }), {})!;
    for (const blk of (JSON.parse(slackBody(long, 'http://p')) as { blocks: { text?: { text: string } }[] }).blocks)
      assert.ok((blk.text?.text.length ?? 0) <= 3000, "Slack's 3000-character limit per section");
  });
});

describe('notify: retries', () => {
  it('retries timeouts, network errors, 5xx, 408 and 429; delivers on 2xx; gives up on other answers', () => {
    assert.equal(judgeAttempt({ kind: 'answered', code: 204 }), 'delivered');
    for (const code of [500, 502, 503, 408, 429]) assert.equal(judgeAttempt({ kind: 'answered', code }), 'retry', String(code));
    for (const code of [301, 400, 401, 403, 404, 410]) assert.equal(judgeAttempt({ kind: 'answered', code }), 'refused', String(code));
    assert.equal(judgeAttempt({ kind: 'timeout' }), 'retry');
    assert.equal(judgeAttempt({ kind: 'network', error: 'ECONNREFUSED' }), 'retry');
  });

  it('backs off exponentially up to the cap', () => {
    assert.deepEqual(
      [1, 2, 3, 4, 10, 100].map((n) => retryDelayMs(n, 1000, 30_000)),
      [1000, 2000, 4000, 8000, 30_000, 30_000],
    );
  });
});
