/**
 * The Dockerfile Pilot writes for a Node app that has none: a two-stage build on the base
 * (`pilot/node:<version>`, made by `pilot images bootstrap-node`: node and npm, no shell).
 *
 *   stage build   package.json + lockfile ─► install in /pilot-deps (npm ci / yarn / pnpm, by
 *                 lockfile), linked as /app/node_modules; the app's files (after its
 *                 .dockerignore; never a node_modules of the build machine) ─► build commands
 *                 (pilot.yaml `build`, else `npm run build` when package.json has a build script)
 *   final stage   base + /pilot-deps/node_modules (own layer: reused while the lockfile is the same)
 *                 + the built app; /tmp 1777, a home and the volume paths owned by the app's user
 *
 * The base has no shell, so every RUN is exec form (JSON). npm runs lifecycle scripts with
 * /bin/sh and bin scripts start with `#!/usr/bin/env node`: the build stage alone gets the build
 * machine's `sh` and `env` (`.pilot-build/` in the context, see image-build.ts), never the image
 * that ships. Pure.
 */
import { fail } from '../core/errors.js';
import type { ContextEntry } from './context.js';

/** The name the generated Dockerfile has in the build context (the daemon drops it, see `.dockerignore`). */
export const GENERATED_DOCKERFILE = '.pilot.Dockerfile';
/** Label of the build stage's (untagged) image: `docker image prune --filter label=dev.pilot.stage` removes them. */
export const BUILD_STAGE_LABEL = 'dev.pilot.stage';
/** Where the app lives in the image. */
export const APP_DIR = '/app';
/** The build stage's tools folder in the context (sh, env); never copied into the final image. */
export const BUILD_TOOLS_DIR = '.pilot-build';
/** Where npm lives in the base (and in the official node images). */
const NPM_DIR = '/usr/local/lib/node_modules/npm';
/** Where the build stage installs the dependencies. */
const DEPS_DIR = '/pilot-deps';
/** The app's user in the base image (`node`, see base-image.ts). */
export const APP_UID = 1000;

/** A COPY source is a pattern to the daemon: names with these characters are copied with their folder instead. */
const GLOB = /[*?[\]\\]/;
/** Above this many top-level folders, the app is one COPY (one layer) rather than one per folder. */
const MAX_COPY_LAYERS = 24;
/** Package-manager files the install needs, copied before the app so the install layer survives code changes. */
const MANIFESTS = [
  'package.json',
  'package-lock.json',
  'npm-shrinkwrap.json',
  'yarn.lock',
  'pnpm-lock.yaml',
  'pnpm-workspace.yaml',
  '.npmrc',
  '.yarnrc',
  '.yarnrc.yml',
];
/** `packageManager` in package.json: `pnpm@9.1.0` (an optional `+sha…` hash is dropped). */
const PACKAGE_MANAGER = /^(npm|yarn|pnpm)@(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)(?:\+.*)?$/;

export interface GeneratedDockerfileInput {
  /** e.g. pilot/node:20.20.2 */
  readonly baseImage: string;
  /** The argv the container starts with (core/run-command.ts resolveRunCommand). */
  readonly command: readonly string[];
  /** What is in the context, after `.dockerignore`. */
  readonly entries: readonly ContextEntry[];
  /** pilot.yaml `build` as argv lists; undefined = `npm run build` when package.json has a build script. */
  readonly build?: readonly (readonly string[])[] | undefined;
  /** package.json scripts (the default build step). */
  readonly scripts?: Readonly<Record<string, string>> | undefined;
  /** package.json `packageManager` (which yarn or pnpm installs). */
  readonly packageManager?: string | undefined;
  /** Container paths of the app's volumes: created in the image owned by the app's user (a new volume takes that owner). */
  readonly volumePaths?: readonly string[] | undefined;
  /** The context carries `.pilot-build/sh` and `.pilot-build/env` for the build stage. */
  readonly buildTools?: boolean | undefined;
  /** The build machine's npm registry (build-npm.ts; an http(s) URL without spaces or quotes). */
  readonly registry?: string | undefined;
  /** The context carries `.pilot-build/ca.crt`, the CA bundle the build machine's npm trusts. */
  readonly ca?: boolean | undefined;
  /** The app's name: a label of the build stage's image. */
  readonly app?: string | undefined;
  /** pilot.yaml `env` names, declared as build arguments for the build commands (values go as buildargs, as the process runtime's build gets them). */
  readonly buildArgs?: readonly string[] | undefined;
}

/** Where the build stage finds the build machine's CA bundle. */
const BUILD_CA = '/usr/local/share/pilot-build/ca.crt';

/** Why `command` cannot start in an image without a shell, or undefined when it can. */
export function commandProblem(command: readonly string[]): string | undefined {
  const prog = command[0] ?? '';
  if (prog === 'node' || prog === '/usr/local/bin/node') return undefined;
  if (prog === '/bin/sh' || prog === 'sh' || prog === 'bash')
    return `the start command needs a shell (${command.slice(2).join(' ') || command.join(' ')})`;
  if (prog === 'npm' || prog === 'npx' || prog === 'yarn' || prog === 'pnpm')
    return `the start command is \`${command.join(' ')}\`, which needs a shell to run the script`;
  return `the start command \`${command.join(' ')}\` is not a \`node …\` command`;
}

/** yarn and pnpm are not in the base: npm fetches the wanted version (`packageManager`, else a default) and runs it. */
function viaNpmExec(argv: readonly string[], packageManager: string | undefined): string[] {
  const tool = argv[0];
  if (tool !== 'yarn' && tool !== 'pnpm') return [...argv];
  const m = PACKAGE_MANAGER.exec(packageManager ?? '');
  const version = m && m[1] === tool ? m[2]! : tool === 'yarn' ? '1.22.22' : '9.15.9';
  return ['npm', 'exec', '--yes', `--package=${tool}@${version}`, '--', ...argv];
}

/** The install command inside the image, by the lockfile in the context. */
export function imageInstallArgv(files: ReadonlySet<string>, packageManager: string | undefined): string[] | undefined {
  if (!files.has('package.json')) return undefined;
  if (files.has('package-lock.json') || files.has('npm-shrinkwrap.json')) return ['npm', 'ci', '--no-audit', '--no-fund'];
  if (files.has('yarn.lock')) {
    const m = PACKAGE_MANAGER.exec(packageManager ?? '');
    const berry = m?.[1] === 'yarn' && Number(m[2]!.split('.')[0]) >= 2;
    return viaNpmExec(['yarn', 'install', berry ? '--immutable' : '--frozen-lockfile'], packageManager);
  }
  if (files.has('pnpm-lock.yaml')) return viaNpmExec(['pnpm', 'install', '--frozen-lockfile'], packageManager);
  return ['npm', 'install', '--no-audit', '--no-fund'];
}

const run = (argv: readonly string[]): string => `RUN ${JSON.stringify(argv)}`;
const nodeRun = (script: string): string => run(['node', '-e', script]);

/** The Dockerfile text; throws invalid_config when the app cannot start without a shell. */
export function generateDockerfile(input: GeneratedDockerfileInput): string {
  const problem = commandProblem(input.command);
  if (problem) {
    throw fail.noDockerfileNoBase({ problem, baseImage: input.baseImage });
  }
  // A node_modules of the build machine never goes in: the image installs its own.
  const ours = new Set(['.dockerignore', GENERATED_DOCKERFILE, BUILD_TOOLS_DIR, 'node_modules']);
  const top = input.entries.filter((e) => !e.path.includes('/') && !ours.has(e.path));
  const dirs = top.filter((e) => e.kind === 'dir').map((e) => e.path);
  const files = top.filter((e) => e.kind !== 'dir').map((e) => e.path);
  const present = new Set(files);
  const install = imageInstallArgv(present, input.packageManager);
  const build = input.build ?? (present.has('package.json') && input.scripts?.['build'] !== undefined ? [['npm', 'run', 'build']] : []);
  const lines = [
    '# Generated by Pilot (runtime: docker, no Dockerfile in the app): dependencies are installed in the image',
    `FROM ${input.baseImage} AS build`,
    // The engine keeps this stage's image (untagged) as the build cache: labelled, so it can be pruned.
    `LABEL ${BUILD_STAGE_LABEL}="build"${input.app !== undefined && /^[a-z][a-z0-9-]{0,62}$/.test(input.app) ? ` dev.pilot.app="${input.app}"` : ''}`,
    `WORKDIR ${APP_DIR}`,
    'ENV CI=true npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false',
  ];
  if (input.registry !== undefined && /^https?:\/\/[^\s"\\]+$/.test(input.registry))
    lines.push(`ENV npm_config_registry=${input.registry}`);
  if (input.ca)
    lines.push(`COPY ["${BUILD_TOOLS_DIR}/ca.crt", "${BUILD_CA}"]`, `ENV NODE_EXTRA_CA_CERTS=${BUILD_CA} npm_config_cafile=${BUILD_CA}`);
  if (input.buildTools) {
    lines.push(`COPY ["${BUILD_TOOLS_DIR}/sh", "/bin/sh"]`, `COPY ["${BUILD_TOOLS_DIR}/env", "/usr/bin/env"]`);
  }
  // `npm`/`npx` on PATH for build commands and scripts (the base has npm's files, not its links).
  lines.push(
    nodeRun(
      `const fs=require('fs');for(const b of ['npm','npx']){const t='/usr/local/bin/'+b;if(!fs.existsSync(t)&&fs.existsSync('${NPM_DIR}/bin/'+b+'-cli.js'))fs.symlinkSync('${NPM_DIR}/bin/'+b+'-cli.js',t)}`,
    ),
  );
  // Dependencies install in a folder of their own, linked into the app for the build: a rename out
  // of /app later would cross overlay layers (EXDEV), and the final stage copies them as one layer.
  const manifests = install === undefined ? [] : MANIFESTS.filter((f) => present.has(f));
  if (install !== undefined) {
    lines.push(`WORKDIR ${DEPS_DIR}`, `COPY ${JSON.stringify([...manifests, `${DEPS_DIR}/`])}`, run(install), `WORKDIR ${APP_DIR}`);
    // An install with nothing to install makes no node_modules: the final stage's COPY needs one.
    lines.push(
      nodeRun(
        `const fs=require('fs');fs.mkdirSync('${DEPS_DIR}/node_modules',{recursive:true});fs.symlinkSync('${DEPS_DIR}/node_modules','${APP_DIR}/node_modules')`,
      ),
    );
  }
  const splittable = dirs.length <= MAX_COPY_LAYERS && ![...dirs, ...files].some((n) => GLOB.test(n));
  if (!splittable) {
    lines.push(`COPY . ${APP_DIR}/`);
  } else {
    for (const d of dirs) lines.push(`COPY ${JSON.stringify([d, `${APP_DIR}/${d}/`])}`);
    if (files.length > 0) lines.push(`COPY ${JSON.stringify([...files, `${APP_DIR}/`])}`);
  }
  // After the install: a change of env reruns the build, not the install.
  const args = (input.buildArgs ?? []).filter((n) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(n));
  if (build.length > 0 && args.length > 0) lines.push(...args.map((n) => `ARG ${n}`));
  for (const argv of build) lines.push(run(viaNpmExec(argv, input.packageManager)));
  // The link goes (the dependencies get their own layer below); the build tools never reach the final stage.
  lines.push(
    nodeRun(
      `const fs=require('fs');const m='${APP_DIR}/node_modules';if(fs.lstatSync(m,{throwIfNoEntry:false})?.isSymbolicLink())fs.unlinkSync(m);fs.rmSync('${APP_DIR}/${BUILD_TOOLS_DIR}',{recursive:true,force:true})`,
    ),
  );
  const owned = ['/home/node', ...(input.volumePaths ?? [])];
  lines.push(
    '',
    `FROM ${input.baseImage}`,
    `WORKDIR ${APP_DIR}`,
    'ENV NODE_ENV=production HOME=/home/node',
    // Before the app (a cache hit on every build): the app's files stay root's and read-only to it;
    // it writes to /tmp, its home and its volumes.
    nodeRun(
      `const fs=require('fs');fs.chmodSync('/tmp',0o1777);for(const d of ${JSON.stringify(owned)}){fs.mkdirSync(d,{recursive:true});fs.chownSync(d,${APP_UID},${APP_UID})}`,
    ),
    ...(install === undefined ? [] : [`COPY --from=build ["${DEPS_DIR}/node_modules/", "${APP_DIR}/node_modules/"]`]),
    `COPY --from=build ["${APP_DIR}/", "${APP_DIR}/"]`,
    'USER node',
    `CMD ${JSON.stringify(input.command)}`,
    '',
  );
  return lines.join('\n');
}

/** The `.dockerignore` sent with a generated Dockerfile: the daemon reads both, then drops them from the context. */
export const GENERATED_DOCKERIGNORE = `${GENERATED_DOCKERFILE}\n.dockerignore\n`;
