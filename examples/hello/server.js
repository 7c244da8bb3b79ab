// A dependency-free web app. Pilot passes PORT, PILOT_REVISION and PILOT_COMMIT in its environment.
import { createServer } from 'node:http';

const port = Number(process.env.PORT ?? 3000);
const revision = process.env.PILOT_REVISION ?? 'dev';
const commit = process.env.PILOT_COMMIT ?? 'unknown';
const greeting = process.env.GREETING ?? 'hello from Pilot';

const server = createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: true }));
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ message: greeting, revision, commit, pid: process.pid }) + '\n');
});

server.listen(port, () => console.log(`hello: revision ${revision} (${commit.slice(0, 12)}) listening on ${port}`));

// Finish in-flight requests, then exit: Pilot sends SIGTERM after the router has drained us.
process.on('SIGTERM', () => {
  console.log('hello: SIGTERM, closing');
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 5000).unref();
});
