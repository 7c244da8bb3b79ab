/** Restart back-off for crashed instances: 1s, 2s, 4s … capped. Pure. */
export function restartDelayMs(consecutiveCrashes: number, baseMs = 1000, capMs = 30_000): number {
  if (consecutiveCrashes <= 0) return 0;
  return Math.min(capMs, baseMs * 2 ** Math.min(consecutiveCrashes - 1, 20));
}
