import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ChunkedScanner, MAX_REQUEST_HEAD, parseRequestHead, parseResponseHead } from './fast-head.js';

const req = (s: string) => parseRequestHead(Buffer.from(s, 'latin1'));

describe('fast engine: request head parser', () => {
  it('parses the common request, raw names and values kept, repeats joined as node:http joins them', () => {
    const h = req(
      'GET /a?b=1 HTTP/1.1\r\nHost: app.localhost\r\nCookie: a=1\r\ncookie: b=2\r\nX-A:  x \r\nx-a: y\r\nContent-Length: 3\r\n\r\nabc',
    );
    assert.equal(h.kind, 'ok');
    if (h.kind !== 'ok') return;
    assert.equal(h.method, 'GET');
    assert.equal(h.target, '/a?b=1');
    assert.equal(h.host, 'app.localhost');
    assert.equal(h.contentLength, 3);
    assert.deepEqual(h.raw.slice(0, 4), ['Host', 'app.localhost', 'Cookie', 'a=1']);
    assert.equal(h.headers['cookie'], 'a=1; b=2');
    assert.equal(h.headers['x-a'], 'x, y');
    assert.equal(h.close, false);
  });

  it('waits for the rest of a head cut anywhere', () => {
    const full = 'POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n';
    for (let i = 0; i < full.length - 1; i++) assert.equal(req(full.slice(0, i)).kind, 'incomplete', `cut at ${i}`);
    assert.equal(req(full).kind, 'ok');
  });

  it('leaves to node:http everything outside the common case', () => {
    const fallbacks = [
      'GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n', // absolute form
      'OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n', // asterisk form
      'GET / HTTP/1.0\r\nHost: a\r\n\r\n',
      'GET / HTTP/2.0\r\nHost: a\r\n\r\n',
      'CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n',
      'get / HTTP/1.1\r\nHost: a\r\n\r\n',
      'GET / HTTP/1.1\r\n\r\n', // no Host
      'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, x-secret\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nX: a\nY: b\r\n\r\n', // bare LF
      'GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n', // obs-fold
      'GET / HTTP/1.1\r\nHost: a\r\nBad Name: a\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nno-colon\r\n\r\n',
      'GET /a b HTTP/1.1\r\nHost: a\r\n\r\n',
      'GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n',
      'GET /é HTTP/1.1\r\nHost: a\r\n\r\n',
      `GET / HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(MAX_REQUEST_HEAD)}\r\n\r\n`,
      `GET / HTTP/1.1\r\nHost: a\r\n${'X-A: 1\r\n'.repeat(101)}\r\n`,
    ];
    for (const f of fallbacks) assert.equal(req(f).kind, 'fallback', JSON.stringify(f.slice(0, 80)));
    // A head over the limit with no end in sight is not waited for.
    assert.equal(req(`GET / HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(MAX_REQUEST_HEAD)}`).kind, 'fallback');
  });

  it('never throws and never accepts a head with control bytes, whatever the bytes (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const b = Buffer.concat([Buffer.from('GET / HTTP/1.1\r\nHost: a\r\nX: '), Buffer.from(bytes), Buffer.from('\r\n\r\n')]);
        const h = parseRequestHead(b);
        if (h.kind === 'ok') {
          for (let i = 0; i < h.raw.length; i++) assert.doesNotMatch(h.raw[i]!, /[\x00-\x08\x0a-\x1f\x7f]/);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('fast engine: response head parser', () => {
  const res = (s: string, method = 'GET') => parseResponseHead(Buffer.from(s, 'latin1'), method);

  it('frames by Content-Length, chunked, nothing (HEAD, 204, 304) or the end of the connection', () => {
    const cl = res('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhello');
    assert.ok(cl.kind === 'ok' && cl.framing === 'length' && cl.length === 5 && cl.reusable);
    assert.deepEqual(cl.kind === 'ok' && cl.headers['set-cookie'], ['a=1', 'b=2']);
    const ch = res('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n');
    assert.ok(ch.kind === 'ok' && ch.framing === 'chunked' && ch.reusable);
    const both = res('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n');
    assert.ok(both.kind === 'ok' && both.framing === 'chunked' && !both.reusable);
    assert.ok(res('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', 'HEAD').kind === 'ok');
    for (const s of ['HTTP/1.1 204 No Content\r\n\r\n', 'HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n']) {
      const h = res(s);
      assert.ok(h.kind === 'ok' && h.framing === 'none', s);
    }
    const eof = res('HTTP/1.1 200 OK\r\n\r\n');
    assert.ok(eof.kind === 'ok' && eof.framing === 'close' && !eof.reusable);
    const old = res('HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n');
    assert.ok(old.kind === 'ok' && !old.reusable);
    const closing = res('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n');
    assert.ok(closing.kind === 'ok' && !closing.reusable);
    const noReason = res('HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n');
    assert.ok(noReason.kind === 'ok' && noReason.reason === '');
  });

  it('calls bad what cannot be framed or forwarded safely', () => {
    for (const s of [
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n',
      'HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n',
      'HTTP/1.1 200 OK\r\nbad line\r\n\r\n',
      'HTTP/2 200\r\n\r\n',
      'SSH-2.0-OpenSSH\r\n\r\n',
    ])
      assert.equal(res(s).kind, 'bad', JSON.stringify(s));
    assert.equal(res('HTTP/1.1 200 OK\r\nX: y').kind, 'incomplete');
  });
});

describe('fast engine: chunked scanner', () => {
  const body = '5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 42\r\nX-B: 1\r\n\r\n';

  it('finds the end of a chunked body with trailers, split at every byte', () => {
    const b = Buffer.from(`${body}NEXT`);
    assert.equal(new ChunkedScanner().feed(b), body.length);
    for (let cut = 1; cut < body.length; cut++) {
      const s = new ChunkedScanner();
      assert.equal(s.feed(b.subarray(0, cut)), -1, `cut ${cut}`);
      assert.equal(s.feed(b.subarray(cut)), body.length - cut, `cut ${cut}`);
    }
    const oneByOne = new ChunkedScanner();
    let end = -1;
    for (let i = 0; i < body.length && end === -1; i++) end = oneByOne.feed(b.subarray(i, i + 1));
    assert.equal(end, 1);
  });

  it('throws on a malformed body', () => {
    for (const bad of ['x\r\n', '\r\n', '5\r\nhelloXX', '5\nhello', '3\r\nabc\r\n0\r\nX: a\nY', '1234567890abc\r\n', '0\r\n\rX']) {
      assert.throws(() => new ChunkedScanner().feed(Buffer.from(bad)), Error, JSON.stringify(bad));
    }
  });

  it('agrees with any split of any chunk sizes (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 300 }), { maxLength: 8 }), fc.integer({ min: 1, max: 50 }), (sizes, step) => {
        const text = `${sizes.map((n) => `${n.toString(16)}\r\n${'z'.repeat(n)}\r\n`).join('')}0\r\n\r\n`;
        const b = Buffer.from(text);
        const s = new ChunkedScanner();
        let end = -1;
        let at = 0;
        for (; at < b.length && end === -1; at += step) {
          const r = s.feed(b.subarray(at, Math.min(at + step, b.length)));
          if (r !== -1) end = at + r;
        }
        assert.equal(end, b.length);
      }),
      { numRuns: 300 },
    );
  });
});
