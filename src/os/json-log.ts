/**
 * A JSON-lines logger with pino's output (`{"level":30,"time":…,"pid":…,"hostname":…,<bindings>,
 * <fields>,"msg":…}`, pino's numeric levels, an `err` Error as `{type, message, stack}`), for the
 * agent: pino and its dependencies cost an idle agent about 9 MB of its 54 (README, Memory), and the
 * agent uses none of what pino adds (transports, redaction, custom serializers).
 *
 * Each call is one whole line handed to `write` (the non-blocking LogDestination in production).
 */
import { hostname } from 'node:os';
import type { Log, LogFn } from '../core/log.js';

const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;
type LevelName = keyof typeof LEVELS;

export interface LineSink {
  write(line: string): unknown;
}

/** pino's standard error serializer, in short: type, message, stack and the error's own fields. */
function serializeError(err: Error): Record<string, unknown> {
  const out: Record<string, unknown> = { type: err.constructor?.name ?? 'Error', message: err.message, stack: err.stack };
  for (const [k, v] of Object.entries(err)) if (!(k in out)) out[k] = v;
  return out;
}

/** JSON.stringify that never throws (cycles, BigInt): a field that cannot be written says so. */
function stringify(value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  } catch (err) {
    return JSON.stringify(`[unserializable: ${(err as Error).message}]`);
  }
}

function levelOf(name: string): number {
  if (name === 'silent') return Infinity;
  const n = LEVELS[name as LevelName];
  if (n === undefined) throw new RangeError(`unknown log level "${name}" (trace, debug, info, warn, error, fatal, silent)`);
  return n;
}

export function jsonLog(opts: { level?: string; sink: LineSink; bindings?: Record<string, unknown> }): Log {
  const head = `"pid":${process.pid},"hostname":${JSON.stringify(hostname())}`;
  return make(opts.sink, levelOf(opts.level ?? 'info'), opts.level ?? 'info', head + bindingsText(opts.bindings ?? {}));
}

function bindingsText(b: Record<string, unknown>): string {
  let s = '';
  for (const [k, v] of Object.entries(b)) if (v !== undefined) s += `,${JSON.stringify(k)}:${stringify(v)}`;
  return s;
}

function make(sink: LineSink, threshold: number, levelName: string, prefix: string): Log {
  const fn = (n: number): LogFn =>
    ((first: unknown, msg?: string): void => {
      if (n < threshold) return;
      let fields = '';
      let text = msg;
      if (typeof first === 'string') text = first;
      else if (first instanceof Error) {
        fields = `,"err":${stringify(serializeError(first))}`;
        text ??= first.message;
      } else if (first !== null && typeof first === 'object') {
        const err = (first as { err?: unknown }).err;
        if (text === undefined && err instanceof Error) text = err.message; // pino's message for { err } alone
        for (const [k, v] of Object.entries(first)) {
          if (v === undefined) continue;
          fields += `,${JSON.stringify(k)}:${stringify(k === 'err' && v instanceof Error ? serializeError(v) : v)}`;
        }
      }
      const line = `{"level":${n},"time":${Date.now()},${prefix}${fields}${text !== undefined ? `,"msg":${JSON.stringify(String(text))}` : ''}}\n`;
      sink.write(line);
    }) as LogFn;
  return {
    level: levelName,
    trace: fn(LEVELS.trace),
    debug: fn(LEVELS.debug),
    info: fn(LEVELS.info),
    warn: fn(LEVELS.warn),
    error: fn(LEVELS.error),
    fatal: fn(LEVELS.fatal),
    child: (bindings) => make(sink, threshold, levelName, prefix + bindingsText(bindings)),
  };
}
