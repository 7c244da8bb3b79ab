/**
 * Per-instance CPU rates from the agents' running totals (`cpuSeconds` in each sync, every ≤ 5 s):
 * the control plane keeps the last minute of (time, total) per instance, in memory, and a rate is
 * the rise of the total over the window divided by the time between its first and last sample.
 * A total that drops (the instance restarted, or its tree lost a child that was never waited for)
 * starts the samples again: never a negative rate. Keyed by node and instance, so a node can only
 * speak for its own instances.
 */
import type { AppRecord, InstanceRecord, Store } from '../store/store.js';

interface Sample {
  readonly at: number;
  readonly total: number;
}

/** How long samples are kept (ms). */
const KEEP_MS = 60_000;
/** At most this many samples per instance (a burst of syncs must not grow it). */
const MAX_SAMPLES = 64;

/** CPU cores used over the last `windowMs` (the rate of the running total), or undefined without two samples 1 s apart. */
export function cpuRate(samples: readonly Sample[], now: number, windowMs: number): number | undefined {
  const inWindow = samples.filter((s) => now - s.at <= windowMs);
  // The newest sample before the window anchors its start, so a window longer than the sync interval always has two.
  const before = samples.filter((s) => now - s.at > windowMs).at(-1);
  const pts = before ? [before, ...inWindow] : inWindow;
  if (pts.length < 2) return undefined;
  const first = pts[0]!;
  const last = pts.at(-1)!;
  if (last.at - first.at < 1000) return undefined;
  return Math.max(0, (last.total - first.total) / ((last.at - first.at) / 1000));
}

export class CpuMeter {
  readonly #samples = new Map<string, Sample[]>();
  readonly #now: () => number;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  /** Record a node's report: each instance's running total of CPU seconds. */
  record(nodeId: string, instances: readonly { readonly id: string; readonly cpuSeconds?: number | undefined }[]): void {
    const now = this.#now();
    for (const i of instances) {
      if (i.cpuSeconds === undefined || !Number.isFinite(i.cpuSeconds) || i.cpuSeconds < 0) continue;
      const key = `${nodeId}/${i.id}`;
      let list = this.#samples.get(key);
      if (!list) this.#samples.set(key, (list = []));
      if (list.length > 0 && i.cpuSeconds < list.at(-1)!.total) list.length = 0; // a restarted counter
      list.push({ at: now, total: i.cpuSeconds });
      while (list.length > MAX_SAMPLES || (list.length > 2 && now - list[0]!.at > KEEP_MS)) list.shift();
    }
    if (this.#samples.size > 10 * instances.length + 1000) this.#prune(now);
  }

  /** CPU cores the instance used over the window (1 = one full core), or undefined when not known yet. */
  cores(nodeId: string, instanceId: string, windowMs: number): number | undefined {
    const list = this.#samples.get(`${nodeId}/${instanceId}`);
    return list ? cpuRate(list, this.#now(), windowMs) : undefined;
  }

  /** Forget instances that have not been reported for a while. */
  #prune(now: number): void {
    for (const [key, list] of this.#samples) if (now - (list.at(-1)?.at ?? 0) > KEEP_MS) this.#samples.delete(key);
  }
}

/** The window a targetCpu decision reads: three agent syncs at least (they come every ≤ 5 s). */
export const CPU_WINDOW_MS = 15_000;

/**
 * The autoscaler's CPU source (control/autoscaler.ts CpuSource): each instance's CPU over the last
 * 15 s as a percentage of its allowance (`resources.cpu` when set, else one core). An instance
 * never uses more cores than its node has, so a node's report cannot claim more.
 */
export function cpuFigures(
  meter: Pick<CpuMeter, 'cores'>,
  store: Pick<Store, 'listNodes'>,
): (app: AppRecord, instances: readonly InstanceRecord[]) => Promise<ReadonlyMap<string, number>> {
  return async (app, instances) => {
    const allowance = app.config.resources.cpu ?? 1;
    const nodeCpus = new Map((await store.listNodes()).map((n) => [n.id, n.cpus ?? Infinity]));
    const out = new Map<string, number>();
    for (const i of instances) {
      const cores = meter.cores(i.nodeId, i.id, CPU_WINDOW_MS);
      if (cores !== undefined) out.set(i.id, (Math.min(cores, nodeCpus.get(i.nodeId) ?? Infinity) / allowance) * 100);
    }
    return out;
  };
}
