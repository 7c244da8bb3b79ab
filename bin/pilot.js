#!/usr/bin/env node
// Thin launcher: the CLI is compiled by `npm install` (prepare script) into dist/.
// `pilot --help` is printed from the help cache when it matches this build (src/cli/help-cache.ts):
// it then starts as fast as node itself, without loading commander and the command tree.
const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  const { readFileSync } = await import('node:fs');
  process.stdout.write(JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version + '\n');
  process.exit(0);
}
if (args.length === 1 && (args[0] === '--help' || args[0] === '-h')) {
  try {
    const { readHelpCache } = await import('../dist/src/cli/help-cache.js');
    const text = readHelpCache(new URL('../dist/src/cli/main.js', import.meta.url).pathname);
    if (text !== undefined) {
      process.stdout.write(text);
      process.exit(0);
    }
  } catch {
    // not built, or no cache: main.js answers (and says what is missing)
  }
}
import('../dist/src/cli/main.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/src/cli/main.js')) {
    console.error('pilot: not built yet. Run `npm install` (or `npm run build`) in the project folder first.');
    process.exit(1);
  }
  throw err;
});
