/**
 * Test-only: write tar archives byte by byte, including the hostile ones node-tar's packer
 * refuses to make (traversal, absolute paths, links, devices, lying sizes, gzip bombs).
 */
import { open } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';

export interface RawEntry {
  readonly path: string;
  /** ustar typeflag: '0' file, '1' hard link, '2' symlink, '3' char device, '5' folder, '6' fifo… */
  readonly type?: string;
  readonly body?: Buffer | string;
  /** Size written in the header; defaults to the body's length (a liar can declare anything). */
  readonly size?: number;
  readonly mode?: number;
  readonly linkpath?: string;
  /** Extra pax records for this entry, written verbatim (values may hold anything, NULs too). */
  readonly pax?: Readonly<Record<string, string>>;
}

const BLOCK = 512;

/** One 512-byte ustar header block with a valid checksum. */
export function ustarHeader(e: { path: string; type: string; size: number; mode: number; linkpath?: string }): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(e.path, 0, 100, 'utf8');
  octal(h, 100, 8, e.mode);
  octal(h, 108, 8, 0);
  octal(h, 116, 8, 0);
  octal(h, 124, 12, e.size);
  octal(h, 136, 12, 0);
  h.write(e.type, 156, 1, 'ascii');
  if (e.linkpath !== undefined) h.write(e.linkpath, 157, 100, 'utf8');
  h.write('ustar\u000000', 257, 8, 'ascii');
  h.fill(' ', 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return h;
}

function octal(buf: Buffer, off: number, len: number, n: number): void {
  buf.write(`${n.toString(8).padStart(len - 1, '0')}\0`, off, len, 'ascii');
}

/** A pax record "<len> key=value\n", where len counts the whole record, itself included. */
function paxRecord(key: string, value: string): string {
  const rest = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(rest) + 1;
  while (String(len).length + Buffer.byteLength(rest) !== len) len = String(len).length + Buffer.byteLength(rest);
  return `${len}${rest}`;
}

function padded(body: Buffer): Buffer {
  const pad = (BLOCK - (body.length % BLOCK)) % BLOCK;
  return Buffer.concat([body, Buffer.alloc(pad)]);
}

/** Header (with a pax header before it when the names need one) and padded body of one entry. */
export function rawEntry(e: RawEntry): Buffer {
  const body = typeof e.body === 'string' ? Buffer.from(e.body) : (e.body ?? Buffer.alloc(0));
  const type = e.type ?? '0';
  const pax: Record<string, string> = { ...e.pax };
  if (Buffer.byteLength(e.path) > 100) pax.path = e.path;
  if (e.linkpath !== undefined && Buffer.byteLength(e.linkpath) > 100) pax.linkpath = e.linkpath;
  const parts: Buffer[] = [];
  const records = Object.entries(pax)
    .map(([k, v]) => paxRecord(k, v))
    .join('');
  if (records !== '') {
    const pb = Buffer.from(records);
    parts.push(ustarHeader({ path: 'PaxHeader', type: 'x', size: pb.length, mode: 0o644 }), padded(pb));
  }
  const header = {
    path: e.path.slice(0, 100),
    type,
    size: e.size ?? body.length,
    mode: e.mode ?? (type === '5' ? 0o755 : 0o644),
    ...(e.linkpath === undefined ? {} : { linkpath: e.linkpath.slice(0, 100) }),
  };
  parts.push(ustarHeader(header), padded(body));
  return Buffer.concat(parts);
}

/** A complete tar archive (with its two zero blocks at the end). */
export function rawTar(entries: readonly RawEntry[]): Buffer {
  return Buffer.concat([...entries.map(rawEntry), Buffer.alloc(2 * BLOCK)]);
}

/** gzip of a raw tar archive. */
export function rawTgz(entries: readonly RawEntry[]): Buffer {
  return gzipSync(rawTar(entries));
}

/**
 * A gzip bomb: one file entry declaring `declaredSize` bytes followed by `zeroBytes` of zeros,
 * written as concatenated gzip members (legal gzip) so hundreds of MB cost a few hundred KB and
 * no time to make: the same compressed 16 MiB of zeros is repeated.
 */
export async function writeZeroBomb(file: string, opts: { declaredSize: number; zeroBytes: number; path?: string }): Promise<number> {
  const chunk = 16 * 1024 * 1024;
  const zeros = gzipSync(Buffer.alloc(chunk), { level: 9 });
  const fh = await open(file, 'w');
  try {
    await fh.write(gzipSync(ustarHeader({ path: opts.path ?? 'bomb', type: '0', size: opts.declaredSize, mode: 0o644 })));
    let left = opts.zeroBytes;
    while (left >= chunk) {
      await fh.write(zeros);
      left -= chunk;
    }
    if (left > 0) await fh.write(gzipSync(Buffer.alloc(left)));
    return (await fh.stat()).size;
  } finally {
    await fh.close();
  }
}
