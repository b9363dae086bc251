/**
 * The cluster seam: node-to-node traffic. The single-node LocalBus does nothing; a Redis bus
 * (adapters/redis) will carry routed publishes to the nodes whose route table says they hold a
 * matching subscription, route deltas, takeover requests and heartbeats. The broker calls
 * `forward` after local routing; remote messages come back through `onMessage` into the router.
 */
import type { StoredMessage } from "../message.ts";

export interface ClusterBus {
  readonly nodeId: string;
  /** A subscription filter appeared on / disappeared from this node. */
  routeAdded(filter: string): void;
  routeRemoved(filter: string): void;
  /** Send a locally published message to the other nodes that want it. */
  forward(msg: StoredMessage, publisher?: string): Promise<void> | void;
  /** Messages from other nodes, to be routed locally only. */
  onMessage(handler: (msg: StoredMessage, publisher?: string) => void): void;
  close(): Promise<void>;
}

export class LocalBus implements ClusterBus {
  constructor(readonly nodeId: string) {}
  routeAdded(): void {}
  routeRemoved(): void {}
  forward(): void {}
  onMessage(): void {}
  async close(): Promise<void> {}
}
