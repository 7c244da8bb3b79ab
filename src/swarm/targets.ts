/**
 * One bridge per deploy target, started and stopped as `pilot targets add|remove` change the list
 * (read from the REST API every few seconds). Runs in the `pilot up` / `pilot server` process.
 * The bridge and its Docker client (dockerode, ~14 MB of an idle `pilot up`) load with the first
 * target: an installation without one never loads them.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ApiClient } from '../api/client.js';
import type { TargetView } from '../api/wire.js';
import type { SwarmBridge } from './bridge.js';

export interface TargetSupervisorOptions {
  readonly server: string;
  readonly adminToken: string;
  /** $PILOT_HOME: each bridge keeps its node credential in swarm/<target>.json. */
  readonly home: string;
  readonly log: Logger;
  readonly everyMs?: number;
  /**
   * Whether this process runs the bridges now: with several control-plane replicas only the leader
   * does (two bridges of one target would both register its node). Default: always.
   */
  readonly active?: () => boolean;
}

export class TargetSupervisor {
  private readonly bridges = new Map<string, SwarmBridge>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastError: string | undefined;

  constructor(private readonly o: TargetSupervisorOptions) {}

  start(): void {
    const tick = (): void => {
      this.refresh()
        .catch((err: unknown) => {
          const msg = (err as Error).message;
          if (msg !== this.lastError) this.o.log.warn({ err: msg }, 'deploy targets not read');
          this.lastError = msg;
        })
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, this.o.everyMs ?? 2000);
        });
    };
    tick();
  }

  /** Bridges for the targets the control plane lists; the others stopped. */
  async refresh(): Promise<void> {
    if (this.o.active !== undefined && !this.o.active()) {
      for (const [name, b] of this.bridges) {
        this.bridges.delete(name);
        await b.stop();
        this.o.log.info({ target: name }, 'not the leader: this replica runs no swarm bridge');
      }
      return;
    }
    const { targets } = await new ApiClient(this.o.server, this.o.adminToken).call<{ targets: TargetView[] }>('GET', '/api/v1/targets');
    this.lastError = undefined;
    const names = new Set(targets.map((t) => t.name));
    for (const [name, b] of this.bridges) {
      if (names.has(name)) continue;
      this.bridges.delete(name);
      await b.stop();
      this.o.log.info({ target: name }, 'swarm target removed: its bridge stopped');
    }
    for (const t of targets) {
      if (this.bridges.has(t.name) || this.stopped) continue;
      const [{ SwarmBridge }, { swarmApi }] = await Promise.all([import('./bridge.js'), import('./swarm-api.js')]);
      if (this.bridges.has(t.name) || this.stopped) continue;
      const b = new SwarmBridge({
        target: t,
        swarm: swarmApi(t.docker),
        server: this.o.server,
        adminToken: this.o.adminToken,
        stateFile: join(this.o.home, 'swarm', `${t.name}.json`),
        log: this.o.log.child({ part: 'swarm', target: t.name }),
      });
      this.bridges.set(t.name, b);
      b.start();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await Promise.all([...this.bridges.values()].map((b) => b.stop()));
    this.bridges.clear();
  }
}
