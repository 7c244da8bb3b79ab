/**
 * The notification part of the Store contract (store-contract.ts registers it for every store):
 * endpoints per app, deliveries written once per (endpoint, feed event) with the cursor in the same
 * write, due order, attempts recorded in order, what a removed endpoint or app leaves, and that it
 * all survives a reopen (a restarted control plane resumes its pending deliveries).
 */
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveAppConfig } from '../core/app-config.js';
import type { NotifyEndpointRecord, Store } from './store.js';

/** What this part of the contract needs of store-contract.ts's StoreHarness (declared here: no import cycle). */
interface StoreHarness {
  readonly store: Store;
  reopen(): Store | Promise<Store>;
  openBackup(file: string): Store | Promise<Store>;
  cleanup(): void | Promise<void>;
}

const endpoint = (app: string, over: Partial<NotifyEndpointRecord> = {}): Omit<NotifyEndpointRecord, 'id'> => ({
  app,
  kind: 'json',
  urlSealed: 'v1:sealed',
  urlMasked: 'https://hooks.example/…',
  secretSealed: 'v1:secret',
  events: ['deploy.started', 'deploy.live'],
  afterEvent: 7,
  createdAt: 1,
  ...over,
});

export function storeNotifyContract(name: string, makeStore: () => Promise<StoreHarness>): void {
  async function setup(
    t: TestContext,
  ): Promise<{ s: Store; reopen: () => Promise<Store>; openBackup: (f: string) => Promise<Store>; backupFile: string }> {
    const h = await makeStore();
    const opened: Store[] = [h.store];
    const dir = mkdtempSync(join(tmpdir(), 'pilot-contract-notify-'));
    t.after(async () => {
      for (const s of opened.reverse()) s.close();
      await h.cleanup();
      rmSync(dir, { recursive: true, force: true });
    });
    const track = async (p: Store | Promise<Store>): Promise<Store> => {
      const s = await p;
      opened.push(s);
      return s;
    };
    return { s: h.store, reopen: () => track(h.reopen()), openBackup: (f) => track(h.openBackup(f)), backupFile: join(dir, 'backup') };
  }

  describe(`store contract: ${name}: notifications`, () => {
    it('keeps endpoints per app (oldest first, sealed values byte for byte); removing one fails its pending deliveries', async (t) => {
      const { s, reopen } = await setup(t);
      const a = await s.addNotifyEndpoint(endpoint('shop', { urlSealed: 'v1:ä"\';\n' }));
      const b = await s.addNotifyEndpoint(endpoint('shop', { kind: 'slack', secretSealed: undefined, events: ['deploy.failed'] }));
      await s.addNotifyEndpoint(endpoint('blog'));
      assert.ok(b.id > a.id);
      assert.deepEqual(
        (await s.listNotifyEndpoints('shop')).map((e) => [e.id, e.kind, e.urlSealed, e.secretSealed, e.events, e.afterEvent]),
        [
          [a.id, 'json', 'v1:ä"\';\n', 'v1:secret', ['deploy.started', 'deploy.live'], 7],
          [b.id, 'slack', 'v1:sealed', undefined, ['deploy.failed'], 7],
        ],
      );
      assert.equal((await s.listNotifyEndpoints()).length, 3);
      const [d] = await s.enqueueNotifications([{ endpointId: b.id, app: 'shop', event: 'deploy.failed', eventId: 9, body: '{}' }], 9, 5);
      assert.equal(await s.deleteNotifyEndpoint('blog', b.id, 6), false, 'another app cannot remove it');
      assert.equal(await s.deleteNotifyEndpoint('shop', b.id, 6), true);
      assert.equal(await s.deleteNotifyEndpoint('shop', b.id, 6), false);
      const again = await reopen();
      assert.deepEqual(
        (await again.listNotifyEndpoints('shop')).map((e) => e.id),
        [a.id],
      );
      assert.equal((await again.listNotifyDeliveries('shop', 10)).find((x) => x.id === d!.id)?.status, 'failed');
      assert.deepEqual(await again.dueNotifications(100, 10), []);
    });

    it('writes each (endpoint, feed event) once, moves the cursor with it, and gives due deliveries soonest first', async (t) => {
      const { s, reopen } = await setup(t);
      const e = await s.addNotifyEndpoint(endpoint('shop'));
      assert.equal(await s.notifyCursor(), undefined);
      const body = '{"event":"deploy.started","reason":"quote \\" newline \\n emoji 🚀"}';
      const first = await s.enqueueNotifications(
        [
          { endpointId: e.id, app: 'shop', event: 'deploy.started', eventId: 10, body },
          { endpointId: e.id, app: 'shop', event: 'deploy.live', eventId: 12, body: '{}' },
        ],
        12,
        100,
      );
      assert.equal(first.length, 2);
      assert.equal(await s.notifyCursor(), 12);
      // The same feed event again (a pass repeated after a crash) writes nothing; a test delivery (no event) always does.
      const second = await s.enqueueNotifications(
        [
          { endpointId: e.id, app: 'shop', event: 'deploy.started', eventId: 10, body },
          { endpointId: e.id, app: 'shop', event: 'test', eventId: undefined, body: '{}' },
          { endpointId: e.id, app: 'shop', event: 'test', eventId: undefined, body: '{}' },
        ],
        undefined,
        150,
      );
      assert.deepEqual(
        second.map((d) => d.event),
        ['test', 'test'],
      );
      assert.equal(await s.notifyCursor(), 12, 'no cursor given: unchanged');
      await s.enqueueNotifications([], 11, 160);
      assert.equal(await s.notifyCursor(), 12, 'the cursor never goes back');
      assert.equal(await s.nextNotificationDue(), 100);
      await s.recordNotifyAttempt(
        first[0]!.id,
        { n: 1, at: 101, code: 503, error: undefined, ms: 5 },
        { status: 'pending', nextAttemptAt: 200 },
      );
      assert.deepEqual(
        (await s.dueNotifications(150, 10)).map((d) => d.id),
        [first[1]!.id, second[0]!.id, second[1]!.id],
      );
      assert.deepEqual(
        (await s.dueNotifications(150, 1)).map((d) => d.id),
        [first[1]!.id],
      );
      const again = await reopen();
      const due = await again.dueNotifications(1000, 10);
      assert.deepEqual(
        due.map((d) => d.id),
        [first[1]!.id, second[0]!.id, second[1]!.id, first[0]!.id],
      );
      assert.equal(due[3]!.body, body, 'the body byte for byte');
      assert.equal(due[3]!.attempts, 1);
      await again.recordNotifyAttempt(
        first[0]!.id,
        { n: 2, at: 201, code: undefined, error: 'timed out after 5000 ms', ms: 5000 },
        { status: 'failed', nextAttemptAt: 201 },
      );
      const [newest, ...rest] = await again.listNotifyDeliveries('shop', 10);
      assert.equal(newest!.id, second[1]!.id, 'newest first');
      const failed = rest.find((d) => d.id === first[0]!.id)!;
      assert.equal(failed.status, 'failed');
      assert.deepEqual(
        failed.log.map((a) => [a.n, a.at, a.code, a.error, a.ms]),
        [
          [1, 101, 503, undefined, 5],
          [2, 201, undefined, 'timed out after 5000 ms', 5000],
        ],
      );
      assert.equal((await again.listNotifyDeliveries('shop', 2)).length, 2);
      assert.deepEqual(await again.listNotifyDeliveries('blog', 10), []);
    });

    it('a backup carries endpoints, deliveries with their attempts, and the cursor', async (t) => {
      const { s, openBackup, backupFile } = await setup(t);
      const e = await s.addNotifyEndpoint(endpoint('shop', { secretSealed: undefined }));
      const [d] = await s.enqueueNotifications(
        [{ endpointId: e.id, app: 'shop', event: 'deploy.live', eventId: 3, body: '{"a":1}' }],
        3,
        10,
      );
      await s.enqueueNotifications([{ endpointId: e.id, app: 'shop', event: 'test', eventId: undefined, body: '{}' }], undefined, 11);
      await s.recordNotifyAttempt(
        d!.id,
        { n: 1, at: 12, code: undefined, error: 'timed out', ms: 5 },
        { status: 'pending', nextAttemptAt: 20 },
      );
      await s.backup(backupFile);
      const b = await openBackup(backupFile);
      assert.deepEqual(await b.listNotifyEndpoints(), await s.listNotifyEndpoints());
      assert.deepEqual(await b.listNotifyDeliveries('shop', 10), await s.listNotifyDeliveries('shop', 10));
      assert.equal(await b.notifyCursor(), 3);
      assert.equal(await b.nextNotificationDue(), 11);
      // Ids keep growing after a restore.
      const e2 = await b.addNotifyEndpoint(endpoint('shop'));
      assert.ok(e2.id > e.id);
    });

    it("drops an app's endpoints when the app is removed (a new app of the name starts with none)", async (t) => {
      const { s } = await setup(t);
      await s.upsertApp('shop', resolveAppConfig({}, 'shop'), 1);
      const e = await s.addNotifyEndpoint(endpoint('shop'));
      const kept = await s.addNotifyEndpoint(endpoint('blog'));
      assert.equal(await s.removeApp('shop', 2), true);
      assert.deepEqual(
        (await s.listNotifyEndpoints()).map((x) => x.id),
        [kept.id],
      );
      assert.deepEqual(await s.listNotifyEndpoints('shop'), []);
      assert.equal(await s.deleteNotifyEndpoint('shop', e.id, 3), false);
    });
  });
}
