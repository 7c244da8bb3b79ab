import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { resolveRunCommand } from '../core/run-command.js';
import type { ContextEntry } from './context.js';
import { withoutCredentials } from './build-npm.js';
import { commandProblem, generateDockerfile, imageInstallArgv } from './dockerfile.js';

const entries: ContextEntry[] = [
  { path: '.dockerignore', kind: 'file' },
  { path: 'lib', kind: 'dir' },
  { path: 'lib/a.js', kind: 'file' },
  { path: 'node_modules', kind: 'dir' },
  { path: 'node_modules/x/index.js', kind: 'file' },
  { path: 'package.json', kind: 'file' },
  { path: 'server.js', kind: 'file' },
];

describe('generated Dockerfile', () => {
  it('installs the dependencies in a build stage, builds, and copies the result onto a clean base', () => {
    const text = generateDockerfile({
      baseImage: 'pilot/node:20.20.2',
      command: ['node', 'server.js'],
      entries: [...entries, { path: 'package-lock.json', kind: 'file' }],
      scripts: { build: 'tsc' },
      buildTools: true,
    });
    const lines = text.split('\n').filter((l) => l && !l.startsWith('#'));
    const [build, final] = [
      lines.slice(
        0,
        lines.findIndex((l, i) => i > 0 && l.startsWith('FROM')),
      ),
      lines.slice(lines.findIndex((l, i) => i > 0 && l.startsWith('FROM'))),
    ];
    assert.equal(build[0], 'FROM pilot/node:20.20.2 AS build');
    assert.ok(build.includes('COPY [".pilot-build/sh", "/bin/sh"]') && build.includes('COPY [".pilot-build/env", "/usr/bin/env"]'));
    const install = build.indexOf('RUN ["npm","ci","--no-audit","--no-fund"]');
    assert.ok(
      install > build.indexOf('COPY ["package.json","package-lock.json","/pilot-deps/"]'),
      'the lockfile is copied before the install',
    );
    assert.ok(
      install < build.indexOf('COPY ["lib","/app/lib/"]'),
      'the code comes after the install: a code change keeps the install layer',
    );
    assert.ok(build.indexOf('RUN ["npm","run","build"]') > build.indexOf('COPY ["lib","/app/lib/"]'));
    assert.ok(!text.includes('"node_modules"'), 'a node_modules of the build machine is never copied');
    assert.deepEqual(
      [...final.slice(0, 3), ...final.slice(4, 6)],
      [
        'FROM pilot/node:20.20.2',
        'WORKDIR /app',
        'ENV NODE_ENV=production HOME=/home/node',
        'COPY --from=build ["/pilot-deps/node_modules/", "/app/node_modules/"]',
        'COPY --from=build ["/app/", "/app/"]',
      ],
    );
    assert.match(final[3]!, /chmodSync\('\/tmp',0o1777\).*\\"\/home\/node\\".*chownSync\(d,1000,1000\)/);
    assert.deepEqual(final.slice(6), ['USER node', 'CMD ["node","server.js"]']);
    assert.ok(!final.some((l) => l.includes('.pilot-build')), 'the build tools stay in the build stage');
  });

  it('installs by lockfile: npm ci, yarn and pnpm through npm exec (packageManager version), npm install without one', () => {
    const files = (...names: string[]): Set<string> => new Set(['package.json', ...names]);
    assert.deepEqual(imageInstallArgv(files('package-lock.json'), undefined), ['npm', 'ci', '--no-audit', '--no-fund']);
    assert.deepEqual(imageInstallArgv(files('npm-shrinkwrap.json', 'yarn.lock'), undefined), ['npm', 'ci', '--no-audit', '--no-fund']);
    assert.deepEqual(imageInstallArgv(files('yarn.lock'), undefined), [
      'npm',
      'exec',
      '--yes',
      '--package=yarn@1.22.22',
      '--',
      'yarn',
      'install',
      '--frozen-lockfile',
    ]);
    assert.deepEqual(imageInstallArgv(files('yarn.lock'), 'yarn@4.5.1+sha512.abc'), [
      'npm',
      'exec',
      '--yes',
      '--package=yarn@4.5.1',
      '--',
      'yarn',
      'install',
      '--immutable',
    ]);
    assert.deepEqual(imageInstallArgv(files('pnpm-lock.yaml'), 'pnpm@8.15.9'), [
      'npm',
      'exec',
      '--yes',
      '--package=pnpm@8.15.9',
      '--',
      'pnpm',
      'install',
      '--frozen-lockfile',
    ]);
    // A packageManager of another tool, or a hostile one, never picks the version.
    assert.deepEqual(imageInstallArgv(files('pnpm-lock.yaml'), 'yarn@4.0.0'), [
      'npm',
      'exec',
      '--yes',
      '--package=pnpm@9.15.9',
      '--',
      'pnpm',
      'install',
      '--frozen-lockfile',
    ]);
    assert.deepEqual(imageInstallArgv(files('pnpm-lock.yaml'), 'pnpm@9.0.0 && curl x'), [
      'npm',
      'exec',
      '--yes',
      '--package=pnpm@9.15.9',
      '--',
      'pnpm',
      'install',
      '--frozen-lockfile',
    ]);
    assert.deepEqual(imageInstallArgv(files(), undefined), ['npm', 'install', '--no-audit', '--no-fund']);
    assert.equal(imageInstallArgv(new Set(['server.js']), undefined), undefined);
  });

  it('runs pilot.yaml build commands in exec form, yarn/pnpm ones through npm exec; no package.json: no install', () => {
    const text = generateDockerfile({
      baseImage: 'b',
      command: ['node', 'server.js'],
      entries: [{ path: 'server.js', kind: 'file' }],
      build: [
        ['node', 'gen.js', 'a b'],
        ['pnpm', 'run', 'x'],
      ],
      packageManager: 'pnpm@9.1.0',
    });
    assert.match(text, /^RUN \["node","gen.js","a b"\]$/m);
    assert.match(text, /^RUN \["npm","exec","--yes","--package=pnpm@9.1.0","--","pnpm","run","x"\]$/m);
    assert.ok(!/pilot-deps/.test(text.split('FROM b\n')[1] ?? ''), 'no dependencies layer without an install');
    assert.ok(!text.includes('npm","ci') && !text.includes('npm","install'));
    assert.ok(!text.includes('/bin/sh'), 'no build tools when the context has none');
  });

  it('declares pilot.yaml env as build arguments after the install, only when there are build commands', () => {
    const withBuild = generateDockerfile({
      baseImage: 'b',
      command: ['node', 's.js'],
      entries: [...entries, { path: 'package-lock.json', kind: 'file' }],
      scripts: { build: 'x' },
      buildArgs: ['API_URL', 'bad name'],
    });
    const lines = withBuild.split('\n');
    assert.ok(
      lines.indexOf('ARG API_URL') > lines.findIndex((l) => l.includes('"npm","ci"')),
      'after the install: a changed value keeps the install layer',
    );
    assert.ok(lines.indexOf('ARG API_URL') < lines.indexOf('RUN ["npm","run","build"]'));
    assert.ok(!withBuild.includes('bad name'));
    assert.ok(!generateDockerfile({ baseImage: 'b', command: ['node', 's.js'], entries, buildArgs: ['API_URL'] }).includes('ARG'));
  });

  it("creates the volume paths owned by the app user, and passes the build machine's registry and CA to the build stage only", () => {
    const text = generateDockerfile({
      baseImage: 'b',
      command: ['node', 's.js'],
      entries,
      volumePaths: ['/data', '/var-x/y'],
      registry: 'https://npm.example.test/',
      ca: true,
    });
    const [build, final] = text.split('\nFROM b\n');
    assert.match(build!, /^ENV npm_config_registry=https:\/\/npm.example.test\/$/m);
    assert.match(build!, /NODE_EXTRA_CA_CERTS=\/usr\/local\/share\/pilot-build\/ca.crt/);
    assert.ok(!final!.includes('registry') && !final!.includes('ca.crt'));
    assert.match(final!, /\[\\"\/home\/node\\",\\"\/data\\",\\"\/var-x\/y\\"\]/);
    // A registry value with spaces or quotes would be a second instruction: left out.
    assert.ok(
      !generateDockerfile({ baseImage: 'b', command: ['node', 's.js'], entries, registry: 'https://x/ \nRUN evil' }).includes('evil'),
    );
  });

  it('takes the command from pilot.yaml run, the Procfile web line, or a plain node start script', () => {
    const cmd = (run: string[] | undefined, procfile: string | undefined, scripts?: Record<string, string>): string =>
      generateDockerfile({ baseImage: 'b', command: resolveRunCommand(run, procfile, scripts), entries })
        .split('\n')
        .find((l) => l.startsWith('CMD'))!;
    assert.equal(cmd(['node', 'a.js', '--x=1'], 'web: node b.js'), 'CMD ["node","a.js","--x=1"]');
    assert.equal(cmd(undefined, 'worker: x\nweb: node "b c.js"'), 'CMD ["node","b c.js"]');
    assert.equal(cmd(undefined, undefined, { start: 'node dist/main.js' }), 'CMD ["node","dist/main.js"]');
  });

  it('refuses a start command that needs a shell, saying to add a Dockerfile or a node run command', () => {
    for (const command of [
      ['npm', 'start'],
      ['/bin/sh', '-c', 'node a.js && x'],
      ['python', 'app.py'],
    ]) {
      assert.ok(commandProblem(command));
      assert.throws(
        () => generateDockerfile({ baseImage: 'pilot/node:20', command, entries }),
        (e: Error & { code?: string; hint?: string }) =>
          e.code === 'invalid_config' && /no shell/.test(e.message) && /Dockerfile/.test(e.hint ?? '') && /run: node/.test(e.hint ?? ''),
      );
    }
    // npm start that is not a plain node command resolves to npm start: refused.
    assert.deepEqual(resolveRunCommand(undefined, undefined, { start: 'node a.js && b' }), ['npm', 'start']);
  });

  it('falls back to one COPY when names would be patterns to the daemon or folders are many', () => {
    const odd = [...entries, { path: 'a[1].js', kind: 'file' as const }];
    assert.match(generateDockerfile({ baseImage: 'b', command: ['node', 's.js'], entries: odd }), /^COPY \. \/app\/$/m);
    // The build tools copied with the app are removed before the final stage copies /app.
    assert.match(generateDockerfile({ baseImage: 'b', command: ['node', 's.js'], entries: odd }), /rmSync\('\/app\/\.pilot-build'/);
    const many = Array.from({ length: 30 }, (_, i) => ({ path: `d${i}`, kind: 'dir' as const }));
    assert.match(generateDockerfile({ baseImage: 'b', command: ['node', 's.js'], entries: many }), /^COPY \. \/app\/$/m);
  });

  it('writes the command as a JSON array: no shell form, quotes and newlines escaped', () => {
    const text = generateDockerfile({ baseImage: 'b', command: ['node', 'a"b\nRUN evil'], entries });
    assert.match(text, /^CMD \["node","a\\"b\\nRUN evil"\]$/m);
    assert.ok(!/^RUN evil/m.test(text));
  });
});

describe('build machine npm settings', () => {
  it('passes the registry URL without credentials, and nothing that is not an http(s) URL', () => {
    assert.equal(withoutCredentials('https://npm.example.test/'), 'https://npm.example.test/');
    assert.equal(withoutCredentials('https://me:s3cret@npm.example.test/path/'), 'https://npm.example.test/path/');
    assert.equal(withoutCredentials('file:///etc/passwd'), undefined);
    assert.equal(withoutCredentials('https://x/ y'), undefined);
    assert.equal(withoutCredentials(undefined), undefined);
  });
});
