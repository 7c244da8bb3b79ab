#!/usr/bin/env node
// Writes schema/pilot.schema.json from the TypeBox schema in src/core/app-config.ts (run after a build).
import { writeFileSync } from 'node:fs';
import { AppConfigSchema } from '../dist/src/core/app-config.js';
const schema = { $schema: 'https://json-schema.org/draft/2020-12/schema', ...AppConfigSchema };
writeFileSync(new URL('../schema/pilot.schema.json', import.meta.url), JSON.stringify(schema, null, 2) + '\n');
console.log('wrote schema/pilot.schema.json');
