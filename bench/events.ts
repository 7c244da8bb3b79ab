/**
 * Event feed latency: from a state change written by the store (a run's steps, `updateRun`, which
 * appends its event in the same transaction) to the SSE client that parsed it, over a real socket
 * (loopback), with a real SQLite file. Paced (one change every few ms: latency, not queueing) and
 * in a burst (all at once: the last one's wait, and events/s). Server and client share this process
 * (one event loop), so the figures include the client's parsing.
 *
 *   npm run build && node dist/bench/events.js [events=500] [paceMs=3]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { parseSse } from '../src/api/sse.js';
import { DEFAULT_EVENT_STREAM, serveEventStream } from '../src/control/event-stream.js';
import { SqliteStore } from '../src/store/sqlite-store.js';
import type { StepRecord } from '../src/core/types.js';

const N = Number(process.argv[2] ?? 500);
const PACE = Number(process.argv[3] ?? 3);

const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

const dir = mkdtempSync(join(tmpdir(), 'pilot-bench-events-'));
const store = new SqliteStore(join(dir, 'pilot.db'));
const stop = new AbortController();
const server = createServer((req, res) => {
  void serveEventStream(store, res, {
    after: undefined,
    app: undefined,
    settings: DEFAULT_EVENT_STREAM,
    log: pino({ level: 'silent' }),
    stop: stop.signal,
  });
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;

const sent = new Map<number, number>();
const lat: number[] = [];
let received = 0;
let onCount: (() => void) | undefined;
const res = await new Promise<import('node:http').IncomingMessage>((resolve) =>
  request(url, { headers: { accept: 'text/event-stream' } }, resolve).end(),
);
void (async () => {
  for await (const m of parseSse(res)) {
    const id = Number(m.id);
    const t = sent.get(id);
    if (t !== undefined) lat.push(performance.now() - t);
    received++;
    onCount?.();
  }
})().catch(() => undefined); // the stream is cut at the end
await new Promise((r) => setTimeout(r, 100));

const run = await store.createRun({ app: 'bench', trigger: 'cli', commit: undefined, dirty: false, steps: [], now: Date.now() });
await new Promise((r) => setTimeout(r, 50));
const waitFor = (n: number): Promise<void> =>
  new Promise((r) => {
    onCount = () => {
      if (received >= n) r();
    };
    onCount();
  });
const steps = (i: number): StepRecord[] => [
  { name: 'build', status: i % 2 === 0 ? 'running' : 'succeeded' },
  { name: 'deploy', status: 'pending', startedAt: i },
];

async function change(i: number): Promise<void> {
  const before = (await store.eventBounds()).lastId;
  const t = performance.now();
  await store.updateRun(run.id, { steps: steps(i) });
  sent.set(before + 1, t); // the event this write appended
}

// Paced.
const base = received;
for (let i = 0; i < N; i++) {
  await change(i);
  await new Promise((r) => setTimeout(r, PACE));
}
await waitFor(base + N);
const paced = lat.splice(0);
// Burst.
const b0 = received;
const t0 = performance.now();
for (let i = 0; i < N; i++) await change(N + i);
await waitFor(b0 + N);
const burstMs = performance.now() - t0;
const burst = lat.splice(0);

console.log(`event feed latency, store write → SSE client (${N} events, SQLite WAL, loopback)`);
console.log(
  `  paced (one every ${PACE} ms): p50 ${pct(paced, 50).toFixed(2)} ms  p99 ${pct(paced, 99).toFixed(2)} ms  max ${Math.max(...paced).toFixed(2)} ms`,
);
// In a burst the writer holds the shared event loop: the client reads only between writes.
console.log(
  `  burst (${N} writes back to back): p50 ${pct(burst, 50).toFixed(2)} ms  p99 ${pct(burst, 99).toFixed(2)} ms; ${Math.round(N / (burstMs / 1000))} events/s end to end`,
);
stop.abort();
res.destroy();
server.closeAllConnections();
server.close();
store.close();
rmSync(dir, { recursive: true, force: true });
