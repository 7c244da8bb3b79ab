/**
 * The logger the long-running parts write to: pino's calling convention (`log.info({ fields }, 'msg')`,
 * `log.warn('msg')`, `log.child({ part })`), as an interface both pino's `Logger` and the small
 * `os/json-log.ts` satisfy. The control plane and the router process use pino (Fastify brings it
 * anyway); the agent uses the small one, which writes the same lines without loading pino.
 */
export interface LogFn {
  (msg: string): void;
  (obj: unknown, msg?: string): void;
}

export interface Log {
  level: string;
  trace: LogFn;
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  fatal: LogFn;
  child(bindings: Record<string, unknown>): Log;
  /** Write out what is buffered (pino); the small logger hands every line over at once and has none. */
  flush?(): void;
}
