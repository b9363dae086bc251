/**
 * The cluster seam: what one node needs from the medium it shares with the others (Redis in
 * adapters/redis/bus.ts; LocalBus for a single embedded node). The protocol on top of it
 * (which session lives where, takeover, adopting a dead node's sessions, shared-group picks)
 * is in cluster.ts and sessions.ts; a bus only offers these primitives:
 *
 * - membership: every node holds a lease it renews; a node whose lease lapsed is dead, and
 *   exactly one survivor wins the right to reap it (`reap` event);
 * - the route table: which filters each node holds. A change is applied by every live node
 *   before `routes()` resolves, so a SUBACK sent after it can not race a publish elsewhere;
 * - an inbox per node: ordered, durable messages (forwarded publishes, requests and replies);
 *   what one node sends to another arrives in the order it was sent;
 * - ownership of client ids: a lock per id (one CONNECT at a time cluster-wide) and an owner
 *   record {node, token} changed only by compare-and-set; the token fences every write of
 *   that session's state (the persistence checks it).
 */
import type { StoredMessage } from "../message.ts";


/** One published message on its way to one node. */
export interface Forward {
  msg: StoredMessage;
  /** Client id of the publisher (no-local). */
  publisher?: string;
  /** Deliver to the node's ordinary subscriptions (false: only to `shares`). */
  plain: boolean;
  /** Shared groups (`$share/{group}/{filter}`) this node was chosen to serve for this message. */
  shares?: string[];
}

/** Requests one node makes of another through its inbox (answered through the sender's). */
export type Request =
  /** Close the client's connection (MQTT 5: DISCONNECT 0x8E); keep its session and its queue. */
  | { op: "kick"; clientId: string; by: string }
  /** Give the session up: stop delivering and writing, forget it (the asker owns it next). */
  | { op: "release"; clientId: string; by: string };

export type Expect = string | null | "any" | { node: string };

export interface Owner {
  node: string;
  token: string;
}

/** What a bus tells the node it serves. */
export interface BusHandler {
  /**
   * Messages forwarded to this node, in order. `drainOf` names a dead node whose inbox is being
   * emptied by this node (deliver only to the sessions adopted from it, except those `skip`
   * names: the dead node had stored these messages for them already). The returned promise
   * settles when what they caused is stored; only then may the inbox forget them.
   */
  forwards(list: Forward[], from: string, drainOf?: string, skip?: (clientId: string) => boolean): Promise<unknown> | void;
  /** Another node's route change, or its whole table (`reset`: replace what was known of it). */
  routes(node: string, added: string[], removed: string[], reset: boolean): void;
  /** A node left the route table (reaped or gone): forget its routes. */
  nodeGone(node: string): void;
  /** A request from another node; resolving is the answer "done". */
  request(from: string, req: Request): Promise<void>;
  /**
   * A dead node whose sessions this node must adopt (it won the reaping). Resolves when the
   * sessions are held here and their routes are known everywhere.
   */
  reap(node: string): Promise<string[]>;
  /** The dead node's inbox is drained and its routes gone: the adopted sessions may go on. */
  buried(node: string): void;
  /** The bus lost its store and came back (`fresh`: the store lost its data meanwhile). */
  reconnected(fresh: boolean): void;
  /**
   * Bytes the bus holds for messages on their way to other nodes grew (negative: shrank); the
   * broker counts them against --max-memory-bytes, so a store that stops answering turns into
   * shed QoS 0 and refused QoS 1/2 publishes instead of a heap that grows unseen.
   */
  held(delta: number): void;
}

export class NotOwnerError extends Error {
  constructor(readonly clientId: string) {
    super(`client ${clientId} is owned by another node`);
    this.name = "NotOwnerError";
  }
}

/** Traffic counters of a bus (metrics, and tests of interest routing). */
export interface BusStats {
  /** Messages this node forwarded to others, and the batches (inbox appends) they went in. */
  messagesSent: number;
  batchesSent: number;
  /** Messages other nodes forwarded to this one. */
  messagesReceived: number;
  batchesReceived: number;
}

export interface ClusterBus {
  readonly nodeId: string;
  readonly stats: BusStats;
  /** False for a node alone (LocalBus): every cluster step is skipped. */
  readonly clustered: boolean;
  /** Join: take the lease, load the route table, start reading the inbox. */
  start(handler: BusHandler): Promise<void>;
  /** Live nodes other than this one (as of the last lease check). */
  peers(): string[];
  isLive(node: string): boolean;
  /**
   * Check a node's lease now; if it lapsed, start reaping it at once (a client of it is
   * reconnecting elsewhere). Resolves with whether the node is dead.
   */
  suspect(node: string): Promise<boolean>;

  /** Change this node's routes; resolves once every live node applied the change (bounded). */
  routes(added: string[], removed: string[]): Promise<void>;
  /** Replace this node's whole route entry (after an outage). */
  resetRoutes(filters: string[]): Promise<void>;

  /**
   * Send a message to a node's inbox (for its ordinary subscriptions when `plain`, and for the
   * shared groups named); batched per tick; resolves when it is stored. A failure is logged by
   * the bus; a caller that does not wait (QoS 0) need not handle the promise.
   */
  send(node: string, msg: StoredMessage, publisher: string | undefined, plain: boolean, shares?: string[]): Promise<void>;
  /** Ask a node to do something; resolves when it answered, rejects after timeoutMs. */
  request(node: string, req: Request, timeoutMs: number): Promise<void>;

  /** Lock a client id against concurrent CONNECTs cluster-wide; undefined after waitMs. */
  lock(clientId: string, waitMs: number): Promise<string | undefined>;
  unlock(clientId: string, lock: string): Promise<void>;
  owner(clientId: string): Promise<Owner | undefined>;
  /**
   * Become the owner if the current one is `expect`: its token; {node}: whatever token that
   * node holds; null: no owner; "any": whoever has it. Returns the new token, or undefined when
   * the owner was someone else.
   */
  claim(clientId: string, expect: Expect): Promise<string | undefined>;
  /** Give ownership up (only if the token is still current). */
  disown(clientId: string, token: string): Promise<void>;
  /** Client ids a node owns (a superset: some may have moved on). */
  owned(node: string): Promise<string[]>;
  /**
   * After reaping: drop a dead node's routes everywhere, drain its inbox into the handler,
   * tell it `buried`, and delete the node's keys once the drained messages are stored.
   */
  bury(node: string): Promise<void>;

  /** Leave: the lease ends now so that survivors adopt this node's sessions at once. */
  leave(): Promise<void>;
  close(): Promise<void>;
}

/** A node alone: nothing to share, nothing to wait for. */
export class LocalBus implements ClusterBus {
  readonly clustered = false;
  readonly stats: BusStats = { messagesSent: 0, batchesSent: 0, messagesReceived: 0, batchesReceived: 0 };
  constructor(readonly nodeId: string) {}
  async start(): Promise<void> {}
  peers(): string[] {
    return [];
  }
  isLive(node: string): boolean {
    return node === this.nodeId;
  }
  suspect(): Promise<boolean> {
    return Promise.resolve(false);
  }
  async routes(): Promise<void> {}
  async resetRoutes(): Promise<void> {}
  send(): Promise<void> {
    return Promise.reject(new Error("no other node"));
  }
  request(): Promise<void> {
    return Promise.reject(new Error("no other node"));
  }
  lock(): Promise<string | undefined> {
    return Promise.resolve("local");
  }
  async unlock(): Promise<void> {}
  async owner(): Promise<Owner | undefined> {
    return undefined;
  }
  claim(): Promise<string | undefined> {
    return Promise.resolve("local");
  }
  async disown(): Promise<void> {}
  async owned(): Promise<string[]> {
    return [];
  }
  async bury(): Promise<void> {}
  async leave(): Promise<void> {}
  async close(): Promise<void> {}
}
