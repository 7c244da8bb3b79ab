#!/usr/bin/env node
// `npm pack` / `npm publish` (prepack): writes npm-shrinkwrap.json from package-lock.json, so that
// `npm install -g pilot-deploy` installs the dependency versions this repository was tested with
// (a fresh resolution picks whatever is newest in each range, e.g. a dependency that needs a newer
// Node). Only the production entries are kept, each with its registry tarball URL: npm rewrites
// registry.npmjs.org to the user's configured registry, and with the URL an install can be served
// from npm's cache alone (`--offline`). postpack removes the file; it is never committed.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';

const root = new URL('..', import.meta.url).pathname;
const target = `${root}npm-shrinkwrap.json`;
if (process.argv[2] === '--remove') {
  rmSync(target, { force: true });
  process.exit(0);
}
const lock = JSON.parse(readFileSync(`${root}package-lock.json`, 'utf8'));
const packages = {};
for (const [path, entry] of Object.entries(lock.packages)) {
  if (path === '') {
    const { devDependencies: _dev, ...rootEntry } = entry;
    packages[path] = rootEntry;
    continue;
  }
  if (entry.dev || entry.link) continue;
  const name = entry.name ?? path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);
  const resolved = entry.resolved ?? `https://registry.npmjs.org/${name}/-/${name.split('/').pop()}-${entry.version}.tgz`;
  packages[path] = { ...entry, resolved };
}
writeFileSync(target, JSON.stringify({ ...lock, packages }, null, 2) + '\n');
console.log(`npm-shrinkwrap.json: ${Object.keys(packages).length - 1} production packages pinned`);
