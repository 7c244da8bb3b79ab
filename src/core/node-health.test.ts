import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { nodeStatus } from './node-health.js';

describe('node health', () => {
  it('goes ready → suspect → down as the agent stays silent', () => {
    const at = (ms: number, answering?: boolean) => nodeStatus({ sinceAgentOkMs: ms, watchedForMs: 60_000, instancesAnswering: answering });
    assert.equal(at(100), 'ready');
    assert.equal(at(1000), 'suspect');
    assert.equal(at(2000), 'down');
    assert.equal(at(2000, false), 'down');
  });

  it('keeps a node whose apps still answer suspect, never down (agent died, apps live)', () => {
    assert.equal(nodeStatus({ sinceAgentOkMs: 60_000, watchedForMs: 60_000, instancesAnswering: true }), 'suspect');
  });

  it('keeps a node never heard from since start-up suspect for the start-up grace, then down if silent', () => {
    assert.equal(nodeStatus({ sinceAgentOkMs: undefined, watchedForMs: 200, instancesAnswering: undefined }), 'suspect');
    assert.equal(
      nodeStatus({ sinceAgentOkMs: undefined, watchedForMs: 9000, instancesAnswering: false }),
      'suspect',
      'not down while the agent may not have reported yet',
    );
    assert.equal(nodeStatus({ sinceAgentOkMs: undefined, watchedForMs: 15_000, instancesAnswering: undefined }), 'down');
    assert.equal(
      nodeStatus({ sinceAgentOkMs: 100, watchedForMs: 200, instancesAnswering: undefined }),
      'ready',
      'heard from: ready at once',
    );
    assert.equal(
      nodeStatus(
        { sinceAgentOkMs: undefined, watchedForMs: 5000, instancesAnswering: undefined },
        { suspectAfterMs: 600, downAfterMs: 1500 },
      ),
      'down',
      'no grace configured',
    );
  });

  it('is monotonic in silence (property)', () => {
    const order = { ready: 0, suspect: 1, down: 2 } as const;
    fc.assert(
      fc.property(fc.nat(100_000), fc.nat(100_000), fc.option(fc.boolean(), { nil: undefined }), (a, b, answering) => {
        const [lo, hi] = a < b ? [a, b] : [b, a];
        const s1 = nodeStatus({ sinceAgentOkMs: lo, watchedForMs: 0, instancesAnswering: answering });
        const s2 = nodeStatus({ sinceAgentOkMs: hi, watchedForMs: 0, instancesAnswering: answering });
        assert.ok(order[s1] <= order[s2]);
      }),
    );
  });
});

describe('node health boundaries', () => {
  it('is still ready at exactly suspectAfterMs and still suspect at exactly downAfterMs', () => {
    const at = (ms: number) =>
      nodeStatus({ sinceAgentOkMs: ms, watchedForMs: 60_000, instancesAnswering: undefined }, { suspectAfterMs: 600, downAfterMs: 1500 });
    assert.equal(at(600), 'ready');
    assert.equal(at(601), 'suspect');
    assert.equal(at(1500), 'suspect');
    assert.equal(at(1501), 'down');
  });
});
