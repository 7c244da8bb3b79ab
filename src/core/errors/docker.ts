import type { ErrorEntries } from './entry.js';

const IMAGE_MISMATCH_HINT =
  'The registry or artifact repository holds another image than the revision recorded; publish the revision again (`pilot run`).';

/** Errors raised in src/docker/. */
export const dockerErrors = {
  dockerBuildFailed: {
    code: 'build_failed',
    message: (p: { failure: string }) => `docker build failed: ${p.failure}`,
  },
  dockerBuildWithoutImage: {
    code: 'build_failed',
    message: 'docker build finished without an image ID',
  },
  imageArchiveWithoutManifest: {
    code: 'deploy_failed',
    message: 'the image archive has no manifest.json: it is not a `docker save` tarball',
  },
  manifestTooLarge: {
    code: 'deploy_failed',
    message: "the image archive's manifest.json is too large",
  },
  manifestNotJson: {
    code: 'deploy_failed',
    message: "the image archive's manifest.json is not JSON",
  },
  manifestNotList: {
    code: 'deploy_failed',
    message: "the image archive's manifest.json is not a list",
  },
  manifestWithoutConfig: {
    code: 'deploy_failed',
    message: "the image archive's manifest.json names no config digest",
  },
  invalidImageId: {
    code: 'deploy_failed',
    message: (p: { id: string }) => `image id ${JSON.stringify(p.id)} is not sha256:<64 hex>`,
  },
  cannotInspectImage: {
    code: 'runtime_unavailable',
    message: (p: { idOrRef: string; reason: string }) => `cannot inspect image ${p.idOrRef}: ${p.reason}`,
  },
  imageUnreachable: {
    code: 'deploy_failed',
    message: (p: { id: string }) =>
      `image ${p.id} is not on this engine, and the revision names neither a registry reference nor an archive to get it from`,
  },
  imageRefNotPinned: {
    code: 'deploy_failed',
    message: (p: { ref: string }) => `image reference ${JSON.stringify(p.ref)} is not pinned by digest (host/repo@sha256:…)`,
    hint: 'Pilot pulls only by manifest digest, so the bytes cannot change under a revision.',
  },
  pullFailed: {
    code: 'registry_unreachable',
    message: (p: { ref: string; reason: string }) => `pull of ${p.ref} failed: ${p.reason}`,
    hint: 'Check that the registry is running and reachable from this node, and its credentials (pilot registries).',
  },
  dockerLoadFailed: {
    code: 'deploy_failed',
    message: (p: { archive: string; reason: string }) => `docker load of ${p.archive} failed: ${p.reason}`,
  },
  lddFailed: {
    code: 'internal',
    message: (p: { bin: string; tail: string }) => `ldd ${p.bin} failed: ${p.tail}`,
  },
  nodeVersionFailed: {
    code: 'internal',
    message: (p: { nodeBin: string; tail: string }) => `${p.nodeBin} --version failed: ${p.tail}`,
  },
  dockerfileOutsideApp: {
    code: 'invalid_config',
    message: (p: { path: string }) => `pilot.yaml: dockerfile: ${JSON.stringify(p.path)} must be a file inside the app folder`,
  },
  dockerfileMissing: {
    code: 'invalid_config',
    message: (p: { rel: string }) => `pilot.yaml: dockerfile: ${p.rel} does not exist in the app folder`,
    hint: 'Commit the Dockerfile, or remove `dockerfile:` to use Dockerfile (or a generated one for a Node app).',
  },
  dockerfileNotRegular: {
    code: 'invalid_config',
    message: (p: { rel: string }) => `pilot.yaml: dockerfile: ${p.rel} is not a regular file inside the app folder`,
  },
  notRegularFile: {
    code: 'invalid_config',
    message: (p: { name: string; symlink: boolean }) =>
      `${p.name} must be a regular file in the app folder (it is a ${p.symlink ? 'symbolic link' : 'folder or special file'})`,
    hint: (p: { name: string; symlink: boolean }) => `Replace ${p.name} with the file itself.`,
  },
  noDockerfileNoBase: {
    code: 'invalid_config',
    message: (p: { problem: string; baseImage: string }) =>
      `runtime docker without a Dockerfile: ${p.problem}, and the generated image (${p.baseImage}) has no shell`,
    hint: 'Add a Dockerfile to the app (or `dockerfile:` in pilot.yaml), or make the start command a plain node command: `run: node server.js` in pilot.yaml, a Procfile `web: node server.js`, or package.json "start": "node server.js".',
  },
  baseImageMissing: {
    code: 'base_image_missing',
    message: (p: { base: string; node: string }) =>
      `the base image ${p.base} for a generated Dockerfile is not on this machine's Docker engine`,
    hint: (p: { base: string; node: string }) =>
      `Run \`pilot images bootstrap-node\` on this machine (it builds ${p.node} from its own Node.js), set PILOT_NODE_BASE_IMAGE to an image you have, or add a Dockerfile to the app.`,
  },
  dockerBuildCancelled: {
    code: 'cancelled',
    message: 'docker build cancelled',
  },
  buildFailed: {
    code: 'build_failed',
    message: (p: { message: string; tail: readonly string[] }) =>
      `${p.message}${p.tail.length > 0 ? `\n--- last lines of the build log ---\n${p.tail.join('\n')}` : ''}`,
    hint: 'Fix the Dockerfile (or the app); the build log above says where it stopped. The revision that was live keeps serving.',
  },
  buildToolsNameTaken: {
    code: 'invalid_config',
    message: (p: { buildToolsDir: string }) =>
      `the app has a ${p.buildToolsDir} entry, a name the generated Dockerfile keeps for its build stage`,
    hint: (p: { buildToolsDir: string }) => `Rename ${p.buildToolsDir} in the app, or add a Dockerfile.`,
  },
  engineNotAnswering: {
    code: 'runtime_unavailable',
    message: (p: { what: string; msg: string }) => `${p.what}: the Docker engine is not answering (${p.msg})`,
  },
  engineRefused: {
    code: 'build_failed',
    message: (p: { what: string; msg: string }) => `${p.what}: the Docker engine answered: ${p.msg}`,
  },
  dockerSaveOutsideArchive: {
    code: 'internal',
    message: (p: { id: string; rel: string }) => `docker save of ${p.id} names ${JSON.stringify(p.rel)}, outside the archive`,
  },
  dockerSaveImageCount: {
    code: 'internal',
    message: (p: { id: string; entriesCount: number }) => `docker save of ${p.id} holds ${p.entriesCount} images, expected 1`,
  },
  dockerSaveWrongConfig: {
    code: 'internal',
    message: (p: { id: string; digest: string }) => `docker save of ${p.id} holds the config of ${p.digest}`,
  },
  imageArchiveIncomplete: {
    code: 'internal',
    message: (p: { file: string }) => `the image archive ${p.file} was not written whole`,
  },
  pushRefused: {
    code: 'registry_refused',
    message: (p: { url: string; name: string; tag: string; why: string }) =>
      `the registry ${p.url} refused the push of ${p.name}:${p.tag}: ${p.why}`,
  },
  pushFailed: {
    code: 'registry_unreachable',
    message: (p: { name: string; tag: string; url: string; why: string }) =>
      `cannot push ${p.name}:${p.tag} to the registry ${p.url}: ${p.why}`,
    hint: (p: { name: string; tag: string; url: string; why: string }) =>
      `Start the registry at ${p.url} (or point Pilot at another one with \`pilot registry set URL\`), then run again: a retry sends only the layers the registry does not have.`,
  },
  pulledImageDiffers: {
    code: 'digest_mismatch',
    message: (p: { got: string; id: string; ref: string }) => `pulled image ${p.got} differs from the recorded ${p.id} (${p.ref})`,
    hint: IMAGE_MISMATCH_HINT,
  },
  archiveHoldsOtherImage: {
    code: 'digest_mismatch',
    message: (p: { archive: string; ids: string; id: string }) => `image archive ${p.archive} holds ${p.ids}, not the recorded ${p.id}`,
    hint: IMAGE_MISMATCH_HINT,
  },
  loadedImageDiffers: {
    code: 'digest_mismatch',
    message: (p: { got: string; id: string; archive: string }) =>
      `loaded image ${p.got} differs from the recorded ${p.id} (archive ${p.archive})`,
    hint: IMAGE_MISMATCH_HINT,
  },
} as const satisfies ErrorEntries;
