import type { ErrorEntries } from './entry.js';

const PACKAGE_MANAGER_HINT =
  'Write it as corepack does: "packageManager": "yarn@4.5.0" (npm, yarn or pnpm, an exact version, optionally +sha512.<hex>).';

/** Errors raised in src/workspace/. */
export const workspaceErrors = {
  invalidEnginesSpec: {
    code: 'invalid_config',
    message: (p: { where: string; spec: string }) => `package.json ${p.where} ${JSON.stringify(p.spec)} is not a version or a semver range`,
    hint: 'Use an exact version (4.5.0) or a range (^4, 9.x), or pin it with "packageManager": "name@version".',
  },
  invalidJson: {
    code: 'invalid_config',
    message: (p: { file: string; message: string }) => `${p.file} is not valid JSON: ${p.message}`,
    hint: 'Fix package.json (`npm pkg get` shows whether npm can read it).',
  },
  jsonNotObject: {
    code: 'invalid_config',
    message: (p: { file: string }) => `${p.file} must hold a JSON object`,
  },
  configUnreadable: {
    code: 'invalid_config',
    message: (p: { file: string; message: string }) => `cannot read ${p.file}: ${p.message}`,
  },
  invalidYaml: {
    code: 'invalid_config',
    message: (p: { msg: string }) => `pilot.yaml is not valid YAML: ${p.msg}`,
  },
  noAppName: {
    code: 'invalid_config',
    message: (p: { packageName: string | undefined; folder: string }) =>
      `no app name: ${p.packageName === undefined ? 'package.json has no "name"' : `package.json name ${JSON.stringify(p.packageName)} is not one`} and the folder name ${JSON.stringify(p.folder)} is not one either`,
    hint: 'Set `name:` in pilot.yaml: 1-63 lowercase letters, digits and "-", starting with a letter.',
  },
  packageManagerNotString: {
    code: 'invalid_config',
    message: (p: { shown: string }) => `package.json packageManager ${p.shown} is not a string`,
    hint: PACKAGE_MANAGER_HINT,
  },
  packageManagerUnknown: {
    code: 'invalid_config',
    message: (p: { shown: string; name: string }) =>
      `package.json packageManager ${p.shown} names ${JSON.stringify(p.name)}: Pilot builds with npm, yarn or pnpm`,
    hint: PACKAGE_MANAGER_HINT,
  },
  packageManagerNotNameAtVersion: {
    code: 'invalid_config',
    message: (p: { shown: string }) => `package.json packageManager ${p.shown} is not name@version`,
    hint: PACKAGE_MANAGER_HINT,
  },
  packageManagerUnknownHash: {
    code: 'invalid_config',
    message: (p: { shown: string; algo: string }) =>
      `package.json packageManager ${p.shown}: ${JSON.stringify(p.algo)} is not a hash corepack knows (sha1, sha224, sha256, sha384, sha512)`,
    hint: PACKAGE_MANAGER_HINT,
  },
  packageManagerNotExact: {
    code: 'invalid_config',
    message: (p: { shown: string; version: string }) =>
      `package.json packageManager ${p.shown}: ${JSON.stringify(p.version)} is not an exact version (corepack needs one, e.g. 4.5.0)`,
    hint: PACKAGE_MANAGER_HINT,
  },
} as const satisfies ErrorEntries;
