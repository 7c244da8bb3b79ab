/**
 * The Docker Engine, reached through its HTTP API (dockerode), never by parsing CLI output. Where
 * the engine is comes from DOCKER_HOST (unix:// or tcp:// on loopback) or /var/run/docker.sock.
 */
import Docker from 'dockerode';
import { fail } from '../core/errors.js';
import { endpointAddress, engineEndpoint, probeEngine, type EngineEndpoint, type EngineStatus } from './probe.js';

export type Engine = Docker;
export type { EngineStatus };

/** Where a connected engine is (dockerode keeps it in its modem). */
function endpointOf(engine: Engine): EngineEndpoint {
  const m = engine.modem as unknown as { socketPath?: string; host?: string; port?: number };
  return m.socketPath ? { socketPath: m.socketPath } : { host: m.host ?? '127.0.0.1', port: Number(m.port ?? 2375) };
}

/** Where the engine is, for messages. */
export function engineAddress(engine: Engine): string {
  return endpointAddress(endpointOf(engine));
}

export function connectEngine(env: NodeJS.ProcessEnv = process.env): Engine {
  const e = engineEndpoint(env);
  return 'socketPath' in e ? new Docker({ socketPath: e.socketPath }) : new Docker({ protocol: 'http', host: e.host, port: e.port });
}

/** Whether the engine answers, and its version; never throws (probe.ts: one GET /version). */
export function engineStatus(engine: Engine, timeoutMs = 2000): Promise<EngineStatus> {
  return probeEngine(endpointOf(engine), timeoutMs);
}

/** Throws a clear error when the engine does not answer. */
export async function requireEngine(engine: Engine): Promise<void> {
  const s = await engineStatus(engine);
  if (!s.available) throw fail.dockerEngineUnavailable({ error: s.error! });
}
