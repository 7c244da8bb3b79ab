import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../store/memory-store.js';
import type { NodeRecord } from '../store/store.js';
import { FollowerNodeView } from './follower-nodes.js';

const node = (id: string, name: string): NodeRecord => ({
  id,
  name,
  address: '127.0.0.2',
  apiUrl: 'http://127.0.0.2:1',
  credentialHash: `h-${id}`,
  agentToken: 't',
  registeredAt: 1,
  lastSeenAt: 1,
  scheduling: 'eligible',
  cpus: undefined,
  memoryMb: undefined,
  labels: {},
  runtimes: {},
});

const statusEvent = (payload: Record<string, unknown>) => ({ kind: 'node.status' as const, app: undefined, time: 1, payload });

describe("a follower's view of node health (the leader's node.status events)", () => {
  it('counts a node the leader said nothing about as ready, whoever its agent syncs with', async () => {
    const store = new MemoryStore();
    await store.upsertNode(node('id-1', 'n1'));
    const view = new FollowerNodeView(store, () => undefined);
    await view.start();
    assert.equal(view.status('id-1'), 'ready');
    // What it hears itself does not change that: a silent agent is the leader's to judge.
    view.heardFrom();
    view.pollOpened();
    view.pollClosed();
    assert.equal(view.status('id-1'), 'ready');
    view.stop();
  });

  it('reads the statuses recorded before it started (the latest per node; older events by node name), then follows new ones', async () => {
    const store = new MemoryStore();
    await store.upsertNode(node('id-1', 'n1'));
    await store.upsertNode(node('id-2', 'n2'));
    await store.upsertNode(node('id-3', 'n3'));
    await store.appendEvent(statusEvent({ node: 'n1', status: 'suspect', from: 'ready' })); // before events carried the id
    await store.appendEvent(statusEvent({ node: 'n1', status: 'down', from: 'suspect' }));
    await store.appendEvent(statusEvent({ node: 'n2', nodeId: 'id-2', status: 'down', from: 'ready' }));
    await store.appendEvent(statusEvent({ node: 'n2', nodeId: 'id-2', status: 'ready', from: 'down' }));
    await store.appendEvent(statusEvent({ node: 'n3', nodeId: 'id-3', status: 'gone', from: 'ready' })); // not a status: ignored
    const changed: string[] = [];
    const view = new FollowerNodeView(store, (id) => changed.push(id));
    await view.start();
    assert.deepEqual(
      ['id-1', 'id-2', 'id-3'].map((id) => view.status(id)),
      ['down', 'ready', 'ready'],
    );
    assert.deepEqual(changed, [], 'what it read at start is not news');
    await store.appendEvent(statusEvent({ node: 'n2', nodeId: 'id-2', status: 'suspect', from: 'ready' }));
    await store.appendEvent(statusEvent({ node: 'n2', nodeId: 'id-2', status: 'suspect', from: 'suspect' }));
    assert.equal(view.status('id-2'), 'suspect');
    assert.deepEqual(changed, ['id-2'], 'one change, told once');
    view.stop();
    await store.appendEvent(statusEvent({ node: 'n2', nodeId: 'id-2', status: 'down', from: 'suspect' }));
    assert.equal(view.status('id-2'), 'suspect', 'stopped: it follows no more');
  });
});
