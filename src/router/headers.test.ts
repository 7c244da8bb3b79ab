import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { clientAddress, clientResponseHeaders, upstreamRequestHeaders } from './headers.js';

const pairs = (flat: string[]): [string, string][] => {
  const out: [string, string][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
};
const fwd = { for: '10.0.0.9', proto: 'http' };

describe('upstreamRequestHeaders', () => {
  it('drops hop-by-hop headers and those named in Connection, keeps the rest in order and case', () => {
    const raw = [
      'Host', 'Hello.localhost:8080',
      'Connection', 'keep-alive, X-Secret-Hop',
      'Keep-Alive', 'timeout=5',
      'TE', 'trailers',
      'Trailer', 'x-checksum',
      'Transfer-Encoding', 'chunked',
      'Upgrade', 'h2c',
      'Proxy-Authorization', 'Basic xyz',
      'Proxy-Connection', 'keep-alive',
      'X-Secret-Hop', 'drop me',
      'Expect', '100-continue',
      'Accept', 'text/plain',
      'X-Custom', 'a',
      'X-Custom', 'b',
    ];
    const out = pairs(upstreamRequestHeaders(raw, fwd));
    assert.deepEqual(out, [
      ['Host', 'Hello.localhost:8080'],
      ['Accept', 'text/plain'],
      ['X-Custom', 'a'],
      ['X-Custom', 'b'],
      ['X-Forwarded-For', '10.0.0.9'],
      ['X-Forwarded-Proto', 'http'],
      ['X-Forwarded-Host', 'Hello.localhost:8080'],
    ]);
  });

  it('appends to a client X-Forwarded-For but replaces its proto and host claims', () => {
    const raw = ['host', 'a.localhost', 'x-forwarded-for', '1.1.1.1', 'X-Forwarded-For', '2.2.2.2', 'x-forwarded-proto', 'https', 'x-forwarded-host', 'evil.example'];
    const out = new Map(pairs(upstreamRequestHeaders(raw, fwd)));
    assert.equal(out.get('X-Forwarded-For'), '1.1.1.1, 2.2.2.2, 10.0.0.9');
    assert.equal(out.get('X-Forwarded-Proto'), 'http');
    assert.equal(out.get('X-Forwarded-Host'), 'a.localhost');
    assert.equal(out.get('x-forwarded-proto'), undefined);
  });

  it('forwards only the first Host header', () => {
    const out = pairs(upstreamRequestHeaders(['Host', 'a.localhost', 'Host', 'b.localhost'], fwd));
    assert.deepEqual(out.filter(([n]) => n.toLowerCase() === 'host'), [['Host', 'a.localhost']]);
  });

  it('keeps Connection: Upgrade and Upgrade for an upgrade', () => {
    const raw = ['Host', 'a', 'Connection', 'Upgrade, X-Hop', 'Upgrade', 'websocket', 'X-Hop', '1', 'Sec-WebSocket-Key', 'k'];
    const out = pairs(upstreamRequestHeaders(raw, fwd, true));
    assert.deepEqual(out.slice(0, 4), [['Host', 'a'], ['Sec-WebSocket-Key', 'k'], ['Connection', 'Upgrade'], ['Upgrade', 'websocket']]);
  });
});

describe('clientResponseHeaders', () => {
  it('drops hop-by-hop response headers and keeps repeated ones', () => {
    const out = clientResponseHeaders({
      connection: 'close, x-internal',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      'proxy-authenticate': 'Basic',
      'x-internal': 'secret',
      'set-cookie': ['a=1', 'b=2'],
      'content-type': 'text/plain',
    });
    assert.deepEqual(out, { 'set-cookie': ['a=1', 'b=2'], 'content-type': 'text/plain' });
  });
});

describe('clientAddress', () => {
  it('unwraps IPv4-mapped IPv6 addresses', () => {
    assert.equal(clientAddress('::ffff:127.0.0.1'), '127.0.0.1');
    assert.equal(clientAddress('::1'), '::1');
    assert.equal(clientAddress(undefined), 'unknown');
  });
});
