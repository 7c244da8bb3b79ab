/** Splitting a process's output into lines, and keeping the last few for error messages. No I/O. */

/** Longer lines are cut: a minified bundle or a progress bar printed without newlines must not fill memory or the logs. */
export const MAX_LINE_CHARS = 16 * 1024;

/**
 * Turns text chunks (already decoded, split anywhere) into whole lines. `\n` ends a line and a `\r`
 * before it is dropped, so CRLF output reads like LF output. A line longer than `maxChars` is kept
 * up to `maxChars` and the rest is counted and dropped, so memory stays bounded.
 */
export class LineSplitter {
  private partial = '';
  private dropped = 0;

  constructor(
    private readonly emit: (line: string) => void,
    private readonly maxChars = MAX_LINE_CHARS,
  ) {}

  /** Feed a chunk; complete lines are emitted in order. */
  push(chunk: string): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf('\n', start);
      if (nl === -1) {
        this.append(chunk.slice(start));
        return;
      }
      this.append(chunk.slice(start, nl));
      this.flushLine();
      start = nl + 1;
    }
  }

  /** The stream ended: emit what is left, if anything. */
  end(): void {
    if (this.partial !== '' || this.dropped > 0) this.flushLine();
  }

  private append(text: string): void {
    const room = this.maxChars - this.partial.length;
    if (text.length <= room) {
      this.partial += text;
    } else {
      this.partial += text.slice(0, Math.max(room, 0));
      this.dropped += text.length - Math.max(room, 0);
    }
  }

  private flushLine(): void {
    let line = this.partial;
    // A CR that ends the kept part of a line is the CR of a CRLF (when nothing was dropped).
    if (this.dropped === 0 && line.endsWith('\r')) line = line.slice(0, -1);
    if (this.dropped > 0) line += ` [… ${this.dropped} more characters cut]`;
    this.partial = '';
    this.dropped = 0;
    this.emit(line);
  }
}

/** The last `max` lines pushed, oldest first. */
export class Tail {
  private readonly lines: string[] = [];

  constructor(private readonly max: number) {}

  push(line: string): void {
    if (this.max <= 0) return;
    this.lines.push(line);
    if (this.lines.length > this.max) this.lines.shift();
  }

  toArray(): string[] {
    return [...this.lines];
  }
}
