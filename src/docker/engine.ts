/**
 * The Docker Engine, reached through its HTTP API (dockerode), never by parsing CLI output. Where
 * the engine is comes from DOCKER_HOST (unix:// or tcp:// on loopback) or /var/run/docker.sock.
 */
import Docker from 'dockerode';
import { PilotError } from '../core/errors.js';
import { engineEndpoint, notAnswering, type EngineStatus } from './probe.js';

export type Engine = Docker;
export type { EngineStatus };

/** Where the engine is, for messages. */
export function engineAddress(engine: Engine): string {
  const m = engine.modem as unknown as { socketPath?: string; host?: string; port?: number };
  return m.socketPath ? `unix://${m.socketPath}` : `tcp://${m.host}:${m.port}`;
}

export function connectEngine(env: NodeJS.ProcessEnv = process.env): Engine {
  const e = engineEndpoint(env);
  return 'socketPath' in e ? new Docker({ socketPath: e.socketPath }) : new Docker({ protocol: 'http', host: e.host, port: e.port });
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
    return { available: false, error: notAnswering(engineAddress(engine), (err as Error).message) };
  }
}

/** Throws a clear error when the engine does not answer. */
export async function requireEngine(engine: Engine): Promise<void> {
  const s = await engineStatus(engine);
  if (!s.available) throw new PilotError('runtime_unavailable', s.error!);
}
