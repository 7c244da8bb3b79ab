/**
 * HAProxy's Runtime API over its unix socket: one connection per batch of commands (separated by
 * ";", answered in order, the connection closed by HAProxy at the end). Nothing goes through a
 * shell; command words come from the routing table after validation (config.ts).
 */
import net from 'node:net';

/** Send `commands` (joined by "; ") and return HAProxy's whole answer. */
export function runtimeCommand(socket: string, commands: readonly string[], timeoutMs = 10_000): Promise<string> {
  return runtimeText(socket, commands.join('; ') + '\n', timeoutMs);
}

/**
 * One command with a multi-line payload (`set ssl cert F <<`, `add ssl crt-list L <<`): the payload
 * ends at the first empty line, so it must hold none (a PEM without blank lines; tls-files.ts).
 */
export function runtimePayload(socket: string, command: string, payload: string, timeoutMs = 10_000): Promise<string> {
  if (/\n\s*\n/.test(payload) || payload.trim() === '')
    return Promise.reject(new Error('a Runtime API payload must not be empty nor hold an empty line'));
  return runtimeText(socket, `${command} <<\n${payload.trim()}\n\n`, timeoutMs);
}

function runtimeText(socket: string, text: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(socket);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error(`HAProxy's runtime socket ${socket} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    conn.on('connect', () => conn.end(text));
    conn.on('data', (d: Buffer) => chunks.push(d));
    conn.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    conn.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
  });
}

/** Lines of an answer that report a failure (HAProxy answers an accepted `set server` with nothing). */
export function runtimeErrors(answer: string): string[] {
  return answer
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^(IP changed|no need to change|port changed|.*changed from)/i.test(l));
}

/**
 * `show stat` as rows keyed by column name; `only`: just these columns (HAProxy has ~100: at 1,000
 * apps, ~20,000 rows, keeping them all took most of a read's time).
 */
export function parseStat(csv: string, only?: readonly string[]): Record<string, string>[] {
  const lines = csv.split('\n').filter((l) => l.trim() !== '');
  const head = lines.shift();
  if (head === undefined || !head.startsWith('# ')) return [];
  const all = head.slice(2).split(',');
  const cols = all.map((c, i) => [c, i] as const).filter(([c]) => only === undefined || only.includes(c));
  return lines.map((l) => {
    const cells = l.split(',');
    const row: Record<string, string> = {};
    for (const [c, i] of cols) row[c] = cells[i] ?? '';
    return row;
  });
}
