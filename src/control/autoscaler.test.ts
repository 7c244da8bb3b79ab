import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { resolveAppConfig, validateAppConfig, type AppConfigInput } from '../core/app-config.js';
import { LATENCY_LAYOUT, type TrafficSummary } from '../core/traffic-window.js';
import type { SchedulerNode } from '../core/scheduler.js';
import type { RevisionTraffic } from '../router/metrics.js';
import { SqliteStore } from '../store/sqlite-store.js';
import { Autoscaler } from './autoscaler.js';
import type { TrafficSource } from './traffic-routes.js';

const DIGEST = `sha256:${'b'.repeat(64)}`;

/** `requests` over 10 s (figures: requests / 10 req/s). */
const summary = (requests: number): TrafficSummary => ({
  spanMs: 10_000,
  requests,
  status: [0, requests, 0, 0, 0],
  latency: { layout: LATENCY_LAYOUT, count: 0, sumMs: 0, bins: [] },
});

describe('autoscaler loop', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pilot-autoscaler-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let seq = 0;

  async function setUp(yaml: AppConfigInput, opts: { nodes?: SchedulerNode[]; replicas?: number } = {}) {
    const store = new SqliteStore(join(dir, `pilot-${++seq}.db`));
    const now = Date.now();
    const config = resolveAppConfig(validateAppConfig(yaml), 'shop');
    await store.upsertApp('shop', config, now);
    await store.setReplicas('shop', opts.replicas ?? config.replicas, now, config.autoscale ? 'autoscaler' : 'config');
    const rev = await store.createRevision({
      app: 'shop',
      artifact: DIGEST,
      commit: 'c'.repeat(40),
      dirty: false,
      config,
      runId: undefined,
      createdAt: now,
      image: undefined,
      nodeRuntime: undefined,
    });
    await store.setActiveRevision('shop', rev.number, now);
    let rows: RevisionTraffic[] | Error = [];
    const traffic: TrafficSource = async () => {
      if (rows instanceof Error) throw rows;
      return rows;
    };
    const enqueued: string[] = [];
    let clock = 1_000_000;
    const lines: { msg: string }[] = [];
    const scaler = new Autoscaler({
      store,
      reconciler: {
        serial: (fn) => fn(),
        enqueue: (a) => void enqueued.push(a),
        schedulerSnapshot: async () => opts.nodes ?? [],
        revision: (a, n) => store.getRevision(a, n),
        volumeRequest: async () => undefined,
        everyNodeIsolates: async () => false,
        nodeStatus: () => 'ready',
      },
      traffic,
      log: pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string }) }),
      now: () => clock,
    });
    return {
      store,
      scaler,
      enqueued,
      lines,
      setLoad: (rps: number | Error) => {
        rows =
          rps instanceof Error
            ? rps
            : [
                { app: 'shop', revision: 1, summary: summary(rps * 7) },
                { app: 'shop', revision: null, summary: summary(rps * 3) }, // no instance was ready: demand all the same
                { app: 'other', revision: 1, summary: summary(10_000) },
              ];
      },
      setOnly: (r: RevisionTraffic[]) => {
        rows = r;
      },
      advance: (ms: number) => {
        clock += ms;
      },
      app: async () => (await store.getApp('shop'))!,
      events: async () =>
        (await store.readEvents({ after: 0, app: 'shop', limit: 100, kinds: ['autoscale.changed'] })).map((e) => e.payload),
    };
  }

  it("raises the count to the app's req/s over the target, with an event and a reconcile", async () => {
    const node: SchedulerNode = { id: 'a', name: 'a', schedulable: true, instances: [] };
    const t = await setUp({ autoscale: { min: 1, max: 10, targetRps: 50 } }, { nodes: [node] });
    t.setLoad(180);
    await t.scaler.tick();
    const a = await t.app();
    assert.deepEqual([a.replicas, a.replicasSource], [4, 'autoscaler']);
    assert.deepEqual(t.enqueued, ['shop']);
    const [e] = await t.events();
    assert.deepEqual([e?.from, e?.to], [1, 4]);
    assert.match(String(e?.reason), /180 req\/s over 1 instance .*wants 4 instances; up from 1 to 4/);
    const st = t.scaler.status(a)!;
    assert.deepEqual([st.min, st.max, st.target, st.current?.load], [1, 10, { metric: 'rps', value: 50 }, 180]);
    assert.equal(st.lastChange?.to, 4);
    assert.match(st.lastDecision?.reason ?? '', /up from 1 to 4/);
    t.store.close();
  });

  it('holds when the router gives no figures, and logs it once', async () => {
    const t = await setUp({ autoscale: { min: 2, max: 10, targetRps: 50 } });
    t.setLoad(new Error('router down'));
    await t.scaler.tick();
    await t.scaler.tick();
    assert.equal((await t.app()).replicas, 2);
    assert.deepEqual(await t.events(), []);
    assert.equal(t.lines.filter((l) => /no traffic figures/.test(l.msg)).length, 1);
    assert.match(t.scaler.status(await t.app())!.lastDecision!.reason, /no figures for traffic yet: holding 2/);
    t.store.close();
  });

  it('holds when no instance served any request (all crashing): more of them would not help', async () => {
    const node: SchedulerNode = { id: 'a', name: 'a', schedulable: true, instances: [] };
    const t = await setUp({ autoscale: { min: 1, max: 10, targetRps: 5 } }, { nodes: [node] });
    t.setOnly([{ app: 'shop', revision: null, summary: summary(500) }]);
    await t.scaler.tick();
    assert.equal((await t.app()).replicas, 1);
    assert.match(t.scaler.status(await t.app())!.lastDecision!.reason, /no instance served a request in the window .*: holding 1/);
    t.store.close();
  });

  it('is capped by what the fleet can place, and says why', async () => {
    const node = (id: string): SchedulerNode => ({ id, name: id, schedulable: true, cpus: 2, instances: [] });
    const t = await setUp({ autoscale: { min: 1, max: 10, targetRps: 10 }, resources: { cpu: 1 } }, { nodes: [node('a'), node('b')] });
    t.setLoad(200);
    await t.scaler.tick();
    const a = await t.app();
    assert.equal(a.replicas, 4, JSON.stringify(t.scaler.status(a)));
    const st = t.scaler.status(a)!;
    assert.equal(st.lastDecision?.limitedBy, 'capacity');
    assert.match(st.lastDecision?.reason ?? '', /capped at 4: the fleet can place no more \(.*CPU/);
    t.store.close();
  });

  it('scales down only after the scale-down window, a restart counting as a fresh start', async () => {
    const t = await setUp({ autoscale: { min: 1, max: 10, targetRps: 50, scaleDownWindow: '30s' } }, { replicas: 6 });
    t.setLoad(20);
    await t.scaler.tick(); // first sight: 6 counts as recommended now
    assert.equal((await t.app()).replicas, 6);
    t.advance(20_000);
    await t.scaler.tick();
    assert.equal((await t.app()).replicas, 6);
    assert.equal(t.scaler.status(await t.app())!.lastDecision?.limitedBy, 'scale-down-window');
    t.advance(11_000);
    await t.scaler.tick();
    assert.equal((await t.app()).replicas, 1);
    assert.deepEqual(
      (await t.events()).map((e) => [e.from, e.to]),
      [[6, 1]],
    );
    t.store.close();
  });

  it('leaves apps without autoscale alone, and a count that moved since the decision', async () => {
    const t = await setUp({ replicas: 2 });
    t.setLoad(1000);
    await t.scaler.tick();
    assert.equal((await t.app()).replicas, 2);
    assert.equal(t.scaler.status(await t.app()), undefined);
    // The compare-and-set under the decision: a deploy that moved the count wins.
    assert.equal(await t.store.setAutoscaledReplicas('shop', { from: 1, to: 5, reason: 'stale' }, Date.now()), false);
    assert.equal((await t.app()).replicas, 2);
    t.store.close();
  });
});
