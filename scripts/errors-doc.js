#!/usr/bin/env node
// `npm run docs:errors`: write docs/errors.md from the error catalogue (src/core/errors/), after tsc.
import { writeFileSync } from 'node:fs';

const root = new URL('..', import.meta.url).pathname;
const { errorsMarkdown } = await import(`${root}dist/src/core/errors-doc.js`);
writeFileSync(`${root}docs/errors.md`, errorsMarkdown());
console.log('wrote docs/errors.md');
