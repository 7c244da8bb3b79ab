import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { validateAppConfig } from '../core/app-config.js';
import { detect, githubRepo, pilotYaml, portHandling, redactRemote, startFilesOf, type InitFiles } from './init-detect.js';

const files = (over: Partial<InitFiles>): InitFiles => ({
  folder: 'app',
  lockfiles: [],
  dockerfile: false,
  monorepoMarkers: [],
  sources: {},
  ...over,
});

describe('init detection', () => {
  it('reads GitHub repositories from every remote form, and nothing else', () => {
    for (const r of [
      'https://github.com/acme/shop.git',
      'https://github.com/acme/shop',
      'https://x-access-token:ghp_x@github.com/acme/shop.git',
      'git@github.com:acme/shop.git',
      'ssh://git@github.com/acme/shop.git',
      'ssh://git@github.com:22/acme/shop',
      'github.com:acme/shop.git',
    ]) {
      assert.deepEqual(githubRepo(r), { owner: 'acme', repo: 'shop' }, r);
    }
    for (const r of [
      'https://gitlab.com/acme/shop.git',
      'https://github.com.evil.io/acme/shop',
      'file:///srv/shop',
      'https://github.com/acme/shop/tree/main',
      "https://github.com/a/b'; rm -rf /",
    ]) {
      assert.equal(githubRepo(r), undefined, r);
    }
  });

  it('never prints credentials of a remote', () => {
    assert.equal(redactRemote('https://user:secret@git.example.com/a/b.git'), 'https://git.example.com/a/b.git');
    assert.equal(redactRemote('git@github.com:a/b.git'), 'git@github.com:a/b.git');
  });

  it('finds the start file of node, nodemon and tsx commands, never outside the app', () => {
    assert.deepEqual(startFilesOf('node server.js'), ['server.js']);
    assert.deepEqual(startFilesOf('node --enable-source-maps dist/index.js'), ['dist/index.js']);
    assert.deepEqual(startFilesOf('nodemon -L src/index.js'), ['src/index.js']);
    assert.deepEqual(startFilesOf('node ./bin/www'), ['bin/www', 'bin/www.js', 'bin/www/index.js']);
    assert.deepEqual(startFilesOf('next start'), []);
    assert.deepEqual(startFilesOf('node ../../etc/passwd'), []);
    assert.deepEqual(startFilesOf('node /etc/passwd'), []);
    assert.deepEqual(startFilesOf('node $(id).js'), []);
  });

  it('tells reading PORT from a fixed port', () => {
    assert.deepEqual(portHandling('app.listen(process.env.PORT || 3000)'), { kind: 'reads-port' });
    assert.deepEqual(portHandling("const port = process.env['PORT'] ?? 8080"), { kind: 'reads-port' });
    assert.deepEqual(portHandling('const { PORT = 3000 } = process.env'), { kind: 'reads-port' });
    assert.deepEqual(portHandling('server.listen(8000)'), { kind: 'fixed', port: 8000 });
    assert.deepEqual(portHandling("const server = Hapi.server({ port: 8000, host: 'localhost' })"), { kind: 'fixed', port: 8000 });
    assert.deepEqual(portHandling('console.log(1)'), { kind: 'unknown' });
    assert.deepEqual(portHandling(undefined), { kind: 'unknown' });
  });

  it("takes main or index.js as the start only when it starts a server (a library's entry is not)", () => {
    const lib = detect(
      files({ packageJson: '{"name":"lib","main":"index.js"}', sources: { 'index.js': "module.exports = require('./lib')" } }),
    );
    assert.equal(lib.start, undefined);
    const srv = detect(
      files({ packageJson: '{"name":"srv","main":"index.js"}', sources: { 'index.js': 'http.createServer(h).listen(process.env.PORT)' } }),
    );
    assert.deepEqual(srv.start, { command: 'node index.js', source: 'package.json "main"', runLine: 'node index.js' });
  });

  it('writes a pilot.yaml the schema accepts for every kind of folder', () => {
    const kinds: InitFiles[] = [
      files({}),
      files({ packageJson: '{"name":"x","scripts":{"start":"node s.js"}}', sources: { 's.js': 'listen(8080)' }, dockerfile: true }),
      files({ packageJson: '{"main":"a.js"}', sources: { 'a.js': 'listen(80)' }, nvmrc: 'v22\n' }),
      files({ packageJson: 'not json' }),
      files({ packageJson: '{"name":"#$%^","packageManager":"bun@1"}', folder: '01 My App!' }),
      files({ packageJsonSkipped: 'too big', procfile: 'web: node ./bin/www\n', sources: { 'bin/www': 'process.env.PORT' } }),
    ];
    for (const f of kinds) {
      const d = detect(f);
      const raw: unknown = parse(pilotYaml(d, 'v20.20.2'));
      assert.doesNotThrow(() => validateAppConfig(raw, 'pilot.yaml'), JSON.stringify(f));
    }
    assert.equal(detect(files({ packageJson: '{"name":"#$%^"}', folder: '01 My App!' })).name, 'my-app');
    assert.match(detect(files({ packageJson: '{"packageManager":"bun@1"}' })).warnings.join(), /names no npm, yarn or pnpm/);
  });
});
