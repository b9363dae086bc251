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

export type QoS = 0 | 1 | 2;

/** MQTT 5 publish properties that travel with a message untouched. */
export interface MessageProperties {
  payloadFormatIndicator?: boolean;
  contentType?: string;
  responseTopic?: string;
  correlationData?: Uint8Array;
  /**
   * In the order received (an array of pairs keeps names interleaved as they came
   * [MQTT-3.3.2-18]); the record form is what mqtt-packet gives for wills.
   */
  userProperties?: Record<string, string | string[]> | Array<[string, string]>;
}

/** An application message as stored: written once, shared by every delivery. */
export interface StoredMessage {
  /** Unique id (node id + sequence); stable across nodes. */
  id: string;
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties?: MessageProperties;
  /** Epoch ms after which the message must not be delivered (MQTT 5 message expiry). */
  expiresAt?: number;
  /** Epoch ms when the broker received it (remaining expiry is computed from it). */
  receivedAt: number;
  /**
   * In memory only, never persisted: the PUBLISH frame as a 3.1/3.1.1 publisher sent it, reused
   * verbatim for 3.1/3.1.1 subscribers at the same QoS (protocol/publish-codec.ts reuseWire).
   */
  wire?: Uint8Array;
  /**
   * In memory only, never persisted: the broker's accounting (session/memory.ts) — how many
   * holders keep this object (queues, inflight windows, the in-memory retained store) and the
   * bytes it counts for, so a message shared by many sessions is counted once.
   */
  holders?: number;
  bytes?: number;
}

/** The broker's message accounting, as an in-process store sees it (Persistence.trackMemory). */
export interface MessageHolder {
  /** One more holder of msg (the store keeps it); returns its size in bytes. */
  hold(msg: StoredMessage): number;
  /** The store let go of msg. */
  release(msg: StoredMessage): number;
}

export interface SubscriptionOptions {
  qos: QoS;
  noLocal?: boolean;
  retainAsPublished?: boolean;
  retainHandling?: 0 | 1 | 2;
  subscriptionId?: number;
}

export interface StoredSubscription extends SubscriptionOptions {
  /** The filter as the client sent it, including a `$share/group/` prefix. */
  filter: string;
}

export interface StoredWill {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties?: MessageProperties & { messageExpiryInterval?: number };
  /** Seconds (MQTT 5 Will Delay Interval); 0 when absent. */
  delay: number;
}

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
}

/** One outgoing QoS 1/2 delivery to a session, in order. */
export interface OutgoingEntry {
  msg: StoredMessage;
  /** QoS after downgrade to the granted QoS. */
  qos: QoS;
  /** Retain flag as it goes on the wire (retain-as-published / retained-on-subscribe). */
  retain: boolean;
  subscriptionIds?: number[];
  /**
   * `$share/{group}/{filter}` when a shared subscription chose this session: lets the broker
   * hand the message to another member if this session cannot take it (routing/shared.ts).
   * In-memory bookkeeping; a backend need not store it.
   */
  share?: string;
  /** Assigned once sent; undefined while only queued. */
  packetId?: number;
  /** "queued": not sent yet; "sent": PUBLISH sent, waiting for PUBACK/PUBREC;
   *  "released": PUBREL sent, waiting for PUBCOMP (QoS 2). */
  state: "queued" | "sent" | "released";
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
  /** Store (replace) the retained message of msg.topic. */
  putRetained(msg: StoredMessage): Promise<void>;
  deleteRetained(topic: string): Promise<void>;
  /** Retained messages whose topic matches the filter (`+`, `#`, `$`-rule), via an index. */
  matchRetained(filter: string): Promise<StoredMessage[]>;
  retainedCount(): Promise<number>;

  /**
   * In-process stores only (memory): report every message kept in process memory beyond what
   * sessions hold (retained messages), so that --max-memory-bytes covers them. A store that
   * keeps messages elsewhere (Redis) does not implement it.
   */
  trackMemory?(account: MessageHolder): void;

  /** Release connections/timers. */
  close(): Promise<void>;
}
