/**
 * The per-instance log writer, a small process of its own (`node log-writer.js STDOUT STDERR MAX
 * KEEP`): it reads the app's stdout on fd 0 and stderr on fd 3 and appends them to the two files,
 * each bounded at every write (bounded-log.ts). Started detached by the process runtime before the
 * app, it outlives the agent like the app does, so the app never writes into a pipe whose reader
 * died with the agent (EPIPE). It exits when every writer has closed its end (the app and all its
 * descendants are gone). It runs as the agent's user: the log files stay 0600, out of the app's reach.
 */
import { Socket } from 'node:net';
import { BoundedLog } from './bounded-log.js';

const [outFile, errFile, maxArg, keepArg] = process.argv.slice(2);
const max = Number(maxArg);
const keep = Number(keepArg);
if (outFile === undefined || errFile === undefined || !Number.isInteger(max) || !Number.isInteger(keep)) {
  process.stderr.write('usage: log-writer STDOUT_FILE STDERR_FILE MAX_BYTES KEEP\n');
  process.exit(2);
}
// A stray signal to our session must not cut the app's output off; SIGKILL still works.
for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGPIPE'] as const) process.on(s, () => undefined);

let open = 2;
function pump(fd: number, log: BoundedLog): void {
  const sock = new Socket({ fd, readable: true, writable: false });
  sock.on('data', (chunk: Buffer) => log.write(chunk));
  const done = (): void => {
    log.close();
    if (--open === 0) process.exit(0);
  };
  sock.once('end', done);
  sock.once('error', () => sock.destroy());
  sock.once('close', () => {
    if (!sock.readableEnded) done();
  });
}
pump(0, new BoundedLog(outFile, max, keep));
pump(3, new BoundedLog(errFile, max, keep));
