import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { resolveAppConfig, validateAppConfig } from './app-config.js';
import { isPilotError } from './errors.js';
import { parseSize, resolveHttpLimits } from './http-limits.js';
import { admitRoutes, cleanRouteHttp, desiredRoutes, type Route } from './routes.js';

/** The resolved `http` of a pilot.yaml text, or the error's message. */
function fromYaml(text: string): unknown {
  try {
    return resolveAppConfig(validateAppConfig(parse(text)), 'web').http;
  } catch (err) {
    assert.ok(isPilotError(err), String(err));
    assert.equal(err.code, 'invalid_config');
    return err.message;
  }
}

describe('pilot.yaml http limits', () => {
  it('resolves durations and sizes in their units (sizes in units of 1024, like nginx)', () => {
    assert.deepEqual(fromYaml('http: { requestTimeout: 60s, idleTimeout: 75s, maxBody: 10mb }'), {
      requestTimeoutMs: 60_000,
      idleTimeoutMs: 75_000,
      maxBodyBytes: 10 * 1024 * 1024,
    });
    assert.deepEqual(fromYaml('http: { requestTimeout: 2m, maxBody: 512KiB }'), { requestTimeoutMs: 120_000, maxBodyBytes: 512 * 1024 });
    assert.deepEqual(fromYaml('http: { idleTimeout: 90, maxBody: 4096 }'), { idleTimeoutMs: 90_000, maxBodyBytes: 4096 });
    assert.deepEqual(fromYaml('http: { maxBody: 1.5 GB }'), { maxBodyBytes: 1.5 * 1024 ** 3 });
    assert.equal(parseSize('100b'), 100);
    assert.equal(parseSize('3k'), 3072);
  });

  it("has no limits when absent or empty: the routers' defaults, as before the field existed", () => {
    assert.equal(fromYaml('name: web'), undefined);
    assert.equal(fromYaml('http: {}'), undefined);
    assert.equal(resolveAppConfig({}, 'web').http, undefined);
  });

  it('refuses negative, zero, absurd and wrongly-unitted values, naming the field and what is allowed', () => {
    const cases: [string, RegExp][] = [
      ['http: { requestTimeout: -5 }', /http\.requestTimeout: must be .*>= 0 .*\(got -5\)/],
      ['http: { requestTimeout: 0 }', /http\.requestTimeout: 0 is out of range \(1s to 1h/],
      ['http: { requestTimeout: 2h }', /http\.requestTimeout: "2h" is out of range \(1s to 1h/],
      ['http: { idleTimeout: 500ms }', /http\.idleTimeout: "500ms" is out of range \(1s to 24h/],
      ['http: { idleTimeout: 7d }', /http\.idleTimeout: must be string matching/],
      ['http: { requestTimeout: 10 parsecs }', /http\.requestTimeout: must be string matching .* \(got "10 parsecs"\)/],
      ['http: { maxBody: 10 mbps }', /http\.maxBody: must be string matching .* \(got "10 mbps"\)/],
      ['http: { maxBody: -1 }', /http\.maxBody: must be .*integer >= 1/],
      ['http: { maxBody: 0 }', /http\.maxBody: must be .*integer >= 1/],
      ['http: { maxBody: 10 }', /http\.maxBody: 10 is out of range \(1kb to 64gb/],
      ['http: { maxBody: 1tb }', /http\.maxBody: must be string matching/],
      ['http: { maxBody: 100gb }', /http\.maxBody: "100gb" is out of range/],
      ['http: { maxBody: 1.5 }', /http\.maxBody: must be/],
      ['http: { requestTimeout: 30s, keepalive: 5s }', /http\.keepalive: unknown field/],
      ['http: 10mb', /http: must be object/],
    ];
    for (const [yaml, want] of cases) {
      const got = fromYaml(yaml);
      assert.equal(typeof got, 'string', `${yaml} was accepted: ${JSON.stringify(got)}`);
      assert.match(got as string, want, yaml);
    }
    // Every bad field is named at once.
    const both = resolveHttpLimits({ requestTimeout: '0s', maxBody: '1b' });
    assert.ok('problems' in both);
    assert.equal(both.problems.length, 2);
  });
});

describe('route http limits', () => {
  const base = (http: unknown): Route =>
    ({ app: 'a', hosts: ['a.localhost'], backends: [{ revision: 1, weight: 100, upstreams: [] }], http }) as Route;

  it('are carried by desiredRoutes from the active revision, and kept by admitRoutes', () => {
    const { routes } = desiredRoutes({
      apps: [
        {
          name: 'a',
          createdAt: 1,
          activeRevision: 1,
          hosts: [],
          targetRevision: undefined,
          http: { requestTimeoutMs: 5000, maxBodyBytes: 2048 },
        },
        { name: 'b', createdAt: 2, activeRevision: 1, hosts: [], targetRevision: undefined },
      ],
      instances: [],
      nodes: [],
    });
    assert.deepEqual(routes[0]!.http, { requestTimeoutMs: 5000, maxBodyBytes: 2048 });
    assert.equal('http' in routes[1]!, false, 'no limits: no field (the table is what it was before)');
  });

  it('drops malformed limits from a table off the wire, with a problem, keeping the rest of the route', () => {
    const { routes, problems } = admitRoutes([base({ requestTimeoutMs: -1, idleTimeoutMs: 'x', maxBodyBytes: 4096 })]);
    assert.deepEqual(routes[0]!.http, { maxBodyBytes: 4096 });
    assert.match(problems[0]!.message, /http limits are malformed/);
    const none = admitRoutes([base('10mb')]);
    assert.equal(none.routes[0]!.http, undefined);
    assert.equal(none.problems.length, 1);
    assert.equal(admitRoutes([base({ requestTimeoutMs: 1000 })]).problems.length, 0);
    assert.equal(cleanRouteHttp({ maxBodyBytes: 1.5 }), undefined);
    assert.equal(cleanRouteHttp({ requestTimeoutMs: Number.POSITIVE_INFINITY }), undefined);
  });
});
