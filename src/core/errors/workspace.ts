import type { ErrorEntries } from './entry.js';

/** Errors raised in src/workspace/. */
export const workspaceErrors = {
  packageJsonNotVersion: {
    code: 'invalid_config',
    message: (p: { where: string; spec: string }) => `package.json ${p.where} ${JSON.stringify(p.spec)} is not a version or a semver range`,
    hint: "Use an exact version (4.5.0) or a range (^4, 9.x), or pin it with \"packageManager\": \"name@version\".",
  },
  notValidJson: {
    code: 'invalid_config',
    message: (p: { file: string; message: string }) => `${p.file} is not valid JSON: ${p.message}`,
    hint: "Fix package.json (`npm pkg get` shows whether npm can read it).",
  },
  mustHoldJsonObject: {
    code: 'invalid_config',
    message: (p: { file: string }) => `${p.file} must hold a JSON object`,
  },
  cannotRead: {
    code: 'invalid_config',
    message: (p: { file: string; message: string }) => `cannot read ${p.file}: ${p.message}`,
  },
  yamlNotValidYaml: {
    code: 'invalid_config',
    message: (p: { msg: string }) => `pilot.yaml is not valid YAML: ${p.msg}`,
  },
  noAppNameName: {
    code: 'invalid_config',
    message: (p: { value: string; folder: string }) => `no app name: ${p.value} and the folder name ${JSON.stringify(p.folder)} is not one either`,
    hint: "Set `name:` in pilot.yaml: 1-63 lowercase letters, digits and \"-\", starting with a letter.",
  },
} as const satisfies ErrorEntries;
