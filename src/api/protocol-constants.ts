/** The agent protocol's constants, without its TypeBox schemas (api/protocol.ts): what the agent needs at start. */

/** The protocol version agents and the control plane speak. */
export const AGENT_PROTOCOL = 1;

/** A node label's key, as the protocol allows it. */
export const LABEL_KEY = '^[a-z][a-z0-9._/-]{0,62}$';
