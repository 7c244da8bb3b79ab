/**
 * The young generation of the long-running `pilot up` and `pilot agent`: kept at V8's initial 1 MB
 * semi-space instead of growing to 16 MB, which keeps memory lower for a process that allocates
 * little.
 *
 * V8 reads --max-semi-space-size only when the process starts: setting it from inside the process
 * (as this code did before) did nothing; the new space still grew to 8 MB under allocation churn. V8
 * reads --semi-space-growth-factor at each growth of the new space, and 1 means "never grow" (V8
 * clamps the factor to 2 when given on the command line, not when set later). A young generation
 * sized on node's own command line (`npm start` gives `pilot up` --max-semi-space-size=2) wins.
 * young-generation.test.ts checks, in a child process, that the new space really stays small.
 */
import { setFlagsFromString } from 'node:v8';

/** Hold the new space at its initial size unless node's command line sizes it. */
export function smallYoungGeneration(execArgv: readonly string[] = process.execArgv): void {
  if (execArgv.some((a) => /^--(max-semi-space-size|min-semi-space-size|semi-space-growth-factor)\b/.test(a))) return;
  setFlagsFromString('--semi-space-growth-factor=1');
}
