/** Small socket helpers shared by the benchmarks (free ports: allocatePort in src/os/ports.ts). */
import net from 'node:net';

/** Resolve once something accepts connections on 127.0.0.1:port (5 s at most). */
export async function waitListening(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => (s.destroy(), r(true)));
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}
