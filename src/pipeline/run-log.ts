/**
 * A run's log: every line goes to the terminal at once and to the server in batches (a POST per
 * 250 ms at most), so a chatty build does not make a request per line.
 */
import type { ApiClient } from '../api/client.js';

export class RunLog {
  private buf: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> = Promise.resolve();
  private mask: (line: string) => string = (l) => l;

  constructor(
    private readonly api: ApiClient,
    private readonly runId: number,
    private readonly out: (line: string) => void,
  ) {}

  /** Mask these values (build secrets, npmrc credentials) in every later line, terminal included. */
  maskValues(mask: (line: string) => string): void {
    this.mask = mask;
  }

  /** `text` with the masked values hidden (for error messages that leave through other paths). */
  maskText(text: string): string {
    return this.mask(text);
  }

  line(raw: string): void {
    const text = this.mask(raw);
    this.out(text);
    this.buf.push(`${new Date().toISOString()} ${text}\n`);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush().catch(() => undefined);
    }, 250);
  }

  /** Send everything buffered; batches go out in order. */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const text = this.buf.join('');
    this.buf = [];
    // Each batch after the one before, whether that one was stored or refused (a full disk for a
    // moment must not lose every later line of the run).
    if (text) this.sending = this.sending.catch(() => undefined).then(() => this.api.appendRunLog(this.runId, text));
    return this.sending;
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
