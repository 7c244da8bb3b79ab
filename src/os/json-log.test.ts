import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { jsonLog } from './json-log.js';
import type { Log } from '../core/log.js';

/** Lines from both loggers for the same calls, `time` removed (the one field that may differ). */
function both(calls: (log: Log) => void, level = 'info'): { ours: unknown[]; theirs: unknown[] } {
  const ours: string[] = [];
  const theirs: string[] = [];
  calls(jsonLog({ level, sink: { write: (l: string) => ours.push(l) } }));
  calls(pino({ level }, { write: (l: string) => theirs.push(l) }));
  const strip = (l: string): unknown => {
    assert.ok(l.endsWith('\n') && !l.slice(0, -1).includes('\n'), `one whole line: ${l}`);
    const o = JSON.parse(l) as Record<string, unknown>;
    assert.equal(typeof o.time, 'number');
    delete o.time;
    return o;
  };
  return { ours: ours.map(strip), theirs: theirs.map(strip) };
}

describe('jsonLog writes what pino writes', () => {
  it('messages, fields, children, levels', () => {
    const { ours, theirs } = both((log) => {
      log.info('plain');
      log.warn({ instance: 'hello-1', pid: 42, ok: true, nested: { a: [1, 'two'] } }, 'with fields');
      log.error({ code: 'x' });
      log.debug('below the level: nothing');
      const child = log.child({ part: 'router', node: 'n1' });
      child.info({ port: 8080 }, 'child line');
      child.child({ depth: 2 }).fatal('grandchild');
      log.info({ skipped: undefined, kept: null }, 'undefined fields are left out');
      log.info({ quote: 'a "b" \\ c\n\u0001' }, 'escapes: "x"\n');
    });
    assert.deepEqual(ours, theirs);
    assert.equal(ours.length, 7);
  });

  it('errors as pino serialises them (type, message, stack)', () => {
    class PilotLike extends Error {
      code = 'e_test';
    }
    const err = new PilotLike('boom');
    const typeError = new TypeError('bad type'); // made once: its stack names the line it was made on
    const { ours, theirs } = both((log) => {
      log.error({ err }, 'failed');
      log.warn({ err: typeError });
    });
    assert.deepEqual(ours, theirs);
    const first = ours[0] as { err: { type: string; message: string; stack: string; code: string } };
    assert.equal(first.err.type, 'PilotLike');
    assert.equal(first.err.code, 'e_test');
    assert.match(first.err.stack, /boom/);
  });

  it('the debug level and silent', () => {
    const d = both((log) => log.debug({ a: 1 }, 'shown'), 'debug');
    assert.deepEqual(d.ours, d.theirs);
    assert.equal(d.ours.length, 1);
    const s = both((log) => log.fatal('never'), 'silent');
    assert.deepEqual(s.ours, []);
    assert.throws(() => jsonLog({ level: 'loud', sink: { write: () => undefined } }), /unknown log level "loud"/);
  });

  it('never throws on a value JSON cannot write', () => {
    const lines: string[] = [];
    const log = jsonLog({ sink: { write: (l: string) => lines.push(l) } });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    log.info({ cyclic, big: 10n }, 'odd values');
    const o = JSON.parse(lines[0]!) as { cyclic: string; big: string; msg: string };
    assert.match(o.cyclic, /unserializable/);
    assert.equal(o.big, '10');
    assert.equal(o.msg, 'odd values');
  });
});
