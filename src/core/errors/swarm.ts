import type { ErrorEntries } from './entry.js';

const ADD_HINT = 'Add it with `pilot targets add NAME --docker unix:///var/run/docker.sock` (`pilot targets list` shows the targets).';

/** Errors of deploy targets (src/swarm/, control/target-routes.ts): Docker Swarm run by Pilot's router. */
export const swarmErrors = {
  targetUnknown: {
    code: 'target_not_found',
    message: (p: { target: string }) => `no deploy target named "${p.target}"`,
    hint: ADD_HINT,
  },
  targetExists: {
    code: 'target_conflict',
    message: (p: { target: string; docker: string }) => `deploy target "${p.target}" already exists (docker ${p.docker})`,
    hint: 'Remove it first with `pilot targets remove NAME`, or pick another name.',
  },
  targetInUse: {
    code: 'target_conflict',
    message: (p: { target: string; apps: string }) => `deploy target "${p.target}" still runs apps: ${p.apps}`,
    hint: 'Remove those apps (`pilot apps rm APP`) or deploy them without `target:` first.',
  },
  targetDockerUrl: {
    code: 'invalid_target',
    message: (p: { value: string }) =>
      `--docker ${JSON.stringify(p.value.slice(0, 200))} is not a Docker Engine address: use unix:///path/to/docker.sock or tcp://127.0.0.1:2375`,
  },
  targetUnreachable: {
    code: 'target_unavailable',
    message: (p: { target: string; docker: string; error: string }) =>
      `deploy target "${p.target}": the Docker Engine at ${p.docker} does not answer (${p.error})`,
    hint: 'Start dockerd there (or fix --docker), then try again; apps on Pilot agents are not affected.',
  },
  swarmNotInitialised: {
    code: 'target_unavailable',
    message: (p: { target: string; docker: string; state: string }) =>
      `deploy target "${p.target}": the Docker Engine at ${p.docker} is not a Swarm manager (swarm state: ${p.state || 'inactive'})`,
    hint: 'Run `docker swarm init --advertise-addr <address>` on that machine (or point --docker at a manager).',
  },
  targetNotReady: {
    code: 'target_unavailable',
    message: (p: { target: string; why: string }) => `deploy target "${p.target}" cannot run a deploy now: ${p.why}`,
    hint: '`pilot targets list` shows what the target reported last; start the Swarm manager and deploy again.',
  },
  targetNeedsDocker: {
    code: 'invalid_config',
    message: (p: { target: string }) => `target: ${p.target} runs images: it needs runtime: docker in pilot.yaml`,
  },
  targetFixedPort: {
    code: 'invalid_config',
    message: (p: { target: string; port: number }) =>
      `target: ${p.target} gives every Swarm task its own port (PORT): remove port: ${p.port} from pilot.yaml`,
  },
  targetVolumes: {
    code: 'invalid_config',
    message: (p: { target: string }) =>
      `target: ${p.target} does not keep volumes yet: remove volumes: from pilot.yaml (or deploy the app on Pilot's agents)`,
  },
  targetTooManyReplicas: {
    code: 'invalid_config',
    message: (p: { target: string; replicas: number }) =>
      `target: ${p.target} runs at most 99 replicas of a revision (each task's port is its block's prefix and its two-digit slot); asked for ${p.replicas}`,
  },
  swarmCall: {
    code: 'target_unavailable',
    message: (p: { what: string; error: string }) => `Swarm: ${p.what} failed: ${p.error}`,
  },
  swarmPortsExhausted: {
    code: 'target_unavailable',
    message: (p: { target: string; range: string }) => `deploy target "${p.target}": every port block of ${p.range} is taken by a service`,
    hint: 'Remove apps of this target, or re-add it with a wider --ports range.',
  },
  targetPortRange: {
    code: 'invalid_target',
    message: (p: { value: string }) =>
      `--ports ${JSON.stringify(p.value.slice(0, 100))} is not a range of port blocks: use FROM-TO with 1000 ≤ FROM < TO ≤ 65499, both multiples of 100 (e.g. 20000-29900)`,
  },
} as const satisfies ErrorEntries;
