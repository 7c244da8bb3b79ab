import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { instanceView } from './instance-view.js';

describe('instanceView', () => {
  it('shows an instance of a down node as lost, never ready', () => {
    assert.equal(instanceView({ state: 'ready', desired: 'run' }, 'down'), 'lost');
    assert.equal(instanceView({ state: 'ready', desired: 'run' }, undefined), 'lost');
  });
  it('shows an instance being drained or stopped as stopping, even if it last said ready', () => {
    assert.equal(instanceView({ state: 'ready', desired: 'drain' }, 'ready'), 'stopping');
    assert.equal(instanceView({ state: 'ready', desired: 'stop' }, 'suspect'), 'stopping');
    assert.equal(instanceView({ state: 'stopped', desired: 'stop' }, 'ready'), 'stopped');
  });
  it('keeps the reported state of a wanted instance on a live or suspect node', () => {
    assert.equal(instanceView({ state: 'ready', desired: 'run' }, 'ready'), 'ready');
    assert.equal(instanceView({ state: 'starting', desired: 'run' }, 'suspect'), 'starting');
  });
});
