/**
 * The single-writer rule: every change to instances, rollouts, nodes and the active revision runs
 * through `serial()`, one after the other, so decisions never interleave (the fault suite relies on
 * it). A failed write does not stop the ones queued after it.
 */
export class SingleWriter {
  private chain: Promise<unknown> = Promise.resolve();

  /** Run `fn` after every write queued before it. */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }
}
