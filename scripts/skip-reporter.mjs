// A node:test reporter that records every skipped test or suite, one JSON line each:
//   {"name": "...", "file": "dist/...", "reason": "no Docker engine (...)"}
// scripts/test.js sends it to a file and prints the list at the end of `npm test` (a skip must
// never look like a pass). Everything else is reported by the spec/tap reporter beside it.
import { relative } from 'node:path';

export default async function* skipReporter(source) {
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const { skip, name, file } = event.data;
    if (skip === undefined || skip === false) continue;
    yield JSON.stringify({ name, file: file ? relative(process.cwd(), file) : undefined, reason: typeof skip === 'string' && skip !== '' ? skip : '(no reason given)' }) + '\n';
  }
}
