/**
 * The agent protocol (version 1): what agents and the control plane say to each other over HTTP.
 * Documented in src/agent/README.md. Schemas are JSON Schema (TypeBox) so the API validates them.
 */
import { Type, type Static } from '@sinclair/typebox';

// The constants live apart so the agent and the CLI read them without loading TypeBox.
import { AGENT_PROTOCOL, LABEL_KEY } from './protocol-constants.js';
export { AGENT_PROTOCOL, LABEL_KEY };

const Name = Type.String({ pattern: '^[a-z][a-z0-9-]{0,62}$' });

/** Optional runtimes (process is always there): whether each answers on this node. */
export const NodeRuntimesSchema = Type.Object(
  {
    /** The agent can give each fixed-port instance its own network namespace (root on Linux, `ip` and `nsenter`). */
    netns: Type.Optional(
      Type.Object({ available: Type.Boolean(), error: Type.Optional(Type.String({ maxLength: 2000 })) }, { additionalProperties: false }),
    ),
    docker: Type.Optional(
      Type.Object(
        {
          available: Type.Boolean(),
          version: Type.Optional(Type.String({ maxLength: 100 })),
          error: Type.Optional(Type.String({ maxLength: 2000 })),
        },
        { additionalProperties: false },
      ),
    ),
    /** How process instances are contained: own uid, cgroup limits; `reason` says what is missing and how to get it. */
    process: Type.Optional(
      Type.Object(
        {
          isolation: Type.Optional(
            Type.Object(
              {
                user: Type.Boolean(),
                cgroup: Type.Boolean(),
                cgroupVersion: Type.Optional(Type.String({ maxLength: 10 })),
                reason: Type.Optional(Type.String({ maxLength: 2000 })),
              },
              { additionalProperties: false },
            ),
          ),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const RegisterRequest = Type.Object(
  {
    protocol: Type.Literal(AGENT_PROTOCOL),
    name: Name,
    address: Type.String({ minLength: 1, maxLength: 255 }),
    apiUrl: Type.String({ pattern: '^https?://', maxLength: 2048 }),
    agentToken: Type.String({ minLength: 16, maxLength: 256 }),
    /** The credential from an earlier registration: proves this is the same node coming back. */
    credential: Type.Optional(Type.String({ maxLength: 256 })),
    /** Capacity for the scheduler. */
    cpus: Type.Optional(Type.Number({ minimum: 0, maximum: 100_000 })),
    memoryMb: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000_000 })),
    labels: Type.Optional(
      Type.Record(Type.String({ pattern: LABEL_KEY }), Type.String({ maxLength: 63 }), { additionalProperties: false, maxProperties: 64 }),
    ),
    runtimes: Type.Optional(NodeRuntimesSchema),
  },
  { additionalProperties: false },
);
export type RegisterRequest = Static<typeof RegisterRequest>;

export interface RegisterResponse {
  readonly protocol: number;
  readonly nodeId: string;
  readonly credential: string;
}

const InstanceStatusSchema = Type.Object({
  id: Type.String({ maxLength: 200 }),
  app: Type.Optional(Type.String({ maxLength: 200 })),
  revision: Type.Optional(Type.Integer({ minimum: 0 })),
  state: Type.Union(['pending', 'starting', 'ready', 'unhealthy', 'backoff', 'failed', 'stopping', 'stopped'].map((s) => Type.Literal(s))),
  port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
  pid: Type.Optional(Type.Integer({ minimum: 1 })),
  restarts: Type.Integer({ minimum: 0 }),
  lastError: Type.Optional(Type.String({ maxLength: 4000 })),
  startedAt: Type.Optional(Type.Number()),
  containerId: Type.Optional(Type.String({ pattern: '^[a-f0-9]{12,64}$' })),
  logTail: Type.Optional(Type.String({ maxLength: 8000 })),
  address: Type.Optional(Type.String({ maxLength: 64, pattern: '^[0-9.]+$' })),
  /** CPU seconds (user + system) it has used since it started: a running total (agent/cpu-usage.ts). Optional: older agents omit it. */
  cpuSeconds: Type.Optional(Type.Number({ minimum: 0, maximum: 1e12 })),
});

export const SyncRequest = Type.Object(
  {
    protocol: Type.Literal(AGENT_PROTOCOL),
    instances: Type.Array(InstanceStatusSchema, { maxItems: 10_000 }),
    /** Long poll: when there is nothing new for this node, hold the answer up to this long. */
    waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 30_000 })),
    /** Sent when a runtime's availability changed since registration (a Docker engine started or stopped). */
    runtimes: Type.Optional(NodeRuntimesSchema),
  },
  { additionalProperties: false },
);
export type SyncRequest = Static<typeof SyncRequest>;
