/**
 * The one executor: every command Pilot runs for a deploy (git, npm, the app's build commands) is an
 * argv list run here, without a shell, in its own process group, with a timeout, cancellation and
 * its output streamed line by line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';
import { type PilotError, fail } from '../core/errors.js';
import { formatDuration } from '../core/duration.js';
import { LineSplitter, Tail } from './lines.js';
import { SilenceTimer } from './silence.js';

export type OutputStream = 'stdout' | 'stderr';

export interface RunOptions {
  readonly cwd: string;
  /** The whole environment of the command: nothing is inherited from Pilot's own. */
  readonly env: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  /** Called for each output line, in order within each stream. Must not throw (if it does, the command is stopped). */
  readonly onLine?: (stream: OutputStream, line: string) => void;
  readonly signal?: AbortSignal;
  /** How many of the last output lines to keep in `tail` (default 40). */
  readonly maxOutputTail?: number;
  /** Raw stdout goes here (e.g. a tar extractor) instead of being split into lines. */
  readonly stdout?: NodeJS.WritableStream;
  /** Between SIGTERM and SIGKILL when stopping the process group (default 5 s). */
  readonly killGraceMs?: number;
  /**
   * Called when the command has printed no line for `silenceMs`, then again every `silenceMs` while
   * it stays silent, with the time since it started: `still installing… 2m10s`. Must not throw.
   */
  readonly onSilence?: (elapsedMs: number) => void;
  /** Default 15 s. */
  readonly silenceMs?: number;
}

export interface RunResult {
  /** Exit code, or null when the process was ended by a signal. */
  readonly code: number | null;
  readonly signal: string | null;
  readonly durationMs: number;
  /** The last lines of output (both streams, in arrival order), for error messages. */
  readonly tail: string[];
}

const DEFAULT_TAIL = 40;
const DEFAULT_KILL_GRACE_MS = 5000;
const DEFAULT_SILENCE_MS = 15_000;
/** setTimeout fires at once for delays above 2^31-1 ms, so longer timeouts are clamped (24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;
/**
 * After the command exits, its output pipes may still be held open by a process that left the
 * group (setsid); we wait this long for them to close and then stop reading.
 */
const DRAIN_AFTER_EXIT_MS = 2000;

/** A command for messages: `npm ci --no-audit`, with unusual words quoted. Long commands are shortened. */
export function formatArgv(argv: readonly string[]): string {
  const words = argv.map((a) => {
    if (/^[\w@%+=:,./-]+$/.test(a)) return a;
    if (/[\x00-\x1f\x7f]/.test(a)) return JSON.stringify(a); // one line in messages, escapes visible
    return `'${a.replaceAll("'", `'\\''`)}'`;
  });
  const text = words.join(' ');
  return text.length > 200 ? `${text.slice(0, 197)}...` : text;
}

/** Run argv to completion; resolves with its exit status whatever the code, rejects on timeout, cancel or spawn failure. */
export function runCommand(argv: readonly string[], opts: RunOptions): Promise<RunResult> {
  const [file, ...args] = argv;
  if (file === undefined || file === '') return Promise.reject(fail.emptyCommand());
  const shown = formatArgv(argv);
  if (opts.signal?.aborted) return Promise.reject(cancelledError(shown));

  return new Promise<RunResult>((resolve, reject) => {
    const started = performance.now();
    const tail = new Tail(opts.maxOutputTail ?? DEFAULT_TAIL);
    const grace = opts.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
    let failure: Error | undefined; // why we are stopping the command, if we are
    let settled = false;
    let exit: { code: number | null; signal: string | null } | undefined;
    const timers: NodeJS.Timeout[] = [];

    let child: ChildProcess;
    try {
      child = spawn(file, args, {
        cwd: opts.cwd,
        env: { ...opts.env },
        detached: true, // own process group: timeouts and cancels stop the whole tree
        stdio: ['ignore', 'pipe', 'pipe'],
        shell: false,
      });
    } catch (e) {
      // Synchronous failures: arguments Node refuses (a NUL byte in an argument, for one).
      reject(fail.spawnFailed({ shown, message: (e as Error).message }, { cause: e }));
      return;
    }

    const killGroup = (sig: NodeJS.Signals): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, sig);
      } catch {
        // ESRCH: the group is already gone.
      }
    };

    // The first reason to stop wins; once the command has exited there is nothing left to kill.
    const stop = (why: Error): void => {
      if (failure !== undefined) return;
      failure = why;
      if (exit !== undefined) return;
      killGroup('SIGTERM');
      timers.push(setTimeout(() => killGroup('SIGKILL'), grace));
    };

    const onAbort = (): void => stop(cancelledError(shown));
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const timeout = setTimeout(
      () => stop(fail.stepTimeout({ shown, timeoutMs: formatDuration(opts.timeoutMs) }, { details: { tail: tail.toArray() } })),
      Math.min(Math.max(opts.timeoutMs, 0), MAX_TIMER_MS),
    );
    // Silence notices: re-armed by every line, repeated while the command stays quiet.
    const silence = opts.onSilence === undefined ? undefined : new SilenceTimer(opts.silenceMs ?? DEFAULT_SILENCE_MS, opts.onSilence);
    // Timeout and cancel apply while the command runs, not to the short drain after it exits.
    const disarm = (): void => {
      silence?.stop();
      clearTimeout(timeout);
      opts.signal?.removeEventListener('abort', onAbort);
    };
    const cleanup = (): void => {
      disarm();
      for (const t of timers) clearTimeout(t);
    };

    let onLineBroken = false; // lines printed while stopping are still delivered, unless onLine is what failed
    const lineSink = (stream: OutputStream) => (line: string) => {
      tail.push(line);
      silence?.poke();
      if (opts.onLine === undefined || onLineBroken) return;
      try {
        opts.onLine(stream, line);
      } catch (e) {
        onLineBroken = true;
        stop(e instanceof Error ? e : new Error(String(e)));
      }
    };
    if (opts.stdout !== undefined) {
      const sink = opts.stdout;
      sink.on('error', (e: Error) => stop(e));
      child.stdout!.pipe(sink);
    } else {
      readLines(child.stdout!, lineSink('stdout'));
    }
    readLines(child.stderr!, lineSink('stderr'));

    child.on('error', (e: NodeJS.ErrnoException) => {
      if (settled) return;
      if (child.pid !== undefined) return; // a failed kill() on a running child; 'close' still follows
      settled = true;
      cleanup();
      void spawnError(file, shown, opts, e).then(reject);
    });

    child.once('exit', (code, signal) => {
      exit = { code, signal };
      disarm();
      // Whatever the step left running in its group (a forgotten `&`, a watcher) is stopped now:
      // a build step ends when its process ends, and leftovers would hold our pipes open.
      killGroup('SIGKILL');
      timers.push(
        setTimeout(() => {
          child.stdout?.destroy();
          child.stderr?.destroy();
        }, DRAIN_AFTER_EXIT_MS),
      );
    });

    child.once('close', (code, signal) => {
      if (settled) return;
      settled = true;
      cleanup();
      if (failure !== undefined) {
        reject(failure);
        return;
      }
      const end = exit ?? { code, signal };
      resolve({ code: end.code, signal: end.signal, durationMs: performance.now() - started, tail: tail.toArray() });
    });
  });
}

/** The result when the command exited 0; otherwise a build_failed error with the exit status and the last lines of output. */
export function mustSucceed(result: RunResult, argv: readonly string[]): RunResult {
  if (result.code === 0) return result;
  const how = result.code !== null ? `exited with code ${result.code}` : `was killed by ${result.signal ?? 'a signal'}`;
  const lines = result.tail.length > 0 ? `:\n${result.tail.map((l) => `  ${l}`).join('\n')}` : ' (no output)';
  throw fail.stepFailed(
    { argv: formatArgv(argv), how, lines },
    { details: { code: result.code, signal: result.signal, tail: result.tail } },
  );
}

function readLines(stream: Readable, emit: (line: string) => void): void {
  const decoder = new StringDecoder('utf8'); // a multi-byte character may be split across chunks
  const splitter = new LineSplitter(emit);
  stream.on('data', (chunk: Buffer) => splitter.push(decoder.write(chunk)));
  // 'close' rather than 'end': it also comes when we destroy a pipe that a leftover process holds open.
  stream.once('close', () => {
    splitter.push(decoder.end());
    splitter.end();
  });
}

function cancelledError(shown: string): PilotError {
  return fail.stepCancelled({ shown });
}

async function spawnError(file: string, shown: string, opts: RunOptions, e: NodeJS.ErrnoException): Promise<PilotError> {
  // ENOENT means either the program or the working folder is missing: say which.
  const cwdOk = await stat(opts.cwd).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!cwdOk) return fail.cwdMissing({ shown, cwd: opts.cwd }, { cause: e });
  if (e.code === 'ENOENT') {
    const where = file.includes('/') ? '' : ` on PATH (${opts.env['PATH'] ?? 'PATH is not set'})`;
    return fail.commandNotFound({ file, where }, { cause: e });
  }
  if (e.code === 'EACCES') return fail.notExecutable({ file }, { cause: e });
  return fail.commandCannotRun({ shown, message: e.message }, { cause: e });
}
