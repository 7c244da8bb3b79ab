/** Running git for the source step: fixed options, a clean environment, raw (NUL-separated) output. */
import { Writable } from 'node:stream';
import { fail } from '../core/errors.js';
import { runCommand, type RunResult } from '../os/exec.js';

/** Metadata commands answer in seconds; the limit only guards against a hung git (a stuck lock, a dead NFS mount). */
const GIT_TIMEOUT_MS = 5 * 60_000;
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

/**
 * argv for `git -C cwd args...`. Paths stay unquoted in output (core.quotepath=off), and git writes
 * no lock file for read-only commands, so a user's own git running at the same time is not disturbed.
 */
export function gitArgv(cwd: string, args: readonly string[]): readonly string[] {
  return ['git', '--no-optional-locks', '-c', 'core.quotepath=off', '-c', 'log.showSignature=false', '-C', cwd, ...args];
}

/**
 * The environment git runs with: PATH and HOME (for the user's git config), never a prompt for
 * credentials, English messages, and none of the caller's GIT_* variables (inside a git hook
 * GIT_DIR would point every command at the wrong repository).
 */
export function gitEnv(base: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const env: Record<string, string> = { GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C', PATH: base['PATH'] ?? '/usr/local/bin:/usr/bin:/bin' };
  for (const k of ['HOME', 'XDG_CONFIG_HOME'] as const) {
    const v = base[k];
    if (v !== undefined) env[k] = v;
  }
  return env;
}

/** Besides gitEnv's: what ssh agents, proxies and custom CA bundles need to reach a git server. */
const REMOTE_ENV = [
  'SSH_AUTH_SOCK',
  'http_proxy',
  'https_proxy',
  'HTTPS_PROXY',
  'all_proxy',
  'ALL_PROXY',
  'no_proxy',
  'NO_PROXY',
  'GIT_SSL_CAINFO',
  'GIT_SSL_CAPATH',
  'SSL_CERT_FILE',
  'SSL_CERT_DIR',
] as const;

/**
 * The environment for git talking to a server (fetch): gitEnv's, the variables above, and only the
 * https, ssh and file transports, so no transport helper (`ext::`) runs even via url.*.insteadOf.
 */
export function remoteGitEnv(base: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const env = gitEnv(base);
  for (const k of REMOTE_ENV) {
    const v = base[k];
    if (v !== undefined) env[k] = v;
  }
  env['GIT_ALLOW_PROTOCOL'] = 'https:ssh:file';
  return env;
}

export interface GitOutput extends RunResult {
  readonly stdout: Buffer;
}

/** Run git and collect its stdout; resolves whatever the exit code (check `code`). */
export async function git(cwd: string, args: readonly string[], opts: { signal?: AbortSignal } = {}): Promise<GitOutput> {
  const chunks: Buffer[] = [];
  let size = 0;
  const collect = new Writable({
    write(chunk: Buffer, _enc, done) {
      size += chunk.length;
      if (size > MAX_OUTPUT_BYTES) done(fail.gitOutputTooLarge({ args: args[0] ?? '', maxOutputBytes: MAX_OUTPUT_BYTES }));
      else {
        chunks.push(chunk);
        done();
      }
    },
  });
  const result = await runCommand(gitArgv(cwd, args), {
    cwd,
    env: gitEnv(process.env),
    timeoutMs: GIT_TIMEOUT_MS,
    stdout: collect,
    maxOutputTail: 10,
    ...(opts.signal === undefined ? {} : { signal: opts.signal }),
  });
  return { ...result, stdout: Buffer.concat(chunks) };
}

/** Fields of `-z` output: split on NUL, without the empty string after the last one. */
export function splitNul(text: string): string[] {
  const parts = text.split('\0');
  if (parts[parts.length - 1] === '') parts.pop();
  return parts;
}

/** The output of a git command that must have succeeded; anything else is a bug of ours (internal). */
export function ok(out: GitOutput, what: string): GitOutput {
  if (out.code !== 0) throw fail.gitExited({ what, code: String(out.code), tail: out.tail.join(' ') });
  return out;
}
