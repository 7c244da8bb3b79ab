/**
 * Tests only: a unix socket that forwards to the real engine's socket, so a test can make "the
 * engine" appear and disappear for one agent (start / stop the proxy) without touching the shared
 * dockerd.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { rm } from 'node:fs/promises';

export interface EngineProxy {
  readonly socketPath: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function engineProxy(socketPath: string, target = '/var/run/docker.sock'): EngineProxy {
  let server: Server | undefined;
  const open = new Set<Socket>();
  return {
    socketPath,
    async start() {
      await rm(socketPath, { force: true });
      server = createServer((client) => {
        const upstream = createConnection(target);
        open.add(client).add(upstream);
        const drop = (): void => {
          client.destroy();
          upstream.destroy();
          open.delete(client);
          open.delete(upstream);
        };
        client.on('error', drop).on('close', drop);
        upstream.on('error', drop).on('close', drop);
        client.pipe(upstream).pipe(client);
      });
      await new Promise<void>((resolve) => server!.listen(socketPath, resolve));
    },
    async stop() {
      for (const s of open) s.destroy();
      open.clear();
      if (server) await new Promise<void>((resolve) => server!.close(() => resolve()));
      server = undefined;
      await rm(socketPath, { force: true });
    },
  };
}
