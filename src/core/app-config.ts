/**
 * pilot.yaml: the app's configuration, its schema (published as schema/pilot.schema.json) and its
 * validation into a resolved AppConfig with every default filled in. Pure: the caller reads files.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { fail } from './errors.js';
import { splitCommand } from './split-command.js';
import { volumeEnvName, type VolumeConfig } from './volume-env.js';
import { DURATION_PATTERN, parseDuration } from './duration.js';
import { isValidName } from './names.js';
import { resolveStrategy, StrategySchema, type Strategy } from './strategy.js';
import { AutoscaleSchema, MAX_REPLICAS, resolveAutoscale, type AutoscaleSpec } from './autoscale-config.js';
import { HttpLimitsSchema, resolveHttpLimits } from './http-limits.js';
import type { RouteHttp } from './routes.js';
import { TARGET_LABEL } from './scheduler.js';

/** A volume's name in pilot.yaml. */
export const VOLUME_NAME = '^[a-z][a-z0-9-]{0,30}$';
/** Container paths a volume may not be mounted on: the system's own folders, and the app itself. */
const RESERVED_PATHS = [
  '/app',
  '/bin',
  '/dev',
  '/etc',
  '/lib',
  '/lib64',
  '/proc',
  '/root',
  '/sbin',
  '/sys',
  '/tmp',
  '/usr',
  '/var',
  '/home',
];

const Duration = Type.Union([Type.String({ pattern: DURATION_PATTERN }), Type.Number({ minimum: 0 })], {
  description: 'A duration: "500ms", "2s", "1m", or a number of seconds',
});
/** A duration field with what it means (docs/pilot-yaml.md shows it). */
const duration = (what: string) => Type.Union(Duration.anyOf, { description: `${what}. ${Duration.description!}` });
const Command = Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String(), { minItems: 1 })], {
  description: 'A command: an argv list, or a string split on whitespace (quotes group words; no shell)',
});

export const AppConfigSchema = Type.Object(
  {
    name: Type.Optional(
      Type.String({ pattern: '^[a-z][a-z0-9-]{0,62}$', description: 'App name; defaults to package.json name or the folder name' }),
    ),
    runtime: Type.Optional(
      Type.Union([Type.Literal('process'), Type.Literal('docker')], {
        description:
          "How instances run: process (default; a supervised process) or docker (a container built from the app's Dockerfile, or a generated one)",
      }),
    ),
    node: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 64,
        pattern: '^[0-9vx*^~<>=|. -]+$',
        description:
          'Node.js version for the process runtime: exact ("22.23.3") or a semver range ("22.x", "^20.11"). Default: .node-version, .nvmrc, package.json engines.node, else the version that built the app',
      }),
    ),
    dockerfile: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 255,
        pattern: '^[^/\\0][^\\0]*$',
        description:
          'Dockerfile path relative to the app folder (runtime: docker). Default: Dockerfile, else a generated one for a Node app',
      }),
    ),
    build: Type.Optional(
      Type.Array(Command, {
        description:
          'Build commands, run in order in a clean workspace after dependencies are installed by the lockfile (npm ci, yarn, pnpm). Default: `npm run build` when package.json has a build script',
      }),
    ),
    run: Type.Optional(
      Type.Union(Command.anyOf, {
        description: `How an instance starts. Default: the Procfile web: line, else npm start. ${Command.description!}`,
      }),
    ),
    port: Type.Optional(
      Type.Integer({
        minimum: 1024,
        maximum: 65535,
        description:
          'A fixed port the app listens on (1024-65535: apps run unprivileged and cannot bind below 1024; the router serves 80/443). Default: the app reads $PORT',
      }),
    ),
    env: Type.Optional(
      Type.Record(
        Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }),
        Type.String({ description: 'The value, passed intact (no shell)' }),
        {
          description: 'Environment variables for the app',
          additionalProperties: false,
        },
      ),
    ),
    hosts: Type.Optional(
      Type.Array(Type.String({ pattern: '^[a-zA-Z0-9.-]+$', maxLength: 253 }), {
        description: 'Extra Host names the router sends to this app (besides <name>.localhost)',
      }),
    ),
    https: Type.Optional(
      Type.Object(
        {
          redirect: Type.Optional(
            Type.Boolean({ description: 'Answer http:// requests for the hosts with a 308 to https:// (once a certificate is served)' }),
          ),
          hsts: Type.Optional(
            Type.Union([Type.Boolean(), Type.Integer({ minimum: 0, maximum: 63072000 })], {
              description: 'Strict-Transport-Security on HTTPS answers: true (max-age 1 year) or a max-age in seconds',
            }),
          ),
        },
        { additionalProperties: false, description: "HTTPS options of the app's hosts" },
      ),
    ),
    http: Type.Optional(HttpLimitsSchema),
    replicas: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: MAX_REPLICAS,
        description: 'Instances to run (default 1; with autoscale: its min); `pilot scale` changes it until the next deploy',
      }),
    ),
    autoscale: Type.Optional(AutoscaleSchema),
    target: Type.Optional(
      Type.String({
        pattern: '^[a-z][a-z0-9-]{0,55}$',
        description:
          'A deploy target added with `pilot targets add NAME --docker URL` (Docker Swarm): the app runs as Swarm services (runtime: docker) instead of on Pilot agents',
      }),
    ),
    constraints: Type.Optional(
      Type.Record(
        Type.String({ pattern: '^[a-z][a-z0-9._/-]{0,62}$' }),
        Type.String({ maxLength: 63, description: "The value the node's label must have" }),
        {
          additionalProperties: false,
          description: 'Node labels an instance requires, e.g. { zone: eu-1 } (agents: `pilot agent --label zone=eu-1`)',
        },
      ),
    ),
    resources: Type.Optional(
      Type.Object(
        {
          cpu: Type.Optional(
            Type.Number({
              exclusiveMinimum: 0,
              maximum: 1024,
              description: 'CPUs each instance needs (0.5 = half a core); the scheduler only places it where they are free',
            }),
          ),
          memory: Type.Optional(
            Type.Union([Type.String({ pattern: '^\\d+(\\.\\d+)?\\s*(MB|GB|M|G|MiB|GiB)$' }), Type.Integer({ minimum: 1 })], {
              description: 'Memory each instance needs: "256MB", "1GB", or a number of MB',
            }),
          ),
        },
        {
          additionalProperties: false,
          description: 'What each instance needs; the scheduler places it only on a node with that much free',
        },
      ),
    ),
    health: Type.Optional(
      Type.Object(
        {
          path: Type.Optional(Type.String({ pattern: '^/', description: 'HTTP path probed; any status < 500 is healthy' })),
          interval: Type.Optional(duration('Time between probes (default 1s)')),
          timeout: Type.Optional(duration('How long a probe may take (default 2s)')),
        },
        { additionalProperties: false, description: 'The readiness probe: GET path answering below 500 (default GET /)' },
      ),
    ),
    deploy: Type.Optional(
      Type.Object(
        {
          ready_timeout: Type.Optional(
            duration('How long a new instance may take to get ready before the deploy is abandoned (default 60s)'),
          ),
          drain: Type.Optional(
            duration('How long an old instance keeps serving its open requests after it left the routing table (default 1s)'),
          ),
          stop_timeout: Type.Optional(duration('SIGTERM, then SIGKILL after this long (default 10s)')),
          release_timeout: Type.Optional(
            duration('Longest run of the release command before it is killed and the deploy fails (default 5m)'),
          ),
        },
        { additionalProperties: false, description: 'Deploy timings' },
      ),
    ),
    strategy: Type.Optional(StrategySchema),
    volumes: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: Type.String({
              pattern: VOLUME_NAME,
              description:
                'Volume name: 1-31 lowercase letters, digits and "-", starting with a letter. The app finds it in $PILOT_VOLUME_<NAME> (upper case, "-" as "_")',
            }),
            path: Type.Optional(
              Type.String({
                pattern: '^(/[A-Za-z0-9._-]+)+$',
                maxLength: 200,
                description: 'runtime docker: where the volume is mounted in the container. Default: /data/<name>',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        {
          maxItems: 8,
          description:
            "Named data that survives deploys and restarts, kept on one node: the app's instances are placed only on the node that holds it (`pilot volumes`)",
        },
      ),
    ),
    timeouts: Type.Optional(
      Type.Object(
        {
          build_step: Type.Optional(duration('Longest run of one build step (install, build commands) before it is killed (default 15m)')),
        },
        { additionalProperties: false, description: 'Build timeouts' },
      ),
    ),
    release: Type.Optional(
      Type.Union([Command, Type.Literal(false)], {
        description:
          "Release phase: a command run once per deploy, on one node, with the new revision and the app's env, before traffic moves (migrations); a failure stops the deploy. Default: the Procfile release: line. false: none",
      }),
    ),
    build_cache: Type.Optional(
      Type.Boolean({
        description:
          "Reuse installed dependencies between builds (default true): an unchanged lockfile, Node.js version, platform and package manager version restore node_modules from the build machine's cache and skip the install; `pilot run --no-cache` bypasses it once",
      }),
    ),
    prune_dev_dependencies: Type.Optional(
      Type.Boolean({
        description:
          'Remove devDependencies from node_modules after the build commands ran, before packaging (default true): `npm prune --omit=dev`, `pnpm prune --prod`, yarn 1 `install --production`',
      }),
    ),
  },
  { additionalProperties: false, $id: 'https://pilot.dev/schema/pilot.schema.json', title: 'pilot.yaml' },
);

export type AppConfigInput = Static<typeof AppConfigSchema>;

/** The config with every default resolved; what a revision records. */
export interface AppConfig {
  readonly name: string;
  readonly runtime: 'process' | 'docker';
  /** Wanted Node.js version (exact or range) as written in pilot.yaml; undefined = from the app's files. */
  readonly node: string | undefined;
  /** Dockerfile path relative to the app folder; undefined = Dockerfile if present, else generated. */
  readonly dockerfile: string | undefined;
  /** Build commands as argv lists; undefined = the default for the detected package manager. */
  readonly build: readonly (readonly string[])[] | undefined;
  /** Run command argv; undefined = Procfile `web:` or `npm start`, decided from the artifact. */
  readonly run: readonly string[] | undefined;
  /** Release phase argv; undefined = none (the pipeline fills it from the Procfile `release:` line). */
  readonly release: readonly string[] | undefined;
  /** pilot.yaml build_cache (default true). */
  readonly buildCache: boolean;
  /** pilot.yaml prune_dev_dependencies (default true). */
  readonly pruneDevDependencies: boolean;
  readonly port: number | undefined;
  readonly env: Readonly<Record<string, string>>;
  readonly hosts: readonly string[];
  /** pilot.yaml `https`: redirect HTTP to HTTPS, HSTS max-age in seconds (0: none); absent in configs stored before it existed. */
  readonly https?: { readonly redirect: boolean; readonly hstsMaxAge: number };
  /** pilot.yaml `http` (core/http-limits.ts) in milliseconds and bytes; absent: the router's defaults. */
  readonly http?: RouteHttp;
  readonly replicas: number;
  /** pilot.yaml `autoscale` (core/autoscale-config.ts); undefined: the count is set by `replicas` and `pilot scale`. */
  readonly autoscale?: AutoscaleSpec | undefined;
  /** What each instance needs; undefined = no request (placed anywhere). */
  readonly resources: { readonly cpu: number | undefined; readonly memoryMb: number | undefined };
  /** Node labels every instance needs (with `target`: also `pilot.target=<target>`). */
  readonly constraints: Readonly<Record<string, string>>;
  /** pilot.yaml `target`: the deploy target (Swarm) that runs it; undefined = Pilot's agents. */
  readonly target?: string | undefined;
  readonly health: { readonly path: string; readonly intervalMs: number; readonly timeoutMs: number };
  readonly deploy: {
    readonly readyTimeoutMs: number;
    readonly drainMs: number;
    readonly stopTimeoutMs: number;
    readonly releaseTimeoutMs: number;
  };
  readonly buildStepTimeoutMs: number;
  /** How a deploy moves to the new revision (pilot.yaml strategy; core/strategy.ts). Revisions recorded before it existed read as the default. */
  readonly strategy: Strategy;
  /** Named data kept across deploys on one node (see volumeEnvName). */
  readonly volumes: readonly VolumeConfig[];
}

// In their own file so the agent reads them without loading TypeBox.
export { volumeEnvName, type VolumeConfig };

/** Resolve pilot.yaml volumes (default paths) and refuse duplicates and paths that would hide the system or the app. */
function resolveVolumes(input: AppConfigInput): VolumeConfig[] {
  const out: VolumeConfig[] = [];
  for (const v of input.volumes ?? []) {
    const path = v.path ?? `/data/${v.name}`;
    const segments = path.split('/').slice(1);
    if (segments.some((s) => s === '.' || s === '..')) throw fail.volumePathHasDots({ name: v.name, path });
    const reserved = RESERVED_PATHS.find((r) => path === r || (r !== '/app' && r !== '/home' && path.startsWith(`${r}/`)));
    if (reserved) {
      throw fail.volumePathReserved({ name: v.name, path, reserved });
    }
    if (out.some((o) => o.name === v.name)) throw fail.volumeNameTwice({ name: v.name });
    const clash = out.find((o) => o.path === path || path.startsWith(`${o.path}/`) || o.path.startsWith(`${path}/`));
    if (clash) throw fail.volumePathsOverlap({ name: v.name, path, otherName: clash.name, otherPath: clash.path });
    out.push({ name: v.name, path });
  }
  return out;
}

// Re-exported: it lives in its own file so the agent splits commands without loading TypeBox.
export { splitCommand };

function toArgv(c: string | string[]): string[] {
  return typeof c === 'string' ? splitCommand(c) : [...c];
}

function describeSchema(schema: TSchema): string {
  if (schema.enum) return `one of ${JSON.stringify(schema.enum)}`;
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.anyOf) return (schema.anyOf as TSchema[]).map(describeSchema).join(' or ');
  const parts: string[] = [String(schema.type ?? 'value')];
  if (schema.minimum !== undefined) parts.push(`>= ${schema.minimum}`);
  if (schema.exclusiveMinimum !== undefined) parts.push(`> ${schema.exclusiveMinimum}`);
  if (schema.maximum !== undefined) parts.push(`<= ${schema.maximum}`);
  if (schema.pattern !== undefined) parts.push(`matching ${schema.pattern}`);
  if (schema.minLength !== undefined) parts.push(`of length >= ${schema.minLength}`);
  if (schema.minItems !== undefined) parts.push(`with >= ${schema.minItems} items`);
  return parts.join(' ');
}

function fieldOf(path: string): string {
  return path === '' ? '(top level)' : path.slice(1).replaceAll('/', '.');
}

/** Validate raw parsed YAML; throws invalid_config naming each bad field and what is allowed. */
export function validateAppConfig(raw: unknown, source = 'pilot.yaml'): AppConfigInput {
  if (raw === null || raw === undefined) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw fail.configNotMapping({ source });
  }
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const e of Value.Errors(AppConfigSchema, raw)) {
    if (seen.has(e.path)) continue;
    seen.add(e.path);
    const field = fieldOf(e.path);
    const parent = e.path.slice(0, e.path.lastIndexOf('/'));
    const parentSchema = parent === '' ? AppConfigSchema : undefined;
    if (e.path.startsWith('/env/') && e.message.includes('Unexpected property')) {
      problems.push(`${field}: environment variable names must match ^[A-Za-z_][A-Za-z0-9_]*$`);
    } else if (e.message.includes('Unexpected property')) {
      const allowed = parentSchema ? Object.keys(AppConfigSchema.properties).join(', ') : 'see the schema';
      problems.push(`${field}: unknown field (allowed: ${allowed})`);
    } else {
      problems.push(`${field}: must be ${describeSchema(e.schema)} (got ${JSON.stringify(e.value)})`);
    }
  }
  if (problems.length > 0) {
    throw fail.invalidConfig({ source, problems: problems.join('; ') }, { details: { problems } });
  }
  return raw as AppConfigInput;
}

/** Megabytes from "256MB", "1.5GB", "512MiB" or a number of MB. */
function memoryMb(v: string | number | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'number') return v;
  const m = /^(\d+(?:\.\d+)?)\s*(MB|GB|M|G|MiB|GiB)$/.exec(v.trim());
  if (!m) return undefined;
  return Math.ceil(Number(m[1]) * (m[2]!.startsWith('G') ? 1024 : 1));
}

const ms = (v: string | number | undefined, dflt: number): number => (v === undefined ? dflt : (parseDuration(v) ?? dflt));

/** Fill in the defaults. `fallbackName` comes from package.json or the folder name. */
export function resolveAppConfig(input: AppConfigInput, fallbackName: string | undefined): AppConfig {
  const name = input.name ?? fallbackName;
  if (!isValidName(name)) {
    throw fail.configNameInvalid({ name: name ?? null });
  }
  const health = input.health ?? {};
  const deploy = input.deploy ?? {};
  const volumes = resolveVolumes(input);
  if (volumes.length > 0 && input.port !== undefined && (input.replicas ?? 1) > 1) {
    throw fail.volumesWithFixedPort({ port: input.port, replicas: input.replicas });
  }
  const strategy = resolveStrategy(input.strategy);
  if ('problems' in strategy) {
    throw fail.invalidConfig(
      { source: 'pilot.yaml', problems: strategy.problems.join('; ') },
      { details: { problems: strategy.problems } },
    );
  }
  const http = resolveHttpLimits(input.http);
  if ('problems' in http) {
    throw fail.invalidConfig({ source: 'pilot.yaml', problems: http.problems.join('; ') }, { details: { problems: http.problems } });
  }
  const autoscale = resolveAutoscale(input.autoscale, input.replicas);
  if (autoscale && autoscale.max > 1 && volumes.length > 0 && input.port !== undefined) {
    throw fail.autoscaleWithVolumesFixedPort({ port: input.port, max: autoscale.max });
  }
  return {
    name,
    runtime: input.runtime ?? 'process',
    node: input.node,
    dockerfile: input.dockerfile,
    build: input.build?.map(toArgv),
    run: input.run === undefined ? undefined : toArgv(input.run),
    release: input.release === undefined || input.release === false ? undefined : toArgv(input.release),
    buildCache: input.build_cache ?? true,
    pruneDevDependencies: input.prune_dev_dependencies ?? true,
    port: input.port,
    env: { ...(input.env ?? {}) },
    hosts: [...(input.hosts ?? [])].map((h) => h.toLowerCase()),
    ...(input.https
      ? {
          https: {
            redirect: input.https.redirect ?? false,
            hstsMaxAge: input.https.hsts === true ? 31536000 : input.https.hsts === false ? 0 : (input.https.hsts ?? 0),
          },
        }
      : {}),
    ...(http.http === undefined ? {} : { http: http.http }),
    replicas: input.replicas ?? autoscale?.min ?? 1,
    autoscale,
    resources: { cpu: input.resources?.cpu, memoryMb: memoryMb(input.resources?.memory) },
    // A target is a constraint on its node's label: the scheduler places the app there and nowhere else.
    constraints: { ...(input.constraints ?? {}), ...(input.target === undefined ? {} : { [TARGET_LABEL]: input.target }) },
    ...(input.target === undefined ? {} : { target: input.target }),
    health: {
      path: health.path ?? '/',
      intervalMs: ms(health.interval, 1000),
      timeoutMs: ms(health.timeout, 2000),
    },
    deploy: {
      readyTimeoutMs: ms(deploy.ready_timeout, 60_000),
      drainMs: ms(deploy.drain, 1000),
      stopTimeoutMs: ms(deploy.stop_timeout, 10_000),
      releaseTimeoutMs: ms(deploy.release_timeout, 5 * 60_000),
    },
    buildStepTimeoutMs: ms(input.timeouts?.build_step, 15 * 60_000),
    strategy: strategy.strategy,
    volumes,
  };
}
