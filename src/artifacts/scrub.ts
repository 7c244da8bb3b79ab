/**
 * The periodic scrub: every blob is re-hashed, one at a time, and a blob whose bytes no longer
 * match its digest is quarantined (blob-store.ts), so a publish replaces it before a deploy trips
 * on it. Every PILOT_SCRUB_INTERVAL ("24h" by default, "0" turns it off). A pass never overlaps
 * the next; a blob deleted meanwhile (GC) is skipped.
 */
import type { Logger } from 'pino';
import { parseEnvDuration } from '../core/duration.js';
import type { BlobStore } from './blob-port.js';

export interface ScrubResult {
  readonly checked: number;
  readonly quarantined: readonly string[];
}

/** One pass over every stored blob. */
export async function scrubBlobs(blobs: BlobStore, log: Logger): Promise<ScrubResult> {
  const quarantined: string[] = [];
  let checked = 0;
  for (const b of await blobs.list()) {
    const check = await blobs.verifyOrQuarantine(b.digest);
    if (check.state === 'missing') continue;
    checked++;
    if (check.state === 'quarantined') {
      quarantined.push(b.digest);
      log.warn(
        { digest: b.digest, actual: check.actual, size: check.size, quarantined: check.to },
        'scrub: stored artifact does not hash to its digest: quarantined (the next upload replaces it)',
      );
    }
  }
  return { checked, quarantined };
}

/** The scrub interval from PILOT_SCRUB_INTERVAL ("24h", "10m", "0" = off); default 24 h. */
export function scrubIntervalFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  return parseEnvDuration(env.PILOT_SCRUB_INTERVAL) ?? 24 * 3_600_000;
}

/** Scrub every `intervalMs` (0 = never); returns the stop function. */
export function startBlobScrub(blobs: BlobStore, log: Logger, intervalMs: number): () => void {
  if (intervalMs <= 0) return () => undefined;
  let running = false;
  const t = setInterval(() => {
    if (running) return;
    running = true;
    scrubBlobs(blobs, log)
      .then((r) => log.info({ checked: r.checked, quarantined: r.quarantined.length }, 'scrub: artifacts re-hashed'))
      .catch((err: unknown) => log.error({ err }, 'scrub failed'))
      .finally(() => (running = false));
  }, intervalMs);
  t.unref();
  return () => clearInterval(t);
}
