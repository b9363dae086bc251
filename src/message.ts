/**
 * The message model shared by every layer: what a message, a subscription, a will and one
 * outgoing delivery are. Protocol, routing, sessions, persistence and the cluster bus all
 * speak these types; none of them owns them.
 */

export type QoS = 0 | 1 | 2;

/** MQTT 5 publish properties that travel with a message untouched. */
export interface MessageProperties {
  /** As sent (a Byte): 1 = UTF-8 payload, 0 = unspecified, other values forwarded unchanged. */
  payloadFormatIndicator?: number;
  contentType?: string;
  responseTopic?: string;
  correlationData?: Uint8Array;
  /**
   * In the order received (an array of pairs keeps names interleaved as they came
   * [MQTT-3.3.2-18]); the record form is how wills stored by earlier versions hold them.
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
