/**
 * Agents' held long polls: a sync with nothing new waits here until desired state changes for some
 * node (every waiter is woken: each agent re-reads its own list) or its wait ends.
 */
export class AgentWaiters {
  private readonly waiters = new Set<() => void>();

  /** Resolve on the next `wakeAll()`, or after `ms`. Never rejects. */
  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }

  /** Answer every held poll now (desired instances changed, or shutdown). */
  wakeAll(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Polls held now. */
  get size(): number {
    return this.waiters.size;
  }
}
