/**
 * The Docker Engine, reached through its HTTP API (dockerode), never by parsing CLI output. Where
 * the engine is comes from DOCKER_HOST (unix:// or tcp:// on loopback) or /var/run/docker.sock.
 */
import Docker from 'dockerode';
import { PilotError } from '../core/errors.js';

export type Engine = Docker;

export interface EngineStatus {
  readonly available: boolean;
  readonly version?: string | undefined;
  readonly error?: string | undefined;
}

/** Where the engine is, for messages. */
export function engineAddress(engine: Engine): string {
  const m = engine.modem as unknown as { socketPath?: string; host?: string; port?: number };
  return m.socketPath ? `unix://${m.socketPath}` : `tcp://${m.host}:${m.port}`;
}

export function connectEngine(env: NodeJS.ProcessEnv = process.env): Engine {
  const host = env.DOCKER_HOST;
  if (!host) return new Docker({ socketPath: '/var/run/docker.sock' });
  if (host.startsWith('unix://')) return new Docker({ socketPath: host.slice('unix://'.length) });
  const u = new URL(host.replace(/^tcp:/, 'http:'));
  return new Docker({ protocol: 'http', host: u.hostname, port: Number(u.port || 2375) });
}

/** Whether the engine answers, and its version; never throws. */
export async function engineStatus(engine: Engine, timeoutMs = 2000): Promise<EngineStatus> {
  try {
    const v = await Promise.race([
      engine.version(),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs).unref()),
    ]);
    return { available: true, version: v.Version };
  } catch (err) {
    return { available: false, error: `Docker engine at ${engineAddress(engine)} is not answering (${(err as Error).message}); start it with \`dockerd\` (or \`systemctl start docker\`)` };
  }
}

/** Throws a clear error when the engine does not answer. */
export async function requireEngine(engine: Engine): Promise<void> {
  const s = await engineStatus(engine);
  if (!s.available) throw new PilotError('runtime_unavailable', s.error!);
}
