/**
 * The error catalogue. Every error a caller can see has a permanent code, a message saying what
 * went wrong, a hint saying what to do about it, and whether retrying the same call can succeed.
 * The HTTP edge maps `status` once (control/http-errors.ts); the CLI prints message and hint.
 * Never branch on message text: branch on `code`.
 *
 * Errors are made only from the catalogue's entries (errors/<area>.ts), by name:
 * `throw fail.appNotFound({ app })`. ESLint refuses `new PilotError(...)` anywhere else.
 */
import { CATALOGUE, type CatalogueEntry, type ErrorCode } from './errors/codes.js';
import type { ErrorEntries } from './errors/entry.js';
import { agentErrors } from './errors/agent.js';
import { apiErrors } from './errors/api.js';
import { artifactsErrors } from './errors/artifacts.js';
import { cdErrors } from './errors/cd.js';
import { cliErrors } from './errors/cli.js';
import { controlErrors } from './errors/control.js';
import { coreErrors } from './errors/core.js';
import { diskErrors } from './errors/disk.js';
import { dockerErrors } from './errors/docker.js';
import { nodeRuntimeErrors } from './errors/node-runtime.js';
import { osErrors } from './errors/os.js';
import { pipelineErrors } from './errors/pipeline.js';
import { routerErrors } from './errors/router.js';
import { storeErrors } from './errors/store.js';
import { swarmErrors } from './errors/swarm.js';
import { workspaceErrors } from './errors/workspace.js';

export { CATALOGUE, type CatalogueEntry, type ErrorCode } from './errors/codes.js';
export type { ErrorEntry, ErrorEntries } from './errors/entry.js';
export { pipelineHints } from './errors/pipeline.js';

export interface ErrorBody {
  readonly code: string;
  readonly message: string;
  readonly hint?: string;
  readonly retryable: boolean;
  readonly details?: unknown;
}

export class PilotError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly retryable: boolean;
  readonly details: unknown;

  constructor(code: ErrorCode, message: string, opts: { hint?: string; details?: unknown; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'PilotError';
    this.code = code;
    const entry: CatalogueEntry = CATALOGUE[code];
    this.hint = opts.hint ?? entry.hint;
    this.retryable = entry.retryable;
    this.details = opts.details;
  }

  get status(): number {
    return CATALOGUE[this.code].status;
  }

  toJSON(): ErrorBody {
    return {
      code: this.code,
      message: this.message,
      ...(this.hint === undefined ? {} : { hint: this.hint }),
      retryable: this.retryable,
      ...(this.details === undefined ? {} : { details: this.details }),
    };
  }
}

export function isPilotError(e: unknown): e is PilotError {
  return e instanceof PilotError;
}

/** Rebuild an error received over the wire (from the API) so callers can branch on its code. */
export function fromBody(body: Partial<ErrorBody> | undefined, fallback: string): PilotError {
  const code = body?.code && body.code in CATALOGUE ? (body.code as ErrorCode) : 'internal';
  const err = new PilotError(code, body?.message ?? fallback, {
    ...(body?.hint === undefined ? {} : { hint: body.hint }),
    details: body?.details,
  });
  return err;
}

/** Every area's entries; names are unique across all of them (errors.test.ts checks it). */
export const ERROR_AREAS: Readonly<Record<string, ErrorEntries>> = {
  agent: agentErrors,
  api: apiErrors,
  artifacts: artifactsErrors,
  cd: cdErrors,
  cli: cliErrors,
  control: controlErrors,
  core: coreErrors,
  disk: diskErrors,
  docker: dockerErrors,
  'node-runtime': nodeRuntimeErrors,
  os: osErrors,
  pipeline: pipelineErrors,
  router: routerErrors,
  store: storeErrors,
  swarm: swarmErrors,
  workspace: workspaceErrors,
};

const ENTRIES = {
  ...agentErrors,
  ...apiErrors,
  ...artifactsErrors,
  ...cdErrors,
  ...cliErrors,
  ...controlErrors,
  ...coreErrors,
  ...diskErrors,
  ...dockerErrors,
  ...nodeRuntimeErrors,
  ...osErrors,
  ...pipelineErrors,
  ...routerErrors,
  ...storeErrors,
  ...swarmErrors,
  ...workspaceErrors,
};

/** The name of one entry of the catalogue. */
export type ErrorName = keyof typeof ENTRIES;

/** The parameters an entry needs: those of its message function, or of its hint function. */
type ParamsOf<E> = E extends { message: (p: infer P) => string }
  ? P
  : E extends { hint: (p: infer P) => string | undefined }
    ? P
    : undefined;

/** What a call site may add besides the parameters: data for scripts (`details`) and the error it wraps. */
export interface ErrorExtra {
  readonly details?: unknown;
  readonly cause?: unknown;
}

type Maker<E> =
  ParamsOf<E> extends undefined ? (extra?: ErrorExtra) => PilotError : (params: ParamsOf<E>, extra?: ErrorExtra) => PilotError;

/** Make the error of one entry: message and hint from its parameters; status and retryable from its code. */
function makeError(entry: ErrorEntries[string], params: unknown, extra: ErrorExtra = {}): PilotError {
  const text = <T extends string | undefined>(t: T | ((p: never) => T)): T => (typeof t === 'function' ? t(params as never) : t);
  const hint = entry.hint === undefined ? undefined : text(entry.hint);
  return new PilotError(entry.code, text(entry.message), {
    ...(hint === undefined ? {} : { hint }),
    ...(extra.details === undefined ? {} : { details: extra.details }),
    ...(extra.cause === undefined ? {} : { cause: extra.cause }),
  });
}

function makerOf(entry: ErrorEntries[string]): (a?: unknown, b?: ErrorExtra) => PilotError {
  // An entry without functions takes no parameters: its only argument is the extra.
  const takesParams = typeof entry.message === 'function' || typeof entry.hint === 'function';
  return takesParams ? (params, extra) => makeError(entry, params, extra) : (extra) => makeError(entry, undefined, extra as ErrorExtra);
}

/**
 * The one way to make an error a user can see: `throw fail.appNotFound({ app })`. TypeScript asks
 * for exactly the parameters the entry's message and hint use; `details` and `cause` go in a second
 * argument (`fail.x(params, { cause: e })`, or `fail.x({ cause: e })` for an entry without parameters).
 */
export const fail = Object.fromEntries(Object.entries(ENTRIES).map(([name, entry]) => [name, makerOf(entry)])) as unknown as {
  readonly [K in ErrorName]: Maker<(typeof ENTRIES)[K]>;
};

/**
 * The same error (same code, hence same status and retryable) said again: its message masked of
 * secrets, or a hint that knows more about the context. `details` are not carried over; the hint
 * is kept unless `hint` is given (undefined then means the code's default hint).
 */
export function restate(
  err: PilotError,
  change: { readonly message?: string; readonly hint?: string; readonly cause?: unknown },
): PilotError {
  const hint = 'hint' in change ? change.hint : err.hint;
  return new PilotError(err.code, change.message ?? err.message, {
    ...(hint === undefined ? {} : { hint }),
    ...(change.cause === undefined ? {} : { cause: change.cause }),
  });
}
