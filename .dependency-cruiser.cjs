/**
 * Which folder of src/ may import which (src/README.md draws it). Checked by `npm test`
 * (scripts/test.js runs `depcruise src`). The layers make the folder graph acyclic: a folder
 * imports only folders drawn below it. Tests and test support (`*.test.ts`, `*.fixture.ts`,
 * `test-*.ts`) may reach across folders; nothing in production imports them.
 */
const layers = {
  core: [], // pure: itself and the standard library's pure parts (plus TypeBox for schemas)
  files: [],
  http: [],
  os: ['core'],
  workspace: ['core'],
  store: ['core'],
  disk: ['core'],
  api: ['core', 'store'],
  artifacts: ['core', 'disk', 'http'],
  docker: ['core', 'os', 'workspace', 'artifacts'],
  router: ['core', 'os', 'http', 'api'],
  haproxy: ['core', 'os', 'router'],
  swarm: ['core', 'os', 'http', 'api', 'docker'], // a deploy target's bridge: an agent whose runtime is Docker Swarm
  'node-runtime': ['core', 'os', 'workspace', 'store', 'api', 'artifacts'],
  agent: ['core', 'os', 'workspace', 'files', 'api', 'artifacts', 'docker', 'node-runtime'],
  pipeline: ['core', 'os', 'workspace', 'api', 'artifacts', 'docker', 'node-runtime', 'disk'],
  cd: ['core', 'http', 'store', 'api', 'pipeline'],
  control: ['core', 'files', 'http', 'disk', 'store', 'api', 'artifacts', 'node-runtime', 'router', 'cd'],
  cli: ['*'],
};
const TESTS = '(\\.test|\\.fixture)\\.ts$|/test-[^/]*\\.ts$';

module.exports = {
  forbidden: [
    ...Object.entries(layers)
      .filter(([, may]) => !may.includes('*'))
      .map(([folder, may]) => ({
        name: `layers-${folder}`,
        comment: `src/${folder} may import only ${may.length > 0 ? may.map((f) => `src/${f}`).join(', ') : 'itself'} (src/README.md)`,
        severity: 'error',
        from: { path: `^src/${folder}/`, pathNot: TESTS },
        to: { path: '^src/', pathNot: [`^src/${folder}/`, ...may.map((f) => `^src/${f}/`)] },
      })),
    {
      name: 'unknown-folder',
      comment: 'a new folder of src/ needs its place in the layers of .dependency-cruiser.cjs and src/README.md',
      severity: 'error',
      from: { path: `^src/(?!(${Object.keys(layers).join('|')})/)[^/]+/` },
      to: {},
    },
    {
      name: 'core-is-pure',
      comment: 'src/core imports only itself, TypeBox and the pure parts of the standard library',
      severity: 'error',
      from: { path: '^src/core/', pathNot: TESTS },
      to: { dependencyTypes: ['npm', 'npm-dev', 'npm-optional', 'core'], pathNot: ['^node_modules/@sinclair/typebox/', '^(node:)?(path|util|crypto|assert)$'] },
    },
    { name: 'no-module-cycles', severity: 'error', from: { pathNot: TESTS }, to: { circular: true } },
    {
      name: 'test-doubles-in-tests-only',
      comment: 'the in-memory store and the store contract are for tests (src/store/README.md): production runs a real store',
      severity: 'error',
      from: { path: '^src/', pathNot: [TESTS, '^src/store/(memory-store|store-contract(-events)?)\\.ts$'] },
      to: { path: '^src/store/(memory-store|store-contract(-events)?)\\.ts$' },
    },
  ],
  options: {
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
  },
};
