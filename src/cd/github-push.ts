/**
 * What a GitHub `push` delivery asks for: a deploy of one commit on one branch, or nothing (tags,
 * deletions, other refs). Pure: takes the parsed JSON, returns a decision or throws a `bad_request`
 * naming the field at fault. Branch names are kept exactly as sent (they are data: compared, stored,
 * shown escaped, never given to a shell); message and author are made showable here.
 */
import { fail } from '../core/errors.js';
import { sanitizeLine } from '../core/mask.js';

export type PushDecision =
  | {
      readonly kind: 'deploy';
      readonly branch: string;
      readonly commit: string;
      readonly message: string;
      readonly author: string;
      readonly repository: Readonly<Record<string, unknown>>;
    }
  | { readonly kind: 'ignore'; readonly reason: string; readonly repository: Readonly<Record<string, unknown>> };

/** Caps for what is stored and shown of a commit: the first line is a summary, not the commit. */
export const MAX_MESSAGE_CHARS = 1000;
export const MAX_AUTHOR_CHARS = 200;
const MAX_REF_CHARS = 255;
const SHA_RE = /^[0-9a-f]{40}$/;
const ZERO_SHA = '0'.repeat(40);
const CONTROL_RE = /[\u0000-\u001f\u007f]/;

type Json = Readonly<Record<string, unknown>>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A ref or branch name made safe to put in a message: escaped, capped, quoted. */
export function showRef(ref: string): string {
  return JSON.stringify(sanitizeLine(ref, 120));
}

/** Decide what a parsed `push` payload asks for; throws PilotError('bad_request') on shape errors. */
export function parsePush(payload: unknown): PushDecision {
  if (!isObject(payload)) throw fail.pushPayloadNotObject();
  const { ref, repository, after, deleted } = payload;
  if (typeof ref !== 'string') throw fail.pushRefNotString();
  if (!isObject(repository)) throw fail.pushRepositoryNotObject();
  if (typeof after !== 'string' || !SHA_RE.test(after)) throw fail.pushAfterNotSha();
  // GitHub always sends head_commit (null for deletions); a sender that leaves it out means "none".
  const head = payload.head_commit === undefined ? null : payload.head_commit;
  if (head !== null && !isObject(head)) throw fail.pushHeadCommitNotObject();
  if (ref.length > MAX_REF_CHARS || CONTROL_RE.test(ref)) {
    // git refuses such refs (check-ref-format), so GitHub never sends one: the delivery is forged or broken.
    throw fail.pushRefInvalid({ ref: showRef(ref), maxRefChars: MAX_REF_CHARS });
  }

  if (ref.startsWith('refs/tags/')) return { kind: 'ignore', reason: `tag push ${showRef(ref.slice(10))}`, repository };
  if (!ref.startsWith('refs/heads/') || ref.length === 'refs/heads/'.length)
    return { kind: 'ignore', reason: `ref ${showRef(ref)} is not a branch`, repository };
  const branch = ref.slice('refs/heads/'.length);
  if (deleted === true || after === ZERO_SHA) return { kind: 'ignore', reason: `branch ${showRef(branch)} deleted`, repository };

  return {
    kind: 'deploy',
    branch,
    commit: after,
    message: firstLine(head?.message, MAX_MESSAGE_CHARS),
    author: firstLine(authorOf(head, payload), MAX_AUTHOR_CHARS),
    repository,
  };
}

/** The commit author's name, else the GitHub login, else the pusher: whoever a human would recognise. */
function authorOf(head: Json | null, payload: Json): unknown {
  const author = isObject(head?.author) ? head.author : undefined;
  const pusher = isObject(payload.pusher) ? payload.pusher : undefined;
  for (const v of [author?.name, author?.username, pusher?.name]) if (typeof v === 'string' && v.length > 0) return v;
  return '';
}

/** First line of a display-only string, control characters escaped, capped; non-strings become ''. */
function firstLine(v: unknown, max: number): string {
  if (typeof v !== 'string') return '';
  const nl = v.indexOf('\n');
  const line = nl === -1 ? v : v.slice(0, nl);
  return sanitizeLine(line.endsWith('\r') ? line.slice(0, -1) : line, max);
}
