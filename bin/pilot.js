#!/usr/bin/env node
// Thin launcher: the CLI is compiled by `npm install` (prepare script) into dist/.
import('../dist/src/cli/main.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/src/cli/main.js')) {
    console.error('pilot: not built yet. Run `npm install` (or `npm run build`) in the project folder first.');
    process.exit(1);
  }
  throw err;
});
