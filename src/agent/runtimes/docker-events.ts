/**
 * The Docker Engine's event stream (GET /events), followed for as long as the runtime lives, so that
 * the docker runtime learns of a container's death when it happens instead of polling each instance.
 * The stream is reopened after an engine restart or a dropped connection with `since` = the last
 * event seen, so nothing in between is missed; `onResync` then lets the caller re-inspect.
 */
import type { Engine } from '../../docker/engine.js';

export interface ContainerEvent {
  readonly id: string;
  /** die, oom, destroy, start … */
  readonly action: string;
  readonly attributes: Readonly<Record<string, string>>;
}

interface RawEvent {
  Type?: string;
  Action?: string;
  status?: string;
  id?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
  timeNano?: number;
}

const RETRY_MS = 1_000;

export class EngineEvents {
  private started = false;
  private closed = false;
  private stream: (NodeJS.ReadableStream & { destroy?: () => void }) | undefined;
  /** Nanoseconds of the last event seen: where a reopened stream starts. */
  private lastNano: bigint | undefined;
  private connected: Promise<void>;
  private markConnected!: () => void;
  private retry: NodeJS.Timeout | undefined;

  constructor(
    private readonly engine: Engine,
    private readonly filters: Record<string, string[]>,
    private readonly onEvent: (e: ContainerEvent) => void,
    private readonly onResync: () => void,
  ) {
    this.connected = new Promise((resolve) => (this.markConnected = resolve));
  }

  /** Open the stream (once); later calls do nothing. */
  start(): void {
    if (this.started) return;
    this.started = true;
    void this.open(false).catch(() => this.scheduleReopen()); // open() catches; this only keeps a future edit honest
  }

  /** Resolves once the stream is open (events from then on are seen), or after timeoutMs. */
  async ready(timeoutMs: number): Promise<boolean> {
    this.start();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    try {
      return await Promise.race([this.connected.then(() => true), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retry);
    this.stream?.destroy?.();
  }

  private async open(reconnect: boolean): Promise<void> {
    if (this.closed) return;
    try {
      const since =
        this.lastNano === undefined
          ? undefined
          : `${this.lastNano / 1_000_000_000n}.${String(this.lastNano % 1_000_000_000n).padStart(9, '0')}`;
      const stream = (await this.engine.getEvents({ filters: this.filters, ...(since ? { since } : {}) } as Parameters<
        Engine['getEvents']
      >[0])) as NodeJS.ReadableStream & { destroy?: () => void };
      if (this.closed) {
        stream.destroy?.();
        return;
      }
      this.stream = stream;
      this.markConnected();
      if (reconnect) this.onResync();
      let partial = '';
      stream.on('data', (chunk: Buffer) => {
        const lines = (partial + chunk.toString('utf8')).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) if (line.trim()) this.handle(line);
      });
      const again = (): void => {
        if (this.stream !== stream) return;
        this.stream = undefined;
        this.scheduleReopen();
      };
      stream.on('end', again);
      stream.on('close', again);
      stream.on('error', again);
    } catch {
      this.scheduleReopen();
    }
  }

  private scheduleReopen(): void {
    if (this.closed) return;
    this.retry = setTimeout(() => void this.open(true).catch(() => this.scheduleReopen()), RETRY_MS);
    this.retry.unref();
  }

  private handle(line: string): void {
    let e: RawEvent;
    try {
      e = JSON.parse(line) as RawEvent;
    } catch {
      return;
    }
    if (e.timeNano !== undefined) {
      // One nanosecond on: `since` is inclusive, and this event was handled already.
      const n = BigInt(e.timeNano) + 1n;
      if (this.lastNano === undefined || n > this.lastNano) this.lastNano = n;
    }
    const id = e.Actor?.ID ?? e.id;
    const action = e.Action ?? e.status;
    if (id === undefined || action === undefined) return;
    this.onEvent({ id, action, attributes: e.Actor?.Attributes ?? {} });
  }
}
