/**
 * The reference for bench/bytes.ts's upload: a bare `node:http` server (no Fastify, no app, the
 * same V8 flags as `pilot server`) that receives a PUT body the way FsBlobStore.put does: hashed
 * and written in one pass (`writeHashed`, an fdatasync every 16 MB in the background), fsync, then
 * the temp file is removed. Answers `{digest,size}`. Prints `{"port":N}` once listening.
 *
 *   node --max-semi-space-size=2 dist/bench/upload-receiver.js DIR
 */
import { randomUUID } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { writeHashed } from '../src/artifacts/digest.js';

const dir = process.argv[2];
if (dir === undefined) throw new Error('usage: upload-receiver.js DIR');

const server = createServer((req, res) => {
  const tmp = join(dir, `${randomUUID()}.part`);
  const receive = async (): Promise<string> => {
    const fh = await open(tmp, 'wx', 0o400);
    try {
      const got = await writeHashed(req, fh, { syncEvery: 16 * 1024 * 1024 });
      await fh.sync();
      return JSON.stringify(got);
    } finally {
      await fh.close();
      await rm(tmp, { force: true });
    }
  };
  receive().then(
    (body) => res.end(body),
    (err: unknown) => {
      res.statusCode = 500;
      res.end(String(err));
    },
  );
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: (server.address() as AddressInfo).port })));
