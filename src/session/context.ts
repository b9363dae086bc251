/** What sessions, clients and packet handlers need from the broker (no import cycle). */
import type { Clock } from "../clock.ts";
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import type { Persistence } from "../persistence/persistence.ts";
import type { StoredMessage } from "../message.ts";
import type { Router } from "../routing/router.ts";
import type { Client } from "./client.ts";
import type { Session } from "./session.ts";
import type { KeepaliveWheel } from "./keepalive.ts";
import type { Identity, Permissions, Security } from "../auth/auth.ts";
import type { ConnectionLimits } from "../limits/connections.ts";
import type { MemoryAccount } from "./memory.ts";

/**
 * The broker's counters: plain numbers bumped on the hot path (no allocation, no timestamp);
 * src/ops reads them for $SYS and /metrics. Arrays "ByQos" are indexed by QoS (0, 1, 2).
 */
export interface Stats {
  /** Clients connected now (CONNECT accepted, not closed yet). */
  connections: number;
  /** PUBLISH packets received from clients / sent to clients (every QoS). */
  messagesIn: number;
  messagesOut: number;
  droppedQueueFull: number;
  droppedQos0SlowConsumer: number;
  droppedTooLarge: number;
  protocolErrors: number;
  /** Writes to the store that failed (each also logged). */
  persistenceErrors: number;
  /** CONNECTs accepted since start, and the most clients connected at once. */
  connectionsTotal: number;
  connectionsMax: number;
  /** Network connections accepted since start (before any CONNECT). */
  sockets: number;
  /** Bytes read from / written to client connections (every packet). */
  bytesIn: number;
  bytesOut: number;
  /** MQTT packets of every type received / queued for sending. */
  packetsIn: number;
  packetsOut: number;
  /** PUBLISH packets and their payload bytes, by QoS. */
  publishesInByQos: number[];
  publishesOutByQos: number[];
  payloadBytesInByQos: number[];
  payloadBytesOutByQos: number[];
  /** Queued messages whose Message Expiry Interval passed before delivery. */
  droppedExpired: number;
  /** Client PUBLISHes to $SYS topics, refused. */
  droppedNotAuthorized: number;
  /** Persistent sessions ended by their expiry interval. */
  sessionsExpired: number;
  /** QoS 0 publishes dropped because the broker was past 80 % of --max-memory-bytes. */
  shedQos0: number;
  /** QoS 1/2 publishes refused (0x97, or 3.1.1 closed) past 90 % of --max-memory-bytes. */
  refusedPublishes: number;
  /** Connections refused (0x89 / 3.1.1 0x03) past --max-memory-bytes. */
  refusedConnections: number;
  /** Logins refused (bad credentials, anonymous not allowed, failed SCRAM). */
  authFailures: number;
  /** Publishes, subscriptions and wills refused by the client's permissions (ACL, `$`-topics). */
  aclDenied: number;
  /** Connections refused by --max-connections, --max-connections-per-address, --max-connect-rate. */
  limitRefusals: number;
  /** PUBLISH packets held back by --max-publish-rate. */
  throttledPublishes: number;
}

/** What ctx.publish reports back to the publisher's acknowledgement. */
export interface PublishResult {
  matched: number;
  /** Resolves when everything the message needs is stored. */
  done?: Promise<unknown>;
  /** Set (once `done` resolved) when the retained store refused the message (quota): 0x97. */
  notRetained?: { value: boolean };
}

export function newStats(): Stats {
  return {
    connections: 0, messagesIn: 0, messagesOut: 0, droppedQueueFull: 0, droppedQos0SlowConsumer: 0,
    droppedTooLarge: 0, protocolErrors: 0, persistenceErrors: 0, connectionsTotal: 0, connectionsMax: 0,
    sockets: 0, bytesIn: 0, bytesOut: 0, packetsIn: 0, packetsOut: 0,
    publishesInByQos: [0, 0, 0], publishesOutByQos: [0, 0, 0], payloadBytesInByQos: [0, 0, 0],
    payloadBytesOutByQos: [0, 0, 0], droppedExpired: 0, droppedNotAuthorized: 0, sessionsExpired: 0,
    shedQos0: 0, refusedPublishes: 0, refusedConnections: 0,
    authFailures: 0, aclDenied: 0, limitRefusals: 0, throttledPublishes: 0,
  };
}

export interface BrokerContext {
  readonly config: Config;
  readonly clock: Clock;
  readonly log: Logger;
  readonly persistence: Persistence;
  readonly router: Router;
  readonly stats: Stats;
  readonly sessions: Map<string, Session>;
  readonly wheel: KeepaliveWheel;
  /** Bytes held for messages and the memory pressure level (memory.ts). */
  readonly memory: MemoryAccount;
  /** Route a message from a client (or a will); resolves when everything it needs is stored. */
  publish(msg: StoredMessage, publisher?: string): PublishResult;
  /** Authentication and authorization (auth/auth.ts). */
  readonly security: Security;
  /** Connection admission and CONNECT rate (limits/connections.ts). */
  readonly connectionLimits: ConnectionLimits;
  /** Permissions of a client; undefined when it may do everything (no check is made then). */
  permissionsFor(id: Identity): Permissions | undefined | Promise<Permissions | undefined>;
  newMessageId(): string;
  /** Queue a client for the end-of-tick flush of its output. */
  markDirty(c: Client): void;
  /** Session lifecycle. */
  takeSession(clientId: string, clean: boolean): Promise<{ session: Session; present: boolean }>;
  clientClosed(c: Client, publishWill: boolean): void;
  /** Send the retained messages matching a new subscription. */
  sendRetained(session: Session, filter: string, qos: number, subscriptionId?: number, skip?: Set<string>): Promise<void>;
  /** A set that collects the topics of retained messages published from now on. */
  watchRetained(): Set<string>;
  unwatchRetained(topics: Set<string>): void;
  persistSession(session: Session, will?: import("../message.ts").StoredWill): Promise<void>;
  /** Subscriptions into the router and the cluster route table; resolves once routed everywhere. */
  addSubscriptions(session: Session, subs: import("../message.ts").StoredSubscription[]): Promise<void> | undefined;
  /** Remove subscriptions; true for each filter the session had. */
  removeSubscriptions(session: Session, filters: string[]): boolean[];
  /** A write of a session's state failed: logged and counted, or the session moved away. */
  sessionWriteFailed(session: Session, what: string, e: unknown): void;
}
