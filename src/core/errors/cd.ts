import type { ErrorEntries } from './entry.js';

const SIGNATURE_HINT = "Give the GitHub webhook the app's secret (shown by `pilot apps create`) and content type application/json.";

/** Errors raised in src/cd/. */
export const cdErrors = {
  pushPayloadNotObject: {
    code: 'bad_request',
    message: 'push payload must be a JSON object',
  },
  pushRefNotString: {
    code: 'bad_request',
    message: 'ref must be a string',
  },
  pushRepositoryNotObject: {
    code: 'bad_request',
    message: 'repository must be an object',
  },
  pushAfterNotSha: {
    code: 'bad_request',
    message: 'after must be a 40-character lowercase hex commit SHA',
  },
  pushHeadCommitNotObject: {
    code: 'bad_request',
    message: 'head_commit must be an object or null',
  },
  pushRefInvalid: {
    code: 'bad_request',
    message: (p: { ref: string; maxRefChars: number }) =>
      `ref ${p.ref} is not a valid git ref (control characters, or over ${p.maxRefChars} characters)`,
  },
  webhookAppNotFound: {
    code: 'app_not_found',
    message: (p: { name: string }) => `no app "${p.name}" with a webhook`,
    hint: (p: { name: string }) => `Create it with \`pilot apps create ${p.name} --repo URL\`; it prints the webhook URL and secret.`,
  },
  webhookContentType: {
    code: 'unsupported_media_type',
    message: (p: { ct: string }) => `content type ${JSON.stringify(p.ct)} is not accepted`,
    hint: "Set the webhook's content type to application/json in GitHub (Settings → Webhooks).",
  },
  webhookTargetNotResolved: {
    code: 'internal',
    message: 'webhook target not resolved before the handler',
  },
  eventHeaderMissing: {
    code: 'bad_request',
    message: 'missing X-GitHub-Event header',
  },
  webhookBodyNotJson: {
    code: 'bad_request',
    message: 'the body is not valid JSON',
  },
  signatureMissing: {
    code: 'unauthorized',
    message: 'missing X-Hub-Signature-256 header',
    hint: SIGNATURE_HINT,
  },
  signatureMismatch: {
    code: 'unauthorized',
    message: 'X-Hub-Signature-256 does not match the body',
    hint: SIGNATURE_HINT,
  },
  deliveryIdMissing: {
    code: 'bad_request',
    message: 'missing X-GitHub-Delivery header',
  },
  deliveryIdInvalid: {
    code: 'bad_request',
    message: 'X-GitHub-Delivery must be 1-100 letters, digits, ".", "_", ":" or "-"',
  },
  runReportOnFinishedRun: {
    code: 'run_finished',
    message: (p: { message: string }) => p.message,
  },
  runReportIllegal: {
    code: 'run_transition',
    message: (p: { message: string }) => p.message,
  },
} as const satisfies ErrorEntries;
