import { strict as assert } from 'node:assert';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tar from 'tar';
import { buildContext, listContext, packContext, readRegularFile, resolveDockerfile } from './context.js';

/** Entries of a tar stream: path → { type, linkpath, body }. */
async function readTar(stream: NodeJS.ReadableStream): Promise<Map<string, { type: string; linkpath?: string; body: string }>> {
  const out = new Map<string, { type: string; linkpath?: string; body: string }>();
  const parser = new tar.Parser({
    onReadEntry: (e) => {
      const chunks: Buffer[] = [];
      e.on('data', (c: Buffer) => chunks.push(c));
      e.on('end', () =>
        out.set(e.path.replace(/\/$/, ''), {
          type: e.type,
          ...(e.linkpath ? { linkpath: e.linkpath } : {}),
          body: Buffer.concat(chunks).toString(),
        }),
      );
    },
  });
  await new Promise<void>((resolve, reject) => {
    parser.on('end', resolve);
    parser.on('error', reject);
    stream.pipe(parser as unknown as NodeJS.WritableStream);
  });
  return out;
}

describe('docker build context', () => {
  let dir: string;
  let outside: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pilot-ctx-'));
    outside = await mkdtemp(join(tmpdir(), 'pilot-ctx-out-'));
    await writeFile(join(outside, 'secret.txt'), 'host secret');
    await mkdir(join(dir, 'src'));
    await mkdir(join(dir, 'node_modules/dep'), { recursive: true });
    await mkdir(join(dir, 'logs'));
    await writeFile(join(dir, 'Dockerfile'), 'FROM scratch\n');
    await writeFile(join(dir, 'server.js'), 'console.log(1)\n');
    await writeFile(join(dir, 'src/app.js'), 'app\n');
    await writeFile(join(dir, 'src/app.test.js'), 'test\n');
    await writeFile(join(dir, 'node_modules/dep/index.js'), 'dep\n');
    await writeFile(join(dir, 'logs/a.log'), 'log\n');
    await writeFile(join(dir, 'logs/keep.log'), 'kept\n');
    await writeFile(join(dir, '.env'), 'TOKEN=x\n');
    await symlink(join(outside, 'secret.txt'), join(dir, 'escape'));
    await symlink(outside, join(dir, 'escape-dir'));
    await symlink('server.js', join(dir, 'inside'));
    await writeFile(join(dir, '.dockerignore'), '# comment\n.env\n**/*.test.js\nlogs\n!logs/keep.log\nDockerfile\n');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
  });

  it('leaves out what .dockerignore says, with exceptions, but keeps the Dockerfile and .dockerignore', async () => {
    const paths = (await listContext(dir, { keep: ['Dockerfile'] })).map((e) => e.path);
    assert.ok(!paths.includes('.env'));
    assert.ok(!paths.includes('src/app.test.js'));
    assert.ok(paths.includes('src/app.js'));
    assert.ok(!paths.includes('logs/a.log'));
    assert.ok(paths.includes('logs/keep.log'), 'an exception inside an ignored folder comes back');
    assert.ok(paths.includes('Dockerfile'), 'the daemon needs the Dockerfile even when ignored');
    assert.ok(paths.includes('.dockerignore'));
    assert.ok(paths.includes('node_modules/dep/index.js'));
    assert.deepEqual(paths, [...paths].sort(), 'sorted: same tree, same bytes');
  });

  it('puts symlinks in as links and never reads what they point to', async () => {
    const ctx = await buildContext(dir, { dockerfile: 'Dockerfile' });
    const entries = await readTar(ctx.stream);
    assert.equal(entries.get('escape')?.type, 'SymbolicLink');
    assert.equal(entries.get('escape')?.linkpath, join(outside, 'secret.txt'));
    assert.equal(entries.get('escape-dir')?.type, 'SymbolicLink');
    assert.equal(entries.get('inside')?.linkpath, 'server.js');
    for (const [path, e] of entries) {
      assert.ok(!e.body.includes('host secret'), `${path} holds the content of a file outside the folder`);
      assert.ok(!path.startsWith('escape-dir/'), `${path}: a linked folder was walked`);
    }
    assert.equal(entries.get('server.js')?.body, 'console.log(1)\n');
    assert.ok(!entries.has('.env'));
  });

  it('adds in-memory files (a generated Dockerfile) in place of files of the same name', async () => {
    const entries = await readTar(
      packContext(dir, await listContext(dir), [
        { path: '.dockerignore', content: 'x\n' },
        { path: '.pilot.Dockerfile', content: 'FROM y\n' },
      ]),
    );
    assert.equal(entries.get('.pilot.Dockerfile')?.body, 'FROM y\n');
    assert.equal(entries.get('.dockerignore')?.body, 'x\n');
  });

  it('gives the same bytes for the same tree', async () => {
    const bytes = async (): Promise<Buffer> => {
      const chunks: Buffer[] = [];
      for await (const c of (await buildContext(dir, { dockerfile: 'Dockerfile' })).stream as AsyncIterable<Buffer>) chunks.push(c);
      return Buffer.concat(chunks);
    };
    assert.ok((await bytes()).equals(await bytes()));
  });

  it('keeps a Dockerfile that lives in an ignored folder', async () => {
    const paths = (await listContext(dir, { keep: ['logs/Dockerfile.ci'] })).map((e) => e.path);
    assert.ok(!paths.includes('logs/a.log'));
    await writeFile(join(dir, 'logs/Dockerfile.ci'), 'FROM scratch\n');
    try {
      assert.ok((await listContext(dir, { keep: ['logs/Dockerfile.ci'] })).some((e) => e.path === 'logs/Dockerfile.ci'));
    } finally {
      await rm(join(dir, 'logs/Dockerfile.ci'));
    }
  });

  it('refuses a .dockerignore or Procfile that is a link instead of reading through it', async () => {
    const linked = await mkdtemp(join(tmpdir(), 'pilot-ctx-link-'));
    try {
      await symlink(join(outside, 'secret.txt'), join(linked, '.dockerignore'));
      await assert.rejects(
        listContext(linked),
        (e: Error & { code?: string }) => e.code === 'invalid_config' && /\.dockerignore must be a regular file/.test(e.message),
      );
      assert.equal(await readRegularFile(linked, 'Procfile'), undefined);
    } finally {
      await rm(linked, { recursive: true, force: true });
    }
  });

  it('refuses a Dockerfile path outside the folder, missing, or a link out', async () => {
    assert.equal(await resolveDockerfile(dir, './Dockerfile'), 'Dockerfile');
    for (const p of ['../x/Dockerfile', '/etc/passwd', 'missing.Dockerfile', 'escape', 'src']) {
      await assert.rejects(
        resolveDockerfile(dir, p),
        (e: Error & { code?: string }) => e.code === 'invalid_config' && e.message.includes('dockerfile:'),
        p,
      );
    }
  });
});
