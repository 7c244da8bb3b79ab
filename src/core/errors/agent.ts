import type { ErrorEntries } from './entry.js';

const RUN_COMMAND_HINT =
  'Check the run command (pilot.yaml `run`, the Procfile web: line or package.json start); it is looked up in the PATH of the app env.';

/** Errors raised in src/agent/. */
export const agentErrors = {
  invalidAgentToken: {
    code: 'unauthorized',
    message: 'invalid agent token',
  },
  noSuchInstanceNode: {
    code: 'not_found',
    message: 'no such instance on this node',
  },
  agentNotRegisteredYet: {
    code: 'unauthorized',
    message: 'agent is not registered yet',
  },
  cannotSetUpNetwork: {
    code: 'deploy_failed',
    message: (p: { message: string }) => `cannot set up the network namespace of the instance: ${p.message}`,
  },
  noFreeNetworkNamespace: {
    code: 'unavailable',
    message: 'no free network namespace block in 10.213.0.0/16 after 20 tries',
    hint: 'Remove stale namespaces: `ip netns list | grep pilot-`.',
  },
  instanceEmptyCommand: {
    code: 'deploy_failed',
    message: (p: { instanceId: string }) => `instance ${p.instanceId}: empty command`,
  },
  instanceCwdMissing: {
    code: 'deploy_failed',
    message: (p: { cwd: string; instanceId: string }) => `${p.cwd}: no such directory (instance ${p.instanceId})`,
  },
  instanceAlreadyRunning: {
    code: 'conflict',
    message: (p: { stateDir: string; pid: number }) => `${p.stateDir} already has a running instance (pid ${p.pid})`,
    hint: 'adopt() and stop() it first.',
  },
  cannotSetUpCgroup: {
    code: 'deploy_failed',
    message: (p: { instanceId: string; message: string }) => `cannot set up the cgroup of instance ${p.instanceId}: ${p.message}`,
  },
  cannotReadProcStat: {
    code: 'internal',
    message: (p: { pid: number }) => `cannot read /proc/${p.pid}/stat: is /proc mounted?`,
  },
  pidFileUnwritable: {
    code: 'deploy_failed',
    message: (p: { stateDir: string; message: string }) => `cannot write ${p.stateDir}: ${p.message}`,
  },
  instanceDidNotExit: {
    code: 'unavailable',
    message: (p: { instanceId: string; pid: number }) => `instance ${p.instanceId} (pid ${p.pid}) did not exit after SIGKILL`,
  },
  instanceWithoutImage: {
    code: 'deploy_failed',
    message: (p: { instanceId: string }) => `instance ${p.instanceId}: no image to run`,
  },
  instanceAlreadyRunsContainer: {
    code: 'conflict',
    message: (p: { instanceId: string; Id: string; name: string }) =>
      `instance ${p.instanceId} already runs as container ${p.Id} (${p.name})`,
    hint: 'adopt() and stop() it first.',
  },
  containerNamedAlreadyExists: {
    code: 'conflict',
    message: (p: { name: string; reason: string }) => `a container named ${p.name} already exists: ${p.reason}`,
  },
  imageNotOnEngine: {
    code: 'deploy_failed',
    message: (p: { image: string; instanceId: string }) => `image ${p.image} is not on the Docker engine (instance ${p.instanceId})`,
    hint: "The agent fetches the image before starting; check the revision's image.",
  },
  cannotCreateContainerInstance: {
    code: 'deploy_failed',
    message: (p: { instanceId: string; reason: string }) => `cannot create the container of instance ${p.instanceId}: ${p.reason}`,
  },
  cannotStartContainerInstance: {
    code: 'deploy_failed',
    message: (p: { instanceId: string; reason: string }) => `cannot start the container of instance ${p.instanceId}: ${p.reason}`,
  },
  cannotListContainers: {
    code: 'runtime_unavailable',
    message: (p: { reason: string }) => `cannot list containers: ${p.reason}`,
  },
  containerDidNotStop: {
    code: 'unavailable',
    message: (p: { id: string; instanceId: string }) => `container ${p.id} of instance ${p.instanceId} did not stop after SIGKILL`,
  },
  cannotCreateVolume: {
    code: 'deploy_failed',
    message: (p: { source: string; instanceId: string; reason: string }) =>
      `cannot create the volume ${p.source} for instance ${p.instanceId}: ${p.reason}`,
  },
  imageWithoutCommand: {
    code: 'deploy_failed',
    message: (p: { instanceId: string }) => `instance ${p.instanceId}: the image has no CMD and no run command was given`,
    hint: 'Set `run` in pilot.yaml or CMD in the Dockerfile.',
  },
  cannotLookUpCommand: {
    code: 'deploy_failed',
    message: (p: { cmd0: string; reason: string }) => `cannot look for ${p.cmd0} in the image: ${p.reason}`,
  },
  commandNotFoundInImage: {
    code: 'deploy_failed',
    message: (p: { cmd0: string; image: undefined | string; instanceId: string; pathVar: string }) =>
      `${p.cmd0}: command not found in image ${p.image} (instance ${p.instanceId}, PATH ${p.pathVar})`,
    hint: "Check the run command (pilot.yaml `run`, or the image's CMD/ENTRYPOINT); it is looked up in the image's PATH.",
  },
  cannotInspectContainer: {
    code: 'runtime_unavailable',
    message: (p: { idOrName: string; reason: string }) => `cannot inspect container ${p.idOrName}: ${p.reason}`,
  },
  cannotRemoveContainer: {
    code: 'runtime_unavailable',
    message: (p: { id: string; reason: string }) => `cannot remove container ${p.id}: ${p.reason}`,
  },
  dockerInstanceWithoutImage: {
    code: 'deploy_failed',
    message: (p: { id: string }) => `instance ${p.id} runs in docker but its revision has no image`,
  },
  releaseInstanceWithoutRelease: {
    code: 'deploy_failed',
    message: 'release instance without a release command',
  },
  dockerSideNotLoaded: {
    code: 'internal',
    message: (p: { id: string }) => `instance ${p.id} runs in docker but the Docker side is not loaded`,
  },
  releasePhaseNeedsProcess: {
    code: 'deploy_failed',
    message:
      'a release phase needs the process runtime (runtime: docker runs it in the image: use a Dockerfile step or an entrypoint for now)',
  },
  envValueHasNul: {
    code: 'deploy_failed',
    message: (p: { k: string; app: string }) =>
      `the environment variable ${p.k} contains a NUL byte and cannot be passed to a process (the value is not shown)`,
    hint: (p: { k: string; app: string }) =>
      `Set it again without NUL: \`pilot secrets set ${p.app} ${p.k} < FILE\`, or fix it in pilot.yaml.`,
  },
  instanceAlreadyRunningNoPid: {
    code: 'conflict',
    message: (p: { stateDir: string }) => `${p.stateDir} already has a running instance`,
    hint: 'adopt() and stop() it first.',
  },
  runCommandNotFound: {
    code: 'deploy_failed',
    message: (p: { argv0: string; where: string }) => `${p.argv0}: command not found ${p.where}`,
    hint: RUN_COMMAND_HINT,
  },
  runCommandNotExecutable: {
    code: 'deploy_failed',
    message: (p: { argv0: string; where: string }) => `${p.argv0}: permission denied, not executable ${p.where}`,
    hint: RUN_COMMAND_HINT,
  },
  runCommandCannotStart: {
    code: 'deploy_failed',
    message: (p: { argv0: string; message: string; where: string }) => `${p.argv0}: cannot start: ${p.message} ${p.where}`,
    hint: RUN_COMMAND_HINT,
  },
  injectedStartFailure: {
    code: 'deploy_failed',
    message: (p: { message: string }) => p.message,
  },
  dockerEngineUnavailable: {
    code: 'runtime_unavailable',
    message: (p: { error: string | undefined }) => p.error ?? 'the Docker engine does not answer',
  },
} as const satisfies ErrorEntries;
