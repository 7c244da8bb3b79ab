/**
 * Swarm service specs as values (Docker Engine API `ServiceSpec`): one service per revision of an
 * app, built from the InstanceSpec the control plane sends every agent. Pure: tests assert on the
 * spec. What goes where:
 *
 *   image        image.ref (a registry: every Swarm node can pull it), else the image ID (one node,
 *                the engine that built it)
 *   env          pilot.yaml env + PORT (a template: the block's prefix and the task's slot) +
 *                NODE_OPTIONS=--require /pilot/env.cjs; never a secret
 *   secrets      Swarm secrets, one per app secret, mounted at /run/secrets/env.<NAME>; the loader
 *                (a Swarm config at /pilot/env.cjs) copies them into process.env before the app starts
 *   health       the readiness probe as a HEALTHCHECK run by node inside the container: a task is
 *                `running` only once it passes (Swarm keeps it `starting` until then)
 *   network      host, like every instance here; no VIP (endpoint mode dnsrr, no published ports)
 *   labels       dev.pilot.target / app / revision / block, and dev.pilot.slot.<n> = the instance id
 *                of each slot (service labels: changing them restarts no task)
 */
import type { InstanceSpec } from '../core/types.js';
import { portTemplate } from '../core/target.js';

export const LABEL = {
  target: 'dev.pilot.target',
  app: 'dev.pilot.app',
  revision: 'dev.pilot.revision',
  block: 'dev.pilot.block',
  slotPrefix: 'dev.pilot.slot.',
  /** On a Swarm secret: the service that uses it (removed with it). */
  service: 'dev.pilot.service',
  loader: 'dev.pilot.env-loader',
} as const;

/** Where the env loader is mounted, and what it does (Swarm config; no shell in Pilot's images). */
export const LOADER_PATH = '/pilot/env.cjs';
export const LOADER_SOURCE = [
  '// Pilot: copy the Swarm secrets /run/secrets/env.NAME into process.env (a secret wins over env, as on agents).',
  "const fs = require('fs');",
  "const dir = '/run/secrets';",
  'let names = [];',
  'try { names = fs.readdirSync(dir); } catch {}',
  "for (const f of names) if (f.startsWith('env.')) process.env[f.slice(4)] = fs.readFileSync(dir + '/' + f, 'utf8');",
  '',
].join('\n');

/** A Swarm name (services, secrets, configs: at most 63 characters): target, app, revision. */
export function serviceName(target: string, app: string, revision: number): string {
  const tail = `-r${revision}`;
  return `${target}-${app}`.slice(0, 63 - tail.length) + tail;
}

/** The Swarm secret that holds one app secret for one service (immutable: a new deploy makes new ones). */
export function secretName(service: string, name: string, nonce: string): string {
  return `${service}-${name.toLowerCase().replace(/_/g, '-')}-${nonce}`.slice(0, 64);
}

/** The readiness probe as a HEALTHCHECK argv (exec form; node is in every image Pilot builds). */
export function healthTest(path: string): string[] {
  const script =
    `const r=require('http').get({host:'127.0.0.1',port:process.env.PORT,path:${JSON.stringify(path)},timeout:5000},` +
    `(s)=>{s.resume();process.exit(s.statusCode>=200&&s.statusCode<400?0:1)});` +
    `r.on('error',()=>process.exit(1));r.on('timeout',()=>{r.destroy();process.exit(1)})`;
  return ['CMD', 'node', '-e', script];
}

export interface ServiceInput {
  readonly target: string;
  readonly spec: InstanceSpec;
  /** The first port of the service's block (a multiple of 100). */
  readonly block: number;
  readonly replicas: number;
  /** slot → instance id. */
  readonly slots: ReadonlyMap<number, string>;
  /** App secret name → Swarm secret { id, name }. */
  readonly secrets: ReadonlyMap<string, { readonly id: string; readonly name: string }>;
  /** The env loader (Swarm config), when the app has secrets. */
  readonly loader: { readonly id: string; readonly name: string } | undefined;
}

const NS_PER_MS = 1_000_000;

/** The ServiceSpec of one revision. Secrets never appear in Env: only their references. */
export function buildServiceSpec(input: ServiceInput): Record<string, unknown> {
  const { spec, target } = input;
  const secretKeys = new Set(spec.secretNames ?? []);
  const env = Object.entries(spec.env)
    .filter(([k]) => !secretKeys.has(k) && k !== 'PORT')
    .map(([k, v]) => (k === 'NODE_OPTIONS' && input.loader ? `NODE_OPTIONS=--require=${LOADER_PATH} ${v}` : `${k}=${v}`));
  env.push(portTemplate(input.block));
  if (input.loader && !('NODE_OPTIONS' in spec.env)) env.push(`NODE_OPTIONS=--require=${LOADER_PATH}`);
  const name = serviceName(target, spec.app, spec.revision);
  const labels: Record<string, string> = {
    [LABEL.target]: target,
    [LABEL.app]: spec.app,
    [LABEL.revision]: String(spec.revision),
    [LABEL.block]: String(input.block),
  };
  for (const [slot, id] of input.slots) labels[`${LABEL.slotPrefix}${slot}`] = id;
  const cpu = spec.resources?.cpu;
  const mem = spec.resources?.memoryMb;
  const image = spec.image?.ref ?? spec.image?.id;
  return {
    Name: name,
    Labels: labels,
    TaskTemplate: {
      ContainerSpec: {
        Image: image,
        ...(spec.run && spec.run.length > 0 ? { Args: [...spec.run] } : {}),
        Env: env,
        Labels: { [LABEL.target]: target, [LABEL.app]: spec.app, [LABEL.revision]: String(spec.revision) },
        // An init as PID 1 (as the agents' `docker run --init`): the app gets SIGTERM as it would
        // outside a container (PID 1 ignores signals it has no handler for), and zombies are reaped.
        Init: true,
        StopGracePeriod: spec.stopTimeoutMs * NS_PER_MS,
        Healthcheck: {
          Test: healthTest(spec.health.path),
          Interval: Math.max(spec.health.intervalMs, 500) * NS_PER_MS,
          Timeout: Math.max(spec.health.timeoutMs, 500) * NS_PER_MS,
          Retries: 3,
        },
        Secrets: [...input.secrets].map(([key, s]) => ({
          SecretID: s.id,
          SecretName: s.name,
          File: { Name: `env.${key}`, UID: '0', GID: '0', Mode: 0o444 },
        })),
        ...(input.loader
          ? {
              Configs: [
                { ConfigID: input.loader.id, ConfigName: input.loader.name, File: { Name: LOADER_PATH, UID: '0', GID: '0', Mode: 0o444 } },
              ],
            }
          : {}),
      },
      Resources: {
        Limits: {
          ...(cpu !== undefined ? { NanoCPUs: Math.round(cpu * 1e9) } : {}),
          ...(mem !== undefined ? { MemoryBytes: mem * 1024 * 1024 } : {}),
        },
      },
      // A task that dies is replaced in its slot (same port) after a second; the router follows.
      RestartPolicy: { Condition: 'any', Delay: 1000 * NS_PER_MS, MaxAttempts: 0 },
      Networks: [{ Target: 'host' }],
    },
    Mode: { Replicated: { Replicas: input.replicas } },
    EndpointSpec: { Mode: 'dnsrr' },
  };
}
