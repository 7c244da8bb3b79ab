#!/usr/bin/env node
// `npm run docs:reference`: write docs/errors.md, docs/metrics.md and docs/pilot-yaml.md from the
// code (the error catalogue, the metric registries, the pilot.yaml schema), after tsc.
import { writeFileSync } from 'node:fs';

const root = new URL('..', import.meta.url).pathname;
const { errorsMarkdown } = await import(`${root}dist/src/core/errors-doc.js`);
const { metricsMarkdown } = await import(`${root}dist/src/cli/metrics-doc.js`);
const { pilotYamlMarkdown } = await import(`${root}dist/src/core/pilot-yaml-doc.js`);
const { AppConfigSchema } = await import(`${root}dist/src/core/app-config.js`);
writeFileSync(`${root}docs/errors.md`, errorsMarkdown());
writeFileSync(`${root}docs/metrics.md`, await metricsMarkdown());
writeFileSync(`${root}docs/pilot-yaml.md`, pilotYamlMarkdown(AppConfigSchema));
console.log('wrote docs/errors.md, docs/metrics.md, docs/pilot-yaml.md');
// prom-client's default metrics keep timers: nothing else to wait for.
process.exit(0);
