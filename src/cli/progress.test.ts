import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { progress } from './progress.js';

function stream(isTTY: boolean): { isTTY: boolean; columns: number; out: string[]; write(s: string): boolean } {
  return {
    isTTY,
    columns: 60,
    out: [],
    write(s: string) {
      this.out.push(s);
      return true;
    },
  };
}

describe('progress', () => {
  it('prints the lines alone when the stream is not a terminal', () => {
    const s = stream(false);
    const p = progress(s);
    p.line('==> build');
    p.line('    build done in 1s');
    p.done();
    assert.deepEqual(s.out, ['==> build\n', '    build done in 1s\n']);
  });

  it('keeps a status line with the current step, its time and the rollout under the log on a terminal', () => {
    const s = stream(true);
    let t = 1_000_000;
    const p = progress(s, () => t, 60_000);
    p.line('==> build');
    t += 12_000;
    p.line('    npm ci');
    const afterInstall = s.out.join('');
    assert.ok(afterInstall.includes('build 12s'), afterInstall);
    p.line('==> deploy');
    p.line('rollout #4: revision 2 at 25% (1/2 ready)');
    const all = s.out.join('');
    assert.match(all, /deploy 0s · rollout #4: revision 2 at 25%/);
    // Every log line starts on a clean line: the status line is erased first.
    const idx = s.out.indexOf('    npm ci\n');
    assert.equal(s.out[idx - 1], '\r\x1b[2K');
    p.done();
    assert.equal(s.out[s.out.length - 1], '\r\x1b[2K', 'done() leaves no status line behind');
    // The whole log is there, in order.
    assert.deepEqual(
      s.out.filter((x) => x.endsWith('\n')),
      ['==> build\n', '    npm ci\n', '==> deploy\n', 'rollout #4: revision 2 at 25% (1/2 ready)\n'],
    );
  });

  it('cuts the status line to the terminal width', () => {
    const s = stream(true);
    const p = progress(s, () => 0, 60_000);
    p.line(`rollout ${'x'.repeat(200)}`);
    p.done();
    const statusLines = s.out.filter((x) => !x.endsWith('\n') && !x.startsWith('\r'));

    for (const l of statusLines) assert.ok(l.replace(/\x1b\[[0-9;]*m/g, '').length <= 59, l);
  });
});
