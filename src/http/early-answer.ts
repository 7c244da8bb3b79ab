/**
 * A lingering close for answers sent before the request body was read (413, 404, 415 on an upload
 * or a webhook). The answer says `Connection: close`; Node then closes the socket as soon as the
 * answer is written, while the client is still sending. Closing with unread bytes makes the kernel
 * send a reset, and a reset can discard the answer before the client reads it: the client sees EPIPE
 * or ECONNRESET instead of the 413 (seen in CI, one request in a few hundred). RFC 9112 §9.6 and
 * nginx's `lingering_close` do it this way instead: send the answer, close the sending half, read and
 * drop what still arrives until the client closes or a short deadline or byte budget runs out, then
 * close. Nothing is buffered.
 */
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { Socket } from 'node:net';

export const LINGER_MS = 5_000;
export const LINGER_BYTES = 8 * 1024 * 1024;

/**
 * Call before the answer is sent, when the body may be unread (set `Connection: close` on the answer
 * too): the socket is then closed the lingering way instead of at once.
 */
export function lingerAfterEarlyAnswer(raw: IncomingMessage, limits: { ms?: number; bytes?: number } = {}): void {
  const socket = raw.socket as Socket | null;
  if (raw.complete || socket === null || socket.destroyed) return;
  // Node's HTTP server ends a `Connection: close` exchange with socket.destroySoon() (end, then
  // destroy once written); this socket instead half-closes and drains before it is destroyed.
  socket.destroySoon = function lingeringClose(this: Socket): void {
    if (this.writable) this.end();
    const readAtClose = this.bytesRead;
    const deadline = Date.now() + (limits.ms ?? LINGER_MS);
    const budget = limits.bytes ?? LINGER_BYTES;
    // Node's parser reads the socket's handle itself (no 'data' events): the budget is checked on a
    // short interval against the bytes read.
    const watch = setInterval(() => {
      if (Date.now() >= deadline || this.bytesRead - readAtClose > budget) cut();
    }, 50);
    watch.unref();
    const cut = (): void => {
      clearInterval(watch);
      this.destroy();
    };
    this.once('end', cut);
    this.once('close', () => clearInterval(watch));
    raw.resume();
    this.resume();
  };
}

/**
 * For every answer of `app` sent before its request body was read (Fastify's 413 on a declared
 * length over the limit, a token refused in onRequest, a route refusing before it reads, an upload
 * or webhook refused early): `Connection: close`, then the lingering close above. Seen without it:
 * about 1 in 300 such answers lost as EPIPE on a loaded machine.
 */
export function installLingeringClose(app: FastifyInstance): void {
  app.addHook('onSend', async (req, reply) => {
    if (req.raw.complete) return;
    void reply.header('connection', 'close');
    lingerAfterEarlyAnswer(req.raw);
  });
}
