/**
 * Where the Docker Engine is, and whether it answers, without loading dockerode: its dependencies
 * (gRPC, protobuf, ssh2) cost ~30 MB of RSS, which an agent that never runs a container should
 * not pay. One GET /version over the engine's socket.
 */
import { request } from 'node:http';

export interface EngineStatus {
  readonly available: boolean;
  readonly version?: string | undefined;
  readonly error?: string | undefined;
}

export type EngineEndpoint = { readonly socketPath: string } | { readonly host: string; readonly port: number };

/** DOCKER_HOST (unix:// or tcp://), else /var/run/docker.sock. */
export function engineEndpoint(env: NodeJS.ProcessEnv = process.env): EngineEndpoint {
  const host = env.DOCKER_HOST;
  if (!host) return { socketPath: '/var/run/docker.sock' };
  if (host.startsWith('unix://')) return { socketPath: host.slice('unix://'.length) };
  const u = new URL(host.replace(/^tcp:/, 'http:'));
  return { host: u.hostname, port: Number(u.port || 2375) };
}

export function endpointAddress(e: EngineEndpoint): string {
  return 'socketPath' in e ? `unix://${e.socketPath}` : `tcp://${e.host}:${e.port}`;
}

/** The error a node reports when its engine does not answer: what failed, and what to start. */
export function notAnswering(address: string, reason: string): string {
  return `Docker engine at ${address} is not answering (${reason}); start it with \`dockerd\` (or \`systemctl start docker\`)`;
}

/** What a node reports as `runtimes.docker` (agent protocol): the status, its error bounded. */
export function engineReport(s: EngineStatus): { available: boolean; version?: string; error?: string } {
  return { available: s.available, ...(s.version ? { version: s.version } : {}), ...(s.error ? { error: s.error.slice(0, 2000) } : {}) };
}

/** Whether the engine answers, and its version; never throws. */
export function probeEngine(endpoint: EngineEndpoint = engineEndpoint(), timeoutMs = 2000): Promise<EngineStatus> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (s: EngineStatus): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(s);
    };
    const fail = (reason: string): void => done({ available: false, error: notAnswering(endpointAddress(endpoint), reason) });
    const req = request({ ...endpoint, path: '/version', method: 'GET', headers: { host: 'docker' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 65_536) body += d;
      });
      res.on('end', () => {
        if (res.statusCode !== 200) return fail(`GET /version answered ${res.statusCode}`);
        try {
          const version = (JSON.parse(body) as { Version?: unknown }).Version;
          done({ available: true, version: typeof version === 'string' ? version : undefined });
        } catch {
          fail('GET /version did not answer JSON');
        }
      });
      res.on('error', (err) => fail(err.message));
    });
    const timer = setTimeout(() => fail(`no answer within ${timeoutMs} ms`), timeoutMs);
    timer.unref();
    req.on('error', (err) => fail(err.message));
    req.end();
  });
}
