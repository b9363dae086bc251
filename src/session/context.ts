/** What sessions, clients and packet handlers need from the broker (no import cycle). */
import type { Clock } from "../clock.ts";
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import type { Persistence, StoredMessage } from "../persistence/persistence.ts";
import type { Router } from "../routing/router.ts";
import type { Client } from "./client.ts";
import type { Session } from "./session.ts";
import type { KeepaliveWheel } from "./keepalive.ts";
import type { MemoryAccount } from "./memory.ts";

export interface Stats {
  connections: number;
  messagesIn: number;
  messagesOut: number;
  droppedQueueFull: number;
  droppedQos0SlowConsumer: number;
  droppedTooLarge: number;
  protocolErrors: number;
  /** QoS 0 publishes dropped because the broker was past 80 % of --max-memory-bytes. */
  shedQos0: number;
  /** QoS 1/2 publishes refused (0x97, or 3.1.1 closed) past 90 % of --max-memory-bytes. */
  refusedPublishes: number;
  /** Connections refused (0x89 / 3.1.1 0x03) past --max-memory-bytes. */
  refusedConnections: number;
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
  publish(msg: StoredMessage, publisher?: string): { matched: number; done?: Promise<unknown> };
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
  persistSession(session: Session, will?: import("../persistence/persistence.ts").StoredWill): Promise<void>;
}
