import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { lingerAfterEarlyAnswer } from './early-answer.js';

/** A server that refuses every request before reading its body, the way the upload and webhook routes do. */
function refuser(linger: boolean, limits?: { ms?: number; bytes?: number }): Server & { read: number[] } {
  const read: number[] = [];
  const srv = createServer((req, res) => {
    if (linger) lingerAfterEarlyAnswer(req, limits);
    req.socket.once('close', () => read.push(req.socket.bytesRead));
    res.writeHead(413, { 'content-type': 'application/json', connection: 'close' });
    res.end('{"error":{"code":"too_large"}}');
  });
  return Object.assign(srv, { read });
}

/**
 * A client that writes its whole body before it reads anything (the hardest case): head, `size`
 * bytes, then, unless `forever`, the end of its half. Resolves with the answer it read and how long
 * until the connection closed.
 */
function writeAllThenRead(port: number, size: number, forever = false): Promise<{ answer: string; ms: number; error?: string }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    let answer = '';
    let error: string | undefined;
    const s = connect(port, '127.0.0.1', () => {
      s.write(`POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: ${forever ? 10 * 1024 ** 3 : size}\r\n\r\n`);
      const mb = Buffer.alloc(1024 * 1024, 0x20);
      let sent = 0;
      const pump = (): void => {
        while ((forever || sent < size) && !s.destroyed) {
          sent += mb.length;
          if (!s.write(forever || sent <= size ? mb : mb.subarray(0, size - (sent - mb.length)))) return void s.once('drain', pump);
        }
        if (!forever && !s.destroyed) s.end();
      };
      pump();
    });
    s.on('data', (d: Buffer) => (answer += d.toString()));
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code));
    s.on('close', () => resolve({ answer, ms: Date.now() - t0, error }));
  });
}

describe('lingering close after an early answer', { timeout: 60_000 }, () => {
  const srv = refuser(true);
  const capped = refuser(true, { ms: 60_000, bytes: 4 * 1024 * 1024 });
  const timed = refuser(true, { ms: 300, bytes: 1024 * 1024 * 1024 });
  const port = (s: Server): number => (s.address() as AddressInfo).port;
  before(async () => {
    for (const s of [srv, capped, timed]) await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  });
  after(() => {
    for (const s of [srv, capped, timed]) s.close();
  });

  it('lets a client that writes its whole body first read the answer, and closes cleanly', async () => {
    for (let i = 0; i < 20; i++) {
      const r = await writeAllThenRead(port(srv), 3 * 1024 * 1024);
      assert.match(r.answer, /^HTTP\/1\.1 413/, `round ${i}: ${r.error ?? 'no error'}`);
      assert.match(r.answer, /"code":"too_large"/);
    }
    // The server read the bodies to the end (drained, not reset).
    assert.ok(
      srv.read.every((n) => n >= 3 * 1024 * 1024),
      srv.read.join(','),
    );
  });

  it('stops reading after its byte budget', async () => {
    const r = await writeAllThenRead(port(capped), 0, true);
    assert.ok(r.error !== undefined || r.answer === '' || /^HTTP\/1\.1 413/.test(r.answer));
    for (let i = 0; i < 100 && capped.read.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    const readBytes = capped.read.at(-1) ?? 0;
    assert.ok(readBytes > 4 * 1024 * 1024 && readBytes < 64 * 1024 * 1024, `read ${readBytes} bytes`);
  });

  it('stops waiting after its deadline for a client that never ends', async () => {
    const started = Date.now();
    const slow = await new Promise<number>((resolve) => {
      const s = connect(port(timed), '127.0.0.1', () => s.write('POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc'));
      s.resume();
      s.on('error', () => undefined);
      s.on('close', () => resolve(Date.now() - started));
    });
    assert.ok(slow < 10_000, `closed after ${slow} ms`);
  });

  it('does nothing to a request whose body was read', async () => {
    const s = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        lingerAfterEarlyAnswer(req, { ms: 1 });
        res.end('ok');
      });
    });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    try {
      const res = await fetch(`http://127.0.0.1:${port(s)}/`, { method: 'POST', body: 'abc' });
      assert.equal(await res.text(), 'ok');
    } finally {
      s.close();
    }
  });
});
