/**
 * Server-Sent Events read from a fetch answer's body (the dashboard reads streams with fetch, not
 * EventSource, to send its headers and decide how to resume): each frame's event name ("message"
 * when it has none) and data, in order, until the body ends. Comment lines (heartbeats) are skipped.
 */
export async function readSse(res: Response, onFrame: (kind: string, data: string) => void | Promise<void>): Promise<void> {
  if (!res.body) return;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let end: number;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let kind = 'message';
      let data = '';
      for (const line of frame.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') kind = value;
        else if (field === 'data') data += (data ? '\n' : '') + value;
      }
      await onFrame(kind, data);
    }
  }
}
