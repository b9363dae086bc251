/**
 * The persistence seam. The broker keeps the live state of connected clients in memory and
 * mirrors every change of a *persistent* session (and every retained message) through this
 * interface, so that a restarted broker, or another node of a cluster sharing the same store,
 * can resume it. Clean sessions never touch it.
 *
 * Rules for implementations:
 * - Promise / AsyncIterable only; no reference to the broker.
 * - Every method is safe to call concurrently from many nodes (Redis backend: one key schema
 *   documented in adapters/redis/keys.ts, no KEYS/SCAN on a hot path).
 * - Calls issued in the same tick should be pipelined (one round trip) where the store allows.
 * - A rejected promise means "not stored": the broker then does not acknowledge the QoS 1/2
 *   message that depended on it.
 */

import type { MessageHolder, OutgoingEntry, QoS, StoredMessage, StoredSubscription, StoredWill } from "../message.ts";
export type * from "../message.ts";

export interface SessionRecord {
  clientId: string;
  /** 3 (MQIsdp), 4 or 5. */
  protocolVersion: number;
  /** Seconds; 0xFFFFFFFF never expires. 3.1.1 persistent session = 0xFFFFFFFF. */
  expiryInterval: number;
  /** Epoch ms when the client disconnected; undefined while connected. */
  disconnectedAt?: number;
  /** Node id that holds the live connection (cluster ownership); undefined when offline. */
  node?: string;
  /** The will of the connection, kept so that a survivor/restart can publish it once. */
  will?: StoredWill;
  /** Epoch ms at which a delayed will is due (set on abnormal disconnect). */
  willAt?: number;
  /** The user name the client authenticated as (its ACL applies to the stored session). */
  username?: string;
}

/** Bounds on the retained store (0 = none), checked atomically with the write. */
export interface RetainedQuota {
  maxMessages: number;
  /** Payload bytes of all retained messages together. */
  maxBytes: number;
}

export interface Persistence {
  /** Human-readable name for logs ("memory", "redis redis://..."). */
  readonly name: string;

  // --- sessions -------------------------------------------------------------------------
  getSession(clientId: string): Promise<SessionRecord | undefined>;
  /** Create or replace the session record (subscriptions and queues are untouched). */
  putSession(record: SessionRecord): Promise<void>;
  /** Remove the session and every key that belongs to it (subscriptions, queues, qos2 ids). */
  deleteSession(clientId: string): Promise<void>;
  /** Every stored session (startup recovery: expiry timers, wills of crashed connections). */
  sessions(): AsyncIterable<SessionRecord>;

  // --- subscriptions ----------------------------------------------------------------------
  /** Add or replace (by filter) subscriptions of a session. */
  putSubscriptions(clientId: string, subs: StoredSubscription[]): Promise<void>;
  removeSubscriptions(clientId: string, filters: string[]): Promise<void>;
  subscriptions(clientId: string): Promise<StoredSubscription[]>;
  /** Every subscription of every stored session (startup: rebuild the routing table). */
  allSubscriptions(): AsyncIterable<{ clientId: string; sub: StoredSubscription }>;

  // --- outgoing QoS 1/2 (offline queue + inflight), ordered per session -----------------
  /** Append entries at the tail, in the given order. Returns nothing; order is FIFO. */
  enqueue(clientId: string, entries: OutgoingEntry[]): Promise<void>;
  /** Update an entry (matched by msg.id): packet id assigned, state changed. */
  updateOutgoing(clientId: string, entry: OutgoingEntry): Promise<void>;
  /** Remove an entry (matched by msg.id): acknowledged, expired or dropped. */
  removeOutgoing(clientId: string, msgId: string): Promise<void>;
  /** All entries of a session in FIFO order (inflight ones first as they were sent first). */
  outgoing(clientId: string): Promise<OutgoingEntry[]>;
  /** Number of entries (bounded queue check). */
  outgoingCount(clientId: string): Promise<number>;

  // --- incoming QoS 2 (received PUBLISH, PUBREL not yet seen) ----------------------------
  addIncomingQos2(clientId: string, packetId: number): Promise<void>;
  removeIncomingQos2(clientId: string, packetId: number): Promise<void>;
  incomingQos2(clientId: string): Promise<number[]>;

  // --- retained messages ------------------------------------------------------------------
  /**
   * Store (replace) the retained message of msg.topic. With a quota, a message for a new topic
   * when maxMessages are stored, or one that would take the payload bytes over maxBytes (a
   * replacement counts only what it adds), is refused with RetainedQuotaError and nothing
   * changes; a replacement that does not grow the store always goes through.
   */
  putRetained(msg: StoredMessage, quota?: RetainedQuota): Promise<void>;
  deleteRetained(topic: string): Promise<void>;
  /** Retained messages whose topic matches the filter (`+`, `#`, `$`-rule), via an index. */
  matchRetained(filter: string): Promise<StoredMessage[]>;
  retainedCount(): Promise<number>;
  /** Payload bytes of every retained message together. */
  retainedBytes(): Promise<number>;

  /**
   * In-process stores only (memory): report every message kept in process memory beyond what
   * sessions hold (retained messages), so that --max-memory-bytes covers them. A store that
   * keeps messages elsewhere (Redis) does not implement it.
   */
  trackMemory?(account: MessageHolder): void;

  // --- cluster ownership (optional: a backend shared by several nodes) ----------------------
  /**
   * The ownership token this node holds for a client id (undefined: none). Every later write of
   * that session's state presents it, and is refused with a FencedError when another node has
   * taken the session over since (its token replaced this one). With `ifCurrent`, the change
   * is made only while the known token is still that one.
   */
  fence?(clientId: string, token: string | undefined, ifCurrent?: string): void;
  /** Resolves once every write issued before it is applied (ordering point for a hand-over). */
  barrier?(): Promise<void>;

  // --- health (optional: a store reached over a network) ----------------------------------
  /** Whether the connection to the store is up now (readiness, src/ops/health.ts). */
  readonly connected?: boolean;
  /** One round trip, queued behind every command issued before it (latency probe). */
  ping?(): Promise<void>;

  /** Release connections/timers. */
  close(): Promise<void>;
}

/** A write refused because another node owns the session now (see Persistence.fence). */
export class FencedError extends Error {
  constructor(readonly clientId: string) {
    super(`session ${clientId} is owned by another node now`);
    this.name = "FencedError";
  }
}

/** A retained message refused by the store's quota (Persistence.putRetained). */
export class RetainedQuotaError extends Error {
  constructor(readonly limit: "messages" | "bytes", readonly max: number) {
    super(limit === "messages"
      ? `the retained store holds ${max} messages (--max-retained-messages)`
      : `the retained store would hold more than ${max} payload bytes (--max-retained-bytes)`);
    this.name = "RetainedQuotaError";
  }
}
