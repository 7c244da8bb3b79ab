import type { ErrorEntries } from './entry.js';

/** Errors raised in src/pipeline/. */
export const pipelineErrors = {
  nodeModulesCopyFailed: {
    code: 'internal',
    message: (p: { why: string }) => `copying node_modules failed: ${p.why}`,
  },
  installNodeUnknown: {
    code: 'build_failed',
    message: (p: { tail: string }) => `cannot tell which node runs the install: ${p.tail}`,
  },
  managerVersionFailed: {
    code: 'build_failed',
    message: (p: { manager: string; tail: string }) => `\`${p.manager} --version\` failed: ${p.tail}`,
  },
  packageManagerLayout: {
    code: 'digest_mismatch',
    message: (p: { pkg: string; version: string; url: string }) =>
      `${p.pkg}@${p.version} from ${p.url} is not laid out as an npm package (one top folder)`,
  },
  invalidManagerSpec: {
    code: 'invalid_config',
    message: (p: { source: string }) => `${p.source}: not a version or a semver range`,
  },
  managerVersionNotFound: {
    code: 'package_manager_not_found',
    message: (p: { name: string; source: string; url: string; nearest: readonly string[] }) =>
      `no ${p.name} version matches ${p.source} on the npm registry ${p.url}${p.nearest.length > 0 ? `; nearest: ${p.nearest.join(', ')}` : ''}`,
  },
  managerNotOnRegistry: {
    code: 'package_manager_not_found',
    message: (p: { source: string; url: string; name: string; version: string; pkg: string; nearest: readonly string[] }) =>
      `${p.source}: the npm registry ${p.url} has no ${p.name} ${p.version} (package ${p.pkg}@${p.version})${p.nearest.length > 0 ? `; nearest: ${p.nearest.join(', ')}` : ''}`,
  },
  managerHashMismatch: {
    code: 'digest_mismatch',
    message: (p: { name: string; version: string; source: string }) =>
      `${p.name}@${p.version} does not match the hash in ${p.source}: refused, nothing cached`,
    hint: 'Fix the hash in packageManager (`corepack use name@version` writes it), or check the registry / proxy serving the package.',
  },
  managerCannotStart: {
    code: 'build_failed',
    message: (p: { name: string; version: string; out: string; code: null | number }) =>
      `${p.name} ${p.version} does not start on this machine: \`${p.name} --version\` said ${JSON.stringify(p.out)} (exit ${p.code})`,
  },
  managerCacheQuote: {
    code: 'invalid_config',
    message: (p: { dir: string }) =>
      `the package-manager cache folder ${JSON.stringify(p.dir)} holds a quote or newline: choose another PILOT_RUNTIME_CACHE`,
  },
  rolloutWaitCancelled: {
    code: 'deploy_failed',
    message: 'cancelled while waiting for the rollout',
  },
  rolloutTimeout: {
    code: 'deploy_failed',
    message: (p: { rolloutId: number; timeoutMs: number }) => `rollout #${p.rolloutId} still running after ${p.timeoutMs}s`,
  },
  gitOutputTooLarge: {
    code: 'internal',
    message: (p: { args: string; maxOutputBytes: number }) => `git ${p.args} printed more than ${p.maxOutputBytes} bytes`,
  },
  gitExited: {
    code: 'internal',
    message: (p: { what: string; code: string; tail: string }) => `\`git ${p.what}\` exited with code ${p.code}: ${p.tail}`,
  },
  folderMissing: {
    code: 'not_a_git_repo',
    message: (p: { abs: string }) => `folder ${p.abs} does not exist`,
  },
  notFolder: {
    code: 'not_a_git_repo',
    message: (p: { abs: string }) => `${p.abs} is not a folder`,
  },
  notAGitWorkTree: {
    code: 'not_a_git_repo',
    message: (p: { abs: string; tail: string }) => `${p.abs} is not inside a git work tree (git: ${p.tail})`,
  },
  noCommits: {
    code: 'no_commits',
    message: (p: { root: string }) => `the git repository at ${p.root} has no commits yet`,
  },
  uncommittedChanges: {
    code: 'dirty_tree',
    message: (p: { abs: string; listed: string; more: string }) => `uncommitted changes in ${p.abs}: ${p.listed}${p.more}`,
  },
  subdirEmpty: {
    code: 'no_commits',
    message: (p: { subdir: string; commit: string }) => `${p.subdir} has no committed files in ${p.commit}`,
    hint: "Commit the app's files first.",
  },
  workspaceNotEmpty: {
    code: 'internal',
    message: (p: { workspaceDir: string }) => `workspace ${p.workspaceDir} is not empty`,
  },
  extractFailed: {
    code: 'internal',
    message: (p: { commit: string; ws: string; message: string }) => `extracting ${p.commit} into ${p.ws} failed: ${p.message}`,
  },
  copyCancelled: {
    code: 'cancelled',
    message: 'copying the working tree was cancelled',
  },
  gitUnexpectedPath: {
    code: 'internal',
    message: (p: { rel: string }) => `git listed an unexpected path ${JSON.stringify(p.rel)}`,
  },
  repositoryUrlRefused: {
    code: 'bad_request',
    message: (p: { repo: string; problem: string }) => `repository URL ${JSON.stringify(p.repo)} refused: ${p.problem}`,
  },
  timedOutAfter: {
    code: 'step_timeout',
    message: (p: { what: string; timeoutMs: string }) => `${p.what} timed out after ${p.timeoutMs}`,
  },
  cancelled: {
    code: 'cancelled',
    message: (p: { what: string }) => `${p.what} was cancelled`,
  },
  cannotFetch: {
    code: 'unavailable',
    message: (p: { shown: string; tail: string }) => `cannot fetch from ${p.shown}: ${p.tail}`,
    hint: 'Check the repository URL and that this server can read it (a deploy key in ~/.ssh, or a git credential helper).',
  },
  notCommit: {
    code: 'not_found',
    message: (p: { sha: string; shown: string }) => `${p.sha} in ${p.shown} is not a commit`,
  },
  commitNotFound: {
    code: 'not_found',
    message: (p: { sha: string; shown: string }) => `commit ${p.sha} was not found in ${p.shown}`,
    hint: 'Check that the commit was pushed to this repository (a force-push may have removed it).',
  },
  commitNotCache: {
    code: 'not_found',
    message: (p: { sha: string; gitDir: string }) => `commit ${p.sha} is not in the cache at ${p.gitDir}`,
    hint: 'Fetch it first (fetchCommit).',
  },
  notFolderCommit: {
    code: 'not_found',
    message: (p: { subdir: string; sha: string }) => `${JSON.stringify(p.subdir)} is not a folder in commit ${p.sha}`,
  },
  commitRefused: {
    code: 'bad_request',
    message: (p: { commit: string }) => `commit ${JSON.stringify(p.commit)} refused: a full 40-character hexadecimal SHA is required`,
  },
  subdirRefused: {
    code: 'bad_request',
    message: (p: { subdir: string }) =>
      `subdir ${JSON.stringify(p.subdir)} refused: a relative folder path without "." or ".." is required`,
  },
  fetchCancelled: {
    code: 'cancelled',
    message: 'the fetch was cancelled while waiting for another fetch of the same repository',
  },
  repoConfigNameMismatch: {
    code: 'invalid_config',
    message: (p: { name: string; app: string }) =>
      `pilot.yaml in the repository names the app "${p.name}", but it is deployed as "${p.app}"`,
    hint: (p: { name: string; app: string }) => `Remove \`name:\` from pilot.yaml or set it to "${p.app}".`,
  },
  runCancelled: {
    code: 'cancelled',
    message: 'the run was cancelled',
  },
  registryDown: {
    code: 'registry_unreachable',
    message: (p: { url: string; why: string }) => `the registry ${p.url} does not answer (${p.why}); nothing was built`,
    hint: (p: { url: string; why: string }) =>
      `Start the registry at ${p.url}, or \`pilot registry remove ${p.url}\` to publish images to the artifact repository instead.`,
  },
  dockerBuildTimeout: {
    code: 'step_timeout',
    message: (p: { buildStepTimeoutMs: number }) => `docker build timed out after ${p.buildStepTimeoutMs}s`,
  },
  rolloutFailed: {
    code: 'deploy_failed',
    message: (p: { rolloutId: number; first: string; kept: string; rest: readonly string[]; app: string }) =>
      [`rollout #${p.rolloutId} failed: ${p.first}; ${p.kept}`, ...p.rest].join('\n'),
    hint: (p: { rolloutId: number; first: string; kept: string; rest: readonly string[]; app: string }) =>
      `See the app's output with \`pilot logs ${p.app}\` (\`--previous\` for stopped instances); fix and run again.`,
  },
  rolloutSuperseded: {
    code: 'superseded',
    message: (p: { rollout: number; reason: string }) => `rollout #${p.rollout} was ${p.reason}`,
  },
} as const satisfies ErrorEntries;

/** Hints that explain an error raised elsewhere (its code and message kept, see `restate`). */
export const pipelineHints = {
  npmrcVariableMissing: (p: { v: string; app: string }) =>
    `The app's .npmrc uses \${${p.v}}, which the build does not have: \`pilot secrets set ${p.app} ${p.v} --build\` (value on stdin), then run again.`,
  managerRangeRewrite: (p: { name: string; version: string; source: string }) =>
    `${p.name} ${p.version} is the newest match of ${p.source}; if the install wants to rewrite the lockfile, pin the version that wrote it in package.json: "packageManager": "${p.name}@<version>".`,
};
