import type { ErrorEntries } from './entry.js';

/** Errors raised in src/core/. */
const STICKY_BY_HINT =
  "Use --by cookie:NAME (the router sets the cookie on first visit) or --by header:NAME (a header your front end sets, e.g. header:X-User); a name is 1-64 letters, digits or !#$%&'*+.^_`|~-.";

export const coreErrors = {
  invalidName: {
    code: 'invalid_name',
    message: (p: { what: string; shown: string }) => `invalid ${p.what} ${p.shown}`,
  },
  invalidDigest: {
    code: 'invalid_digest',
    message: (p: { shown: string }) => `invalid digest ${p.shown}`,
  },
  volumePathHasDots: {
    code: 'invalid_config',
    message: (p: { name: string; path: string }) => `pilot.yaml: volumes: ${p.name}: path ${p.path} must not contain "." or ".." segments`,
  },
  volumePathReserved: {
    code: 'invalid_config',
    message: (p: { name: string; path: string; reserved: string }) =>
      `pilot.yaml: volumes: ${p.name}: path ${p.path} would be mounted over ${p.reserved}, which the container needs`,
    hint: (p: { name: string; path: string; reserved: string }) => `Pick a folder of its own, e.g. path: /data/${p.name} (the default).`,
  },
  volumeNameTwice: {
    code: 'invalid_config',
    message: (p: { name: string }) => `pilot.yaml: volumes: the name ${p.name} is used twice`,
  },
  volumePathsOverlap: {
    code: 'invalid_config',
    message: (p: { name: string; path: string; otherName: string; otherPath: string }) =>
      `pilot.yaml: volumes: ${p.name} (${p.path}) and ${p.otherName} (${p.otherPath}) overlap`,
    hint: 'Give each volume a folder of its own.',
  },
  unterminatedCommand: {
    code: 'invalid_config',
    message: (p: { quote: string; cmd: string }) => `unterminated ${p.quote} quote in command ${JSON.stringify(p.cmd)}`,
  },
  configNotMapping: {
    code: 'invalid_config',
    message: (p: { source: string }) => `${p.source}: expected a mapping of fields at the top level`,
  },
  invalidConfig: {
    code: 'invalid_config',
    message: (p: { source: string; problems: string }) => `${p.source}: ${p.problems}`,
  },
  configNameInvalid: {
    code: 'invalid_config',
    message: (p: { name: unknown }) =>
      `pilot.yaml: name: missing or invalid (${JSON.stringify(p.name)}); set \`name:\` to 1-63 lowercase letters, digits and "-", starting with a letter`,
  },
  volumesWithFixedPort: {
    code: 'invalid_config',
    message: (p: { port: number; replicas: undefined | number }) =>
      `pilot.yaml: an app with volumes runs every replica on the volume's node, and a fixed port (${p.port}) allows one instance per node, so replicas: ${p.replicas} cannot be placed`,
    hint: 'Remove `port:` (instances then get $PORT), or set replicas: 1.',
  },
  procfileInvalid: {
    code: 'invalid_config',
    message: (p: { type: string; message: string }) => `Procfile ${p.type}: ${p.message}`,
    hint: (p: { type: string; message: string }) => `Fix the \`${p.type}:\` line of the Procfile.`,
  },
  releaseCommandEmpty: {
    code: 'invalid_config',
    message: 'pilot.yaml: release: empty command',
  },
  runCommandEmpty: {
    code: 'invalid_config',
    message: 'pilot.yaml: run: empty command',
  },
  nothingToStart: {
    code: 'invalid_config',
    message: (p: { otherScripts: readonly string[] }) =>
      `nothing to start the app with: package.json has no "start" script, there is no Procfile \`web:\` line and no server.js${
        p.otherScripts.length > 0 ? ` (package.json has ${p.otherScripts.map((s) => `"${s}"`).join(', ')})` : ''
      }`,
    hint: 'Add a "start" script to package.json (e.g. "start": "node server.js"), a Procfile `web:` line, or `run:` in pilot.yaml (e.g. run: node .output/server/index.mjs).',
  },
  repoNotString: {
    code: 'bad_request',
    message: 'repo must be a string URL',
  },
  repositoryRefused: {
    code: 'bad_request',
    message: (p: { url: string; problem: string }) => `repository URL ${JSON.stringify(p.url)} refused: ${p.problem}`,
  },
  invalidRegistryUrl: {
    code: 'bad_request',
    message: (p: { text: string; why: string }) => `registry URL ${JSON.stringify(p.text)}: ${p.why}`,
    hint: 'Give the registry as http://HOST:PORT or https://HOST[:PORT], e.g. `pilot registry set http://127.0.0.1:5000`.',
  },
  secretValueRefused: {
    code: 'bad_request',
    message: (p: { what: string; problem: string }) => `${p.what} contains ${p.problem}: refused (the value is not shown)`,
    hint: 'Secret values may hold printable text, tabs and line breaks (PEM keys), not NUL or other control characters. Check the file or variable it came from.',
  },
  unexpected: {
    code: 'internal',
    message: (p: { message: string }) => p.message,
  },
  autoscaleWithVolumesFixedPort: {
    code: 'invalid_config',
    message: (p: { port: number; max: number }) =>
      `pilot.yaml: autoscale: an app with volumes runs every replica on the volume's node, and a fixed port (${p.port}) allows one instance per node, so max: ${p.max} cannot be placed`,
    hint: 'Remove `port:` (instances then get $PORT), or remove autoscale.',
  },
  autoscaleInvalid: {
    code: 'invalid_config',
    message: (p: { what: string; hint: string }) => `pilot.yaml: autoscale: ${p.what}`,
    hint: (p: { what: string; hint: string }) => p.hint,
  },
  stickyByMalformed: {
    code: 'bad_request',
    message: (p: { text: string }) => `by: ${JSON.stringify(p.text.slice(0, 80))} is not "cookie:NAME" or "header:NAME"`,
    hint: STICKY_BY_HINT,
  },
  stickyByNameInvalid: {
    code: 'bad_request',
    message: (p: { name: string; kind: string }) => `by: ${JSON.stringify(p.name.slice(0, 80))} is not a valid ${p.kind} name`,
    hint: STICKY_BY_HINT,
  },
  stickyByHeaderReserved: {
    code: 'bad_request',
    message: (p: { name: string }) => `by: header "${p.name}" cannot identify a user (the HTTP layer or Pilot uses it)`,
    hint: STICKY_BY_HINT,
  },
  notifyUrlInvalid: {
    code: 'invalid_notify_endpoint',
    message: (p: { problem: string }) => `notification endpoint URL refused: ${p.problem}`,
    hint: 'Give an http:// or https:// URL, e.g. a Slack incoming webhook (https://hooks.slack.com/services/…) or your own receiver.',
  },
  notifyEventUnknown: {
    code: 'invalid_notify_endpoint',
    message: (p: { event: string; known: string }) =>
      `unknown notification event ${JSON.stringify(p.event.slice(0, 80))} (known: ${p.known})`,
    hint: 'Name events in full (deploy.live) or short (live), comma-separated; `all` for every one.',
  },
  notifyKindUnknown: {
    code: 'invalid_notify_endpoint',
    message: (p: { kind: string }) => `unknown endpoint kind ${JSON.stringify(p.kind.slice(0, 40))}: json or slack`,
    hint: 'Use --kind json (a signed generic webhook) or --kind slack (a Slack-compatible incoming webhook).',
  },
} as const satisfies ErrorEntries;
