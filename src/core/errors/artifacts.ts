import type { ErrorEntries } from './entry.js';

/** An answer without a Pilot error body (HEAD, or not from Pilot): what the client was doing, and the status. */
const answered = (p: { message: string; status: number }): string => `${p.message} (HTTP ${p.status})`;

/** Errors raised in src/artifacts/. */
export const artifactsErrors = {
  announcedDigestDiffers: {
    code: 'digest_mismatch',
    message: (p: { digest: string; announced: string }) => `asked for ${p.digest}, the server answered ${p.announced}`,
  },
  downloadDigestMismatch: {
    code: 'digest_mismatch',
    message: (p: { actual: string; digest: string }) => `downloaded bytes hash to ${p.actual}, not ${p.digest}`,
    hint: 'The stored artifact is corrupt or was altered in transit; re-publish it.',
  },
  cannotReachArtifactRepository: {
    code: 'server_unreachable',
    message: (p: { baseUrl: string; code: string }) => `cannot reach the artifact repository at ${p.baseUrl}: ${p.code}`,
  },
  unsafeArchive: {
    code: 'unsafe_archive',
    message: (p: { entry: string; reason: string }) => `unsafe archive entry ${JSON.stringify(p.entry)}: ${p.reason}`,
  },
  uploadDigestMismatch: {
    code: 'digest_mismatch',
    message: (p: { digest: string; expected: string }) => `the bytes received hash to ${p.digest}, not ${p.expected}`,
  },
  artifactNotFound: {
    code: 'artifact_not_found',
    message: (p: { digest: string }) => `artifact ${p.digest} not found`,
  },
  artifactTooLarge: {
    code: 'too_large',
    message: (p: { maxBytes: number }) => `artifact is larger than the ${p.maxBytes}-byte limit`,
  },
  invalidCommit: {
    code: 'bad_request',
    message: (p: { commit: string }) => `invalid commit ${JSON.stringify(p.commit)}`,
    hint: 'Pass the full commit SHA (40 or 64 lowercase hex characters).',
  },
  artifactBodyMissing: {
    code: 'bad_request',
    message: 'artifact bytes must be sent as the raw request body',
    hint: 'Send the file with content-type application/octet-stream.',
  },
  declaredArtifactTooLarge: {
    code: 'too_large',
    message: (p: { declared: number; maxBytes: number }) => `artifact of ${p.declared} bytes is larger than the ${p.maxBytes}-byte limit`,
  },
  extractTargetExists: {
    code: 'conflict',
    message: (p: { dest: string }) => `cannot extract into ${p.dest}: it already exists`,
    hint: 'Artifacts are unpacked into a new folder, never over an existing one.',
  },
  unsafeArchiveEntry: {
    code: 'unsafe_archive',
    message: (p: { shown: string; reason: string }) => `unsafe archive entry ${JSON.stringify(p.shown)}: ${p.reason}`,
  },
  entryLongerThanDeclared: {
    code: 'unsafe_archive',
    message: (p: { path: string }) => `entry ${p.path} holds more bytes than its header declares`,
  },
  ociRegistryUnreachable: {
    code: 'registry_unreachable',
    message: (p: { registry: string; what: string; code: string }) =>
      `cannot reach the artifact registry ${p.registry} (${p.what}): ${p.code}`,
    hint: 'Check that the registry behind --artifacts / PILOT_ARTIFACTS is running and reachable from the control plane; nothing was half-stored, the next attempt starts over.',
  },
  ociRegistryAuth: {
    code: 'registry_refused',
    message: (p: { registry: string; what: string; status: number }) =>
      `the artifact registry ${p.registry} refused the credentials for ${p.what} (HTTP ${p.status})`,
    hint: 'Give the registry credentials in the environment of `pilot server`: PILOT_ARTIFACTS_USERNAME with PILOT_ARTIFACTS_PASSWORD_FILE (or PILOT_ARTIFACTS_PASSWORD), or a bearer token in PILOT_ARTIFACTS_TOKEN_FILE (or PILOT_ARTIFACTS_TOKEN).',
  },
  ociRegistryRefused: {
    code: 'registry_refused',
    message: (p: { registry: string; what: string; status: number; detail: string }) =>
      `the artifact registry ${p.registry} answered HTTP ${p.status} to ${p.what}${p.detail ? `: ${p.detail}` : ''}`,
    hint: 'Check the registry (its log says why); deletes need `storage: delete: enabled: true` in its configuration.',
  },
  ociRegistryWrongBytes: {
    code: 'digest_mismatch',
    message: (p: { registry: string; digest: string; actual: string }) =>
      `the artifact registry ${p.registry} answered bytes hashing to ${p.actual} for ${p.digest}: refused, nothing kept`,
    hint: "The registry's copy is damaged (its storage) or something in between altered it; publish the artifact again (`pilot run`) and check the registry's storage.",
  },
  ociRegistryBadAnswer: {
    code: 'bad_gateway',
    message: (p: { registry: string; what: string; why: string }) =>
      `the artifact registry ${p.registry} gave an unusable answer to ${p.what}: ${p.why}`,
    hint: 'Is --artifacts pointing at an OCI distribution registry (the /v2/ API)?',
  },
  invalidArtifactsUrl: {
    code: 'invalid_argument',
    message: (p: { text: string; why: string }) => `--artifacts ${JSON.stringify(p.text)}: ${p.why}`,
    hint: 'Leave it out to keep blobs in $PILOT_HOME/artifacts (the default), or give oci://HOST[:PORT]/REPO (HTTPS), oci+http://127.0.0.1:PORT/REPO (plain HTTP, loopback only) or an absolute folder every replica mounts, e.g. --artifacts oci://registry.example.com/pilot.',
  },
  artifactsSecretUnreadable: {
    code: 'invalid_argument',
    message: (p: { name: string; file: string; code: string }) => `cannot read ${p.name} (${p.file}): ${p.code}`,
    hint: (p: { name: string }) =>
      `Point ${p.name} at a file the server's user can read (mode 0600), holding only the secret; or unset it.`,
  },
  repositoryUnauthorized: { code: 'unauthorized', message: answered },
  repositoryForbidden: { code: 'forbidden', message: answered },
  repositoryNotFound: { code: 'artifact_not_found', message: answered },
  repositoryTooLarge: { code: 'too_large', message: answered },
  repositoryUnavailable: { code: 'unavailable', message: answered },
  repositoryRefusedRequest: { code: 'bad_request', message: answered },
} as const satisfies ErrorEntries;
