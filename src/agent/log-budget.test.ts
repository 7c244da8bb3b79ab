import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { overBudget, type LogFileInfo } from './log-budget.js';

const f = (path: string, size: number, mtimeMs: number, live = false): LogFileInfo => ({ path, size, mtimeMs, live });

void describe('overBudget', () => {
  void it('removes the oldest rotated files until the app is within its budget', () => {
    const files = [
      f('a/stdout.log', 10, 50, true),
      f('a/stdout.log.1', 10, 40),
      f('a/stdout.log.2', 10, 10),
      f('b/stdout.log.1', 10, 20),
      f('b/stdout.log', 10, 60, true),
    ];
    assert.deepEqual(overBudget(files, 30), ['a/stdout.log.2', 'b/stdout.log.1']);
    assert.deepEqual(overBudget(files, 50), []);
  });

  void it('never removes a live file, even when the live files alone are over', () => {
    assert.deepEqual(overBudget([f('a/stdout.log', 100, 1, true), f('a/stderr.log.1', 5, 2)], 10), ['a/stderr.log.1']);
  });
});
