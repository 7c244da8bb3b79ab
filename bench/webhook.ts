/**
 * Webhook intake benchmark: acknowledgement latency (p50/p99) and deliveries/s of
 * `POST /hooks/github/:app` (signature check on the raw body + durable enqueue in SQLite, each
 * delivery a new SHA) side by side with adnanh/webhook (Debian package `webhook`) configured with a
 * `payload-hmac-sha256` rule on X-Hub-Signature-256 and a command that appends the SHA to a file.
 * Same signed GitHub example payloads, same undici client, same concurrency. Each server runs in
 * its own process; the load generator runs here. The ratio printed is Pilot over adnanh/webhook.
 *
 * adnanh/webhook is measured twice: as usually configured (it answers as soon as the rule matches
 * and runs the command afterwards, so its 200 promises nothing), and with
 * `include-command-output-in-response` (it answers after the append, which is still not fsynced).
 *
 *   npm run build && node dist/bench/webhook.js [deliveries=3000] [concurrency=8] [maxSeconds=20]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { examplePush, githubHeaders, nextSha } from '../src/cd/github-examples.fixture.js';
import { startWebhookServer } from '../src/cd/webhook-server.fixture.js';
import { waitListening } from './net-util.js';
import { allocatePort } from '../src/os/ports.js';

const SECRET = 'bench-webhook-secret';
const WARMUP = 200;

interface Delivery {
  readonly body: string;
  readonly headers: Record<string, string>;
}
interface Result {
  readonly n: number;
  readonly rate: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
}

/** Child role: the Pilot route over a fresh SQLite store; prints {"port"}, and {"runs"} when told to stop. */
async function pilotRole(): Promise<void> {
  const srv = await startWebhookServer();
  await srv.createApp('bench', SECRET, { branch: 'main' });
  process.stdout.write(`${JSON.stringify({ port: Number(new URL(srv.url).port) })}\n`);
  // Stop on "stop" or when the parent goes away (stdin closes): never outlive the bench.
  for await (const line of createInterface({ input: process.stdin })) if (line.trim() === 'stop') break;
  const runs = (await srv.store.listRuns({ app: 'bench', limit: 1_000_000 })).length;
  process.stdout.write(`${JSON.stringify({ runs })}\n`);
  await srv.close();
  process.stdin.destroy();
}

async function startPilot(): Promise<{ child: ChildProcess; port: number; stop: () => Promise<number> }> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--role', 'pilot'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.done === true) throw new Error('the Pilot child exited before listening');
  const { port } = JSON.parse(first.value) as { port: number };
  return {
    child,
    port,
    async stop() {
      child.stdin!.end('stop\n');
      const next = await lines.next();
      await new Promise((r) => child.once('exit', r));
      return next.done === true ? NaN : (JSON.parse(next.value) as { runs: number }).runs;
    },
  };
}

/** adnanh/webhook on 127.0.0.1 with an HMAC-SHA256 rule and an append command; undefined if not installed. */
async function startAdnanh(
  dir: string,
  waitForCommand: boolean,
): Promise<{ child: ChildProcess; port: number; outFile: string } | undefined> {
  if (spawnSync('webhook', ['-version']).error !== undefined) return undefined;
  const outFile = join(dir, `appended-${waitForCommand ? 'sync' : 'async'}.txt`);
  const script = join(dir, 'append.sh');
  writeFileSync(script, '#!/bin/sh\nprintf "%s\\n" "$1" >> "$2"\n');
  chmodSync(script, 0o755);
  const hooks = join(dir, `hooks-${waitForCommand ? 'sync' : 'async'}.json`);
  writeFileSync(
    hooks,
    JSON.stringify([
      {
        id: 'bench',
        'execute-command': script,
        'command-working-directory': dir,
        'pass-arguments-to-command': [
          { source: 'payload', name: 'after' },
          { source: 'string', name: outFile },
        ],
        'include-command-output-in-response': waitForCommand,
        'trigger-rule': {
          match: { type: 'payload-hmac-sha256', secret: SECRET, parameter: { source: 'header', name: 'X-Hub-Signature-256' } },
        },
      },
    ]),
  );
  const port = await allocatePort('127.0.0.1');
  const child = spawn('webhook', ['-hooks', hooks, '-ip', '127.0.0.1', '-port', String(port)], { stdio: 'ignore' });
  await waitListening(port);
  return { child, port, outFile };
}

function makeDeliveries(n: number): Delivery[] {
  return Array.from({ length: n }, () => {
    const body = JSON.stringify(examplePush({ ref: 'refs/heads/main', after: nextSha() }));
    return { body, headers: githubHeaders(SECRET, body, 'push', randomUUID()) };
  });
}

const percentile = (sorted: Float64Array, p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;

/** `concurrency` loops over one keep-alive pool send the deliveries; stop at the end or after maxSeconds. */
async function load(port: number, path: string, deliveries: readonly Delivery[], concurrency: number, maxSeconds: number): Promise<Result> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: concurrency, pipelining: 1 });
  const send = async (d: Delivery): Promise<boolean> => {
    try {
      const res = await pool.request({ path, method: 'POST', headers: d.headers, body: d.body });
      await res.body.dump();
      return res.statusCode >= 200 && res.statusCode < 300;
    } catch {
      return false;
    }
  };
  for (const d of deliveries.slice(0, WARMUP)) await send(d);
  const todo = deliveries.slice(WARMUP);
  const samples = new Float64Array(todo.length);
  let next = 0;
  let n = 0;
  let errors = 0;
  const t0 = performance.now();
  const deadline = t0 + maxSeconds * 1_000;
  const worker = async (): Promise<void> => {
    while (next < todo.length && performance.now() < deadline) {
      const d = todo[next++]!;
      const start = performance.now();
      if (!(await send(d))) errors++;
      samples[n++] = performance.now() - start;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - t0) / 1_000;
  await pool.close();
  const sorted = samples.subarray(0, n).sort();
  return { n, rate: n / elapsed, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), errors };
}

function row(name: string, r: Result): string {
  return `  ${name.padEnd(34)} ${r.rate.toFixed(0).padStart(6)} deliveries/s   p50 ${r.p50.toFixed(2).padStart(6)} ms   p99 ${r.p99.toFixed(2).padStart(6)} ms   (${r.n} sent, ${r.errors} errors)`;
}

const lineCount = (file: string): number => {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.length > 0).length;
  } catch {
    return 0;
  }
};

async function main(): Promise<void> {
  const total = Number(process.argv[2] ?? 3000);
  const concurrency = Number(process.argv[3] ?? 8);
  const maxSeconds = Number(process.argv[4] ?? 20);
  const dir = mkdtempSync(join(tmpdir(), 'pilot-bench-webhook-'));
  const children: ChildProcess[] = [];
  try {
    const sample = makeDeliveries(1)[0]!;
    console.log(
      `webhook bench: signed GitHub example push (${sample.body.length} bytes), ${total - WARMUP} deliveries after ${WARMUP} warm-up, ` +
        `concurrency ${concurrency}, at most ${maxSeconds} s per target, ${cpus().length} CPUs, Node ${process.version}`,
    );

    const pilot = await startPilot();
    children.push(pilot.child);
    const pilotResult = await load(pilot.port, '/hooks/github/bench', makeDeliveries(total), concurrency, maxSeconds);
    const runs = await pilot.stop();
    console.log(row('Pilot (verify + SQLite FULL sync)', pilotResult));
    console.log(`    runs in the store: ${runs} (every 2xx is a committed run)`);

    const results: [string, Result, number][] = [];
    for (const waitForCommand of [false, true]) {
      const adnanh = await startAdnanh(dir, waitForCommand);
      if (adnanh === undefined) break;
      children.push(adnanh.child);
      const r = await load(adnanh.port, '/hooks/bench', makeDeliveries(total), concurrency, maxSeconds);
      await new Promise((res) => setTimeout(res, 500)); // let the last asynchronous commands finish
      adnanh.child.kill('SIGTERM');
      await new Promise((res) => adnanh.child.once('exit', res));
      results.push([
        waitForCommand ? 'adnanh/webhook (waits for command)' : 'adnanh/webhook (acks, then runs)',
        r,
        lineCount(adnanh.outFile),
      ]);
    }
    if (results.length === 0) {
      console.log('  adnanh/webhook: NOT MEASURED, the `webhook` binary is missing (apt-get install -y webhook)');
      return;
    }
    for (const [name, r, lines] of results) {
      console.log(row(name, r));
      console.log(`    lines appended: ${lines}`);
    }
    for (const [name, r] of results) {
      console.log(
        `  ratio Pilot / ${name}: throughput ${(pilotResult.rate / r.rate).toFixed(2)}x, p99 ${(pilotResult.p99 / r.p99).toFixed(2)}x`,
      );
    }
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--role') await pilotRole();
else await main();
