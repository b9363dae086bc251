/**
 * Session state that outlives a connection (MQTT §4.1): subscriptions, outgoing QoS 1/2
 * messages (inflight window + bounded queue), incoming QoS 2 packet ids, expiry and a pending
 * delayed will. A live Client attaches to it; when detached the session keeps queueing.
 *
 * Every change of a persistent session is mirrored to the Persistence seam; the promise a
 * delivery returns is what the publisher's PUBACK/PUBREC waits for.
 */
import type { OutgoingEntry, StoredMessage, StoredSubscription, StoredWill } from "../persistence/persistence.ts";
import type { DeliveryOptions, Subscriber } from "../routing/router.ts";
import type { BrokerContext } from "./context.ts";
import type { Client } from "./client.ts";

export const NEVER_EXPIRES = 0xffffffff;

export class Session implements Subscriber {
  client: Client | undefined;
  /** Seconds; 0 = ends with the connection. */
  expiryInterval = 0;
  protocolVersion = 4;
  readonly subscriptions = new Map<string, StoredSubscription>();
  /** Sent, waiting for acknowledgement, by packet id (insertion order = send order). */
  readonly inflight = new Map<number, OutgoingEntry>();
  /** Waiting for a window slot or for the client to come back. */
  queue: OutgoingEntry[] = [];
  readonly incomingQos2 = new Set<number>();
  private nextPid = 1;
  expiryTimer: unknown;
  /** Will waiting for its delay (set after an abnormal close). */
  pendingWill: StoredWill | undefined;
  willTimer: unknown;
  droppedMessages = 0;

  constructor(readonly clientId: string, private readonly ctx: BrokerContext) {}

  get persistent(): boolean {
    return this.expiryInterval > 0;
  }

  isOnline(): boolean {
    return this.client !== undefined;
  }

  readyForMore(): boolean {
    return this.client !== undefined && this.queue.length === 0 && this.inflight.size < this.client.sendWindow;
  }

  /** Route entry point: one message for this session. */
  deliver(msg: StoredMessage, o: DeliveryOptions): Promise<void> | void {
    if (msg.expiresAt !== undefined && msg.expiresAt <= this.ctx.clock.now()) return;
    if (o.qos === 0) {
      // QoS 0 goes to a live connection only; it is not queued for an offline session
      this.client?.sendPublish(msg, 0, o.retain, o.subscriptionIds, 0, false);
      return;
    }
    const entry: OutgoingEntry = { msg, qos: o.qos, retain: o.retain, subscriptionIds: o.subscriptionIds, state: "queued" };
    const c = this.client;
    if (c && this.queue.length === 0 && this.inflight.size < c.sendWindow) {
      if (!this.send(c, entry, false)) return; // too large for this client: dropped
    } else {
      if (this.queue.length + this.inflight.size >= this.ctx.config.maxQueuedMessages) {
        this.dropped("queue full");
        return;
      }
      this.queue.push(entry);
    }
    if (this.persistent) return this.ctx.persistence.enqueue(this.clientId, [{ ...entry }]);
  }

  private dropped(why: string) {
    this.droppedMessages++;
    this.ctx.stats.droppedQueueFull++;
    // log the first and then every 1000th to keep a flood from flooding the log too
    if (this.droppedMessages === 1 || this.droppedMessages % 1000 === 0) {
      this.ctx.log.warn("message dropped", { clientId: this.clientId, why, dropped: this.droppedMessages });
    }
  }

  private allocPid(): number {
    for (let i = 0; i < 65535; i++) {
      const id = this.nextPid;
      this.nextPid = id === 65535 ? 1 : id + 1;
      if (!this.inflight.has(id)) return id;
    }
    throw new Error("no free packet identifier");
  }

  /** Assign a packet id and send; false when the client cannot take this message at all. */
  private send(c: Client, e: OutgoingEntry, dup: boolean): boolean {
    const pid = this.allocPid();
    if (!c.sendPublish(e.msg, e.qos, e.retain, e.subscriptionIds, pid, dup)) {
      // larger than the client's Maximum Packet Size: discarded for this client [MQTT-3.1.2-25]
      if (this.persistent) void this.ctx.persistence.removeOutgoing(this.clientId, e.msg.id).catch(() => {});
      return false;
    }
    e.packetId = pid;
    e.state = "sent";
    this.inflight.set(pid, e);
    return true;
  }

  /** Move queued messages into the window while there is room. */
  pump(): void {
    const c = this.client;
    if (!c) return;
    const now = this.ctx.clock.now();
    let i = 0;
    while (i < this.queue.length && this.inflight.size < c.sendWindow) {
      const e = this.queue[i++];
      if (e.msg.expiresAt !== undefined && e.msg.expiresAt <= now) {
        if (this.persistent) void this.ctx.persistence.removeOutgoing(this.clientId, e.msg.id).catch(() => {});
        continue; // [MQTT-3.3.2-5] expired while queued: not delivered
      }
      if (this.send(c, e, false) && this.persistent) {
        void this.ctx.persistence.updateOutgoing(this.clientId, { ...e }).catch(() => {});
      }
    }
    if (i > 0) this.queue = this.queue.slice(i);
  }

  /** PUBACK (QoS 1) or PUBCOMP (QoS 2): the message is done. */
  acknowledge(pid: number, expect: "sent" | "released"): boolean {
    const e = this.inflight.get(pid);
    if (!e || (expect === "sent" ? e.qos !== 1 : e.state !== "released")) return false;
    this.inflight.delete(pid);
    if (this.persistent) void this.ctx.persistence.removeOutgoing(this.clientId, e.msg.id).catch(() => {});
    this.pump();
    return true;
  }

  /** PUBREC: the receiver has it; we now send PUBREL and wait for PUBCOMP. */
  received(pid: number, failed: boolean): boolean {
    const e = this.inflight.get(pid);
    if (!e || e.qos !== 2) return false;
    if (failed) {
      // MQTT 5 PUBREC with a reason code >= 0x80 ends the flow [MQTT-4.3.3-?]: no PUBREL
      return this.acknowledge(pid, "sent") || (this.inflight.delete(pid), this.pump(), true);
    }
    if (e.state !== "released") {
      e.state = "released";
      if (this.persistent) void this.ctx.persistence.updateOutgoing(this.clientId, { ...e }).catch(() => {});
    }
    return true;
  }

  /** On session resume: resend unacknowledged messages in order, DUP set [MQTT-4.4.0-1]. */
  resume(c: Client): void {
    for (const [pid, e] of this.inflight) {
      if (e.state === "released") c.sendPubrel(pid);
      else if (!c.sendPublish(e.msg, e.qos, e.retain, e.subscriptionIds, pid, true)) this.inflight.delete(pid);
    }
    this.pump();
  }

  /** Replace in-memory outgoing state with what persistence holds (restart / other node). */
  restoreOutgoing(entries: OutgoingEntry[]): void {
    this.inflight.clear();
    this.queue = [];
    for (const e of entries) {
      if (e.state !== "queued" && e.packetId && !this.inflight.has(e.packetId)) this.inflight.set(e.packetId, e);
      else this.queue.push({ ...e, state: "queued", packetId: undefined });
    }
  }

  /** MQTT 5: a disconnected client's Receive Maximum is unknown until it reconnects. */
  clearQueues(): void {
    this.inflight.clear();
    this.queue = [];
    this.incomingQos2.clear();
  }
}
