import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { clientAddress, clientResponseHeaders, TrustedProxies, upstreamRequestHeaders } from './headers.js';
import { isPilotError } from '../core/errors.js';

const pairs = (flat: string[]): [string, string][] => {
  const out: [string, string][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
};
const fwd = { for: '10.0.0.9', proto: 'http' };

describe('upstreamRequestHeaders', () => {
  it('drops hop-by-hop headers and those named in Connection, keeps the rest in order and case', () => {
    const raw = [
      'Host',
      'Hello.localhost:8080',
      'Connection',
      'keep-alive, X-Secret-Hop',
      'Keep-Alive',
      'timeout=5',
      'TE',
      'trailers',
      'Trailer',
      'x-checksum',
      'Transfer-Encoding',
      'chunked',
      'Upgrade',
      'h2c',
      'Proxy-Authorization',
      'Basic xyz',
      'Proxy-Connection',
      'keep-alive',
      'X-Secret-Hop',
      'drop me',
      'Expect',
      '100-continue',
      'Accept',
      'text/plain',
      'X-Custom',
      'a',
      'X-Custom',
      'b',
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

  const spoofed = [
    'host',
    'a.localhost',
    'x-forwarded-for',
    '1.1.1.1',
    'X-Forwarded-For',
    '2.2.2.2',
    'x-forwarded-proto',
    'https',
    'x-forwarded-host',
    'evil.example',
    'Forwarded',
    'for=1.1.1.1',
    'X-Real-IP',
    '1.1.1.1',
    'X-Forwarded-Prefix',
    '/admin',
  ];

  it("drops an untrusted client's X-Forwarded-*, Forwarded and X-Real-IP and sets its own", () => {
    const out = pairs(upstreamRequestHeaders(spoofed, fwd));
    assert.deepEqual(out, [
      ['host', 'a.localhost'],
      ['X-Forwarded-For', '10.0.0.9'],
      ['X-Forwarded-Proto', 'http'],
      ['X-Forwarded-Host', 'a.localhost'],
    ]);
  });

  it('from a trusted proxy: appends to X-Forwarded-For, keeps its proto, host and other claims', () => {
    const out = new Map(pairs(upstreamRequestHeaders(spoofed, { ...fwd, trusted: true })));
    assert.equal(out.get('X-Forwarded-For'), '1.1.1.1, 2.2.2.2, 10.0.0.9');
    assert.equal(out.get('X-Forwarded-Proto'), 'https');
    assert.equal(out.get('X-Forwarded-Host'), 'evil.example');
    assert.equal(out.get('Forwarded'), 'for=1.1.1.1');
    assert.equal(out.get('X-Real-IP'), '1.1.1.1');
    assert.equal(out.get('X-Forwarded-Prefix'), '/admin');
    assert.equal(out.get('x-forwarded-proto'), undefined, 'one X-Forwarded-Proto, not two');
  });

  it('forwards only the first Host header', () => {
    const out = pairs(upstreamRequestHeaders(['Host', 'a.localhost', 'Host', 'b.localhost'], fwd));
    assert.deepEqual(
      out.filter(([n]) => n.toLowerCase() === 'host'),
      [['Host', 'a.localhost']],
    );
  });

  it('keeps Connection: Upgrade and Upgrade for an upgrade', () => {
    const raw = ['Host', 'a', 'Connection', 'Upgrade, X-Hop', 'Upgrade', 'websocket', 'X-Hop', '1', 'Sec-WebSocket-Key', 'k'];
    const out = pairs(upstreamRequestHeaders(raw, fwd, true));
    assert.deepEqual(out.slice(0, 4), [
      ['Host', 'a'],
      ['Sec-WebSocket-Key', 'k'],
      ['Connection', 'Upgrade'],
      ['Upgrade', 'websocket'],
    ]);
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

describe('TrustedProxies', () => {
  it('matches addresses and CIDRs of both families', () => {
    const t = new TrustedProxies(['10.0.0.0/8, 192.168.1.7', '::1', 'fd00::/8']);
    for (const a of ['10.1.2.3', '192.168.1.7', '::1', 'fd12::5']) assert.ok(t.has(a), a);
    for (const a of ['11.0.0.1', '192.168.1.8', '::2', 'unknown', '']) assert.ok(!t.has(a), a);
    assert.ok(!new TrustedProxies(undefined).has('127.0.0.1'), 'none by default');
  });

  it('refuses what is not an address or CIDR, naming where it came from', () => {
    for (const bad of ['10.0.0.0/33', 'localhost', '10.0.0.0/8/8', '::1/129', '1.2.3']) {
      assert.throws(
        () => new TrustedProxies(bad, 'PILOT_TRUSTED_PROXIES'),
        (e: unknown) => isPilotError(e) && e.code === 'bad_request' && e.message.startsWith('PILOT_TRUSTED_PROXIES:'),
        bad,
      );
    }
  });
});
