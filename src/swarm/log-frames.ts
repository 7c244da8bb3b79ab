/**
 * The Engine API's multiplexed log stream (a task without a TTY): frames of an 8-byte header
 * (stream type: 1 stdout, 2 stderr; three zero bytes; the payload's length, big-endian) and the
 * payload. A frame may arrive split across chunks; the decoder keeps the rest for the next one.
 */
import { StringDecoder } from 'node:string_decoder';

export class LogFrames {
  private pending = Buffer.alloc(0);
  private readonly text = new StringDecoder('utf8');

  /** The text of the whole frames in this chunk (stdout and stderr as they come). */
  push(chunk: Buffer): string {
    let buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    let out = '';
    while (buf.length >= 8) {
      const size = buf.readUInt32BE(4);
      if (buf.length < 8 + size) break;
      out += this.text.write(buf.subarray(8, 8 + size));
      buf = buf.subarray(8 + size);
    }
    this.pending = Buffer.from(buf);
    return out;
  }
}
