/** Durations in config: "500ms", "2s", "1m", "1h", or a number of seconds. Pure. */
const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

export const DURATION_PATTERN = '^\\d+(\\.\\d+)?(ms|s|m|h)$';

/** Milliseconds for a duration, or undefined when it is not one. */
export function parseDuration(v: string | number): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? Math.round(v * 1000) : undefined;
  const m = DURATION_RE.exec(v.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS]);
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)}s`;
  const m = Math.floor(ms / 60_000);
  return `${m}m${Math.round((ms % 60_000) / 1000)}s`;
}

/** A duration as written in an environment variable ("1h", "30m", "0", or seconds); undefined when unset or not one. */
export function parseEnvDuration(raw: string | undefined): number | undefined {
  const v = raw?.trim();
  if (!v) return undefined;
  return parseDuration(/^\d+(\.\d+)?$/.test(v) ? Number(v) : v);
}
