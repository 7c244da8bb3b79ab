/**
 * Test and bench only: GitHub's own example deliveries (npm `@octokit/webhooks-examples`, a dev
 * dependency), adjusted as a test needs and signed the way GitHub signs them.
 */
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { signGithubPayload } from './github-signature.js';

type Json = Record<string, unknown>;
interface Definition {
  readonly name: string;
  readonly examples: readonly Json[];
}

const definitions = createRequire(import.meta.url)('@octokit/webhooks-examples') as readonly Definition[];

function example(event: string, pick: (e: Json) => boolean): Json {
  const found = definitions.find((d) => d.name === event)?.examples.find(pick);
  if (!found) throw new Error(`@octokit/webhooks-examples has no matching ${event} example`);
  return structuredClone(found);
}

/** The repository of the example push: an app created with this repo receives the examples. */
export const EXAMPLE_REPO = 'https://github.com/Codertocat/Hello-World.git';

/** GitHub's example push to a branch, with `after`, `ref` and anything else overridden. */
export function examplePush(overrides: Json = {}): Json {
  const push = example('push', (e) => typeof e.ref === 'string' && e.ref.startsWith('refs/heads/') && e.head_commit !== null);
  return { ...push, ...overrides };
}

/** GitHub's example tag push (`refs/tags/simple-tag`), not a deletion. */
export function exampleTagPush(overrides: Json = {}): Json {
  return { ...example('push', (e) => typeof e.ref === 'string' && e.ref.startsWith('refs/tags/') && e.deleted === false), ...overrides };
}

/** GitHub's example ping (sent when a webhook is created). */
export function examplePing(): Json {
  return example('ping', (e) => typeof e.zen === 'string' && e.repository !== undefined);
}

/** A repository object for another repository, for "push from elsewhere" cases. */
export function otherRepository(fullName: string): Json {
  const [owner, name] = fullName.split('/');
  return {
    id: 1,
    name,
    full_name: fullName,
    private: false,
    owner: { login: owner, name: owner },
    html_url: `https://github.com/${fullName}`,
    clone_url: `https://github.com/${fullName}.git`,
    ssh_url: `git@github.com:${fullName}.git`,
    git_url: `git://github.com/${fullName}.git`,
    url: `https://github.com/${fullName}`,
  };
}

/** The headers GitHub sends with a delivery of `body` (compact JSON, as GitHub sends it). */
export function githubHeaders(
  secret: string,
  body: Buffer | string,
  event: string,
  delivery: string = randomUUID(),
): Record<string, string> {
  return {
    'content-type': 'application/json',
    'user-agent': 'GitHub-Hookshot/044aadd',
    'x-github-event': event,
    'x-github-delivery': delivery,
    'x-github-hook-id': '292430182',
    'x-hub-signature-256': signGithubPayload(secret, body),
  };
}

/** A fresh 40-hex commit SHA, distinct per call (from a counter, not randomness, so runs are repeatable). */
let shaCounter = 0;
export function nextSha(): string {
  shaCounter += 1;
  return (shaCounter.toString(16).padStart(8, '0') + 'c0ffee').padEnd(40, '0').slice(0, 40);
}
