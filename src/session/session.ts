/**
 * Session state that outlives a connection (MQTT §4.1): subscriptions, outgoing QoS 1/2
 * messages (inflight window + bounded queue), incoming QoS 2 packet ids, expiry and a pending
 * delayed will. A live Client attaches to it; when detached the session keeps queueing.
 *
 * Every change of a persistent session is mirrored to the Persistence seam; the promise a
 * delivery returns is what the publisher's PUBACK/PUBREC waits for.
 *
 * Bounds: the inflight window in messages (client Receive Maximum, --max-inflight), the queue
 * behind it in messages (--max-queued-messages), and both together in bytes
 * (--max-queued-bytes). Every entry that enters inflight or the queue is held in the broker's
 * memory account (memory.ts) and released when it leaves, by whatever way it leaves.
 */
import type { OutgoingEntry, StoredMessage, StoredSubscription, StoredWill } from "../message.ts";
import type { Permissions } from "../auth/auth.ts";
import type { DeliveryOptions, Subscriber } from "../routing/router.ts";
import type { BrokerContext } from "./context.ts";
import type { Client } from "./client.ts";
import { compactPayload, messageBytes } from "./memory.ts";

export const NEVER_EXPIRES = 0xffffffff;
/** Unacknowledged messages at which a client counts as lagging, and below which it no longer does. */
const LAG_START = 256;
const LAG_END = 32;

/** A delivery waiting for the session to be set up (Session.hold). */
interface Held {
  msg: StoredMessage;
  o: DeliveryOptions;
  done?: { resolve: () => void; reject: (e: unknown) => void };
}


/** Shared empty placeholders, replaced by a real array on first push (see the fields below). */
const NONE: OutgoingEntry[] = Object.freeze([]) as unknown as OutgoingEntry[];
const NO_PIDS: number[] = Object.freeze([]) as unknown as number[];

export class Session implements Subscriber {
  client: Client | undefined;
  /** Seconds; 0 = ends with the connection. */
  expiryInterval = 0;
  protocolVersion = 4;
  // Collections are created on first use: most connections are idle clean sessions, and
  // memory per idle connection is a benchmark row (each empty Map/array costs 32-40 bytes).
  private _subscriptions: Map<string, StoredSubscription> | undefined;
  private _inflight: Map<number, OutgoingEntry> | undefined;
  private _incomingQos2: Set<number> | undefined;
  /** Waiting for a window slot or for the client to come back. */
  queue: OutgoingEntry[] = NONE;
  /**
   * Packet ids in flight from an earlier connection that wait for a send-quota slot before they
   * are re-sent: a new connection brings a new Receive Maximum [MQTT-3.3.4-9] (§4.9).
   */
  private resendPids: number[] = NO_PIDS;
  private nextPid = 1;
  expiryTimer: unknown;
  /** Will waiting for its delay (set after an abnormal close). */
  pendingWill: StoredWill | undefined;
  willTimer: unknown;
  droppedMessages = 0;
  /** Bytes of the messages in inflight + queue (each entry counted, see count/uncount). */
  heldBytes = 0;
  /**
   * Set while the client lags (a message had to wait behind its window, or LAG_START are
   * unacknowledged), cleared when fewer than LAG_END are in flight. Meanwhile the messages it
   * holds get their own copy of the payload (compactPayload) instead of a view of the socket
   * read they arrived in, which they would otherwise keep alive for as long as the client takes.
   * A client that keeps up never pays for the copy.
   */
  private lagging = false;
  /**
   * While the session is being set up on this node (taken over from another node, or adopted
   * from a dead one) deliveries wait here, in order; those drained from a dead node's inbox
   * (older) apart from the rest. See hold() / unhold().
   */
  private held: { old: Held[]; fresh: Held[]; ready: Promise<void>; done: () => void } | undefined;

  /** The user name its last connection authenticated as (kept with the session record). */
  username: string | undefined;
  /**
   * What the client may read and publish (auth/auth.ts); undefined: everything (no rules), and
   * no check is made at all. Replaced when the rules change (a reload) or the client reconnects.
   */
  permissions: Permissions | undefined;

  constructor(readonly clientId: string, private readonly ctx: BrokerContext) {}

  /**
   * Whether the client may receive a message on `topic`: checked when a message is routed to the
   * session and again when a queued one goes out (the rules may have changed meanwhile).
   */
  mayRead(topic: string): boolean {
    return this.permissions === undefined || this.permissions.canRead(topic);
  }

  private _writeFailed: ((e: unknown) => void) | undefined;
  /** A write of this session's state failed: logged and counted, or the session moved away. */
  private get writeFailed(): (e: unknown) => void {
    return this._writeFailed ??= (e) => this.ctx.sessionWriteFailed(this, "session state not stored", e);
  }

  get subscriptions(): Map<string, StoredSubscription> {
    return this._subscriptions ??= new Map();
  }

  /** Sent, waiting for acknowledgement, by packet id (insertion order = send order). */
  get inflight(): Map<number, OutgoingEntry> {
    return this._inflight ??= new Map();
  }

  get incomingQos2(): Set<number> {
    return this._incomingQos2 ??= new Set();
  }

  /** Without allocating: does this session hold anything in flight / any subscription? */
  get hasInflight(): boolean {
    return this._inflight !== undefined && this._inflight.size > 0;
  }

  /** Counts for metrics, without allocating the collections. */
  get subscriptionCount(): number {
    return this._subscriptions === undefined ? 0 : this._subscriptions.size;
  }

  get inflightCount(): number {
    return this._inflight === undefined ? 0 : this._inflight.size;
  }

  get persistent(): boolean {
    return this.expiryInterval > 0;
  }

  isOnline(): boolean {
    return this.client !== undefined;
  }

  readyForMore(): boolean {
    return this.client !== undefined && this.queue.length === 0 && this.resendPids.length === 0 &&
      this.inflight.size < this.client.sendWindow;
  }

  backlog(): number {
    return this.inflight.size + this.queue.length;
  }

  /** QoS 1/2 PUBLISH packets sent on the current connection and not yet acknowledged. */
  private outstanding(): number {
    return this.inflight.size - this.resendPids.length;
  }

  /** Hold deliveries until unhold() (the session's state is still being loaded). */
  hold(): void {
    if (this.held) return;
    let done!: () => void;
    const ready = new Promise<void>((r) => (done = r));
    this.held = { old: [], fresh: [], ready, done };
  }

  get holding(): boolean {
    return this.held !== undefined;
  }

  /** Resolves once the session is set up (unhold), at once when it is not held. */
  ready(): Promise<void> {
    return this.held?.ready ?? Promise.resolve();
  }

  /**
   * Deliver what was held, drained messages first, skipping any message the loaded state has
   * already (it arrived on two paths while the session moved). Each held delivery's promise
   * settles with its real delivery.
   */
  unhold(): void {
    const h = this.held;
    if (h === undefined) return;
    this.held = undefined;
    const have = new Set<string>();
    for (const e of this.queue) have.add(e.msg.id);
    if (this._inflight) for (const e of this._inflight.values()) have.add(e.msg.id);
    for (const list of [h.old, h.fresh]) {
      for (const d of list) {
        if (have.has(d.msg.id)) {
          d.done?.resolve();
          continue;
        }
        have.add(d.msg.id);
        const r = this.deliver(d.msg, d.o);
        if (d.done) {
          if (r) r.then(d.done.resolve, d.done.reject);
          else d.done.resolve();
        }
      }
    }
    h.done();
  }

  /** Route entry point: one message for this session. */
  deliver(msg: StoredMessage, o: DeliveryOptions): Promise<void> | void {
    if (msg.expiresAt !== undefined && msg.expiresAt <= this.ctx.clock.now()) {
      this.ctx.stats.droppedExpired++;
      return;
    }
    // a subscription to '#' never receives what the client may not read (acl.ts)
    if (this.permissions !== undefined && !this.permissions.canRead(msg.topic)) return;
    if (this.held !== undefined) {
      const d: Held = { msg, o };
      (o.drained ? this.held.old : this.held.fresh).push(d);
      if (o.qos === 0) return;
      compactPayload(msg);
      // a QoS 1/2 publisher is acknowledged once the real delivery is stored
      return new Promise<void>((resolve, reject) => (d.done = { resolve, reject }));
    }
    if (o.qos === 0) {
      // QoS 0 goes to a live connection only; it is not queued for an offline session
      this.client?.sendPublish(msg, 0, o.retain, o.subscriptionIds, 0, false);
      return;
    }
    const cfg = this.ctx.config;
    // the byte bound covers inflight and queue together; a session holding nothing takes any
    // message (up to the maximum packet size), so a large one still reaches a reading client
    const size = messageBytes(msg);
    if (this.heldBytes !== 0 && this.heldBytes + size > cfg.maxQueuedBytes) {
      this.dropExpired();
      if (this.heldBytes !== 0 && this.heldBytes + size > cfg.maxQueuedBytes) {
        this.dropped(`more than ${cfg.maxQueuedBytes} bytes held (--max-queued-bytes)`);
        return;
      }
    }
    const entry: OutgoingEntry = { msg, qos: o.qos, retain: o.retain, subscriptionIds: o.subscriptionIds, state: "queued" };
    if (o.share !== undefined) entry.share = o.share;
    const c = this.client;
    // [MQTT-3.3.4-9] [MQTT-4.9.0-2] no more than the client's Receive Maximum unacknowledged
    if (c && this.queue.length === 0 && this.resendPids.length === 0 && this.inflight.size < c.sendWindow) {
      if (this.lagging) compactPayload(msg);
      if (!this.send(c, entry, false)) return; // too large for this client: dropped
      if (!this.lagging && this.inflight.size >= LAG_START) this.startLagging();
    } else {
      // the count bound is on messages waiting behind the window; the window itself is bounded
      // by maxInflight / the client's Receive Maximum, so a healthy client with a full window
      // still has maxQueuedMessages of room for a burst
      if (this.queue.length >= cfg.maxQueuedMessages) this.dropExpired();
      if (this.queue.length >= cfg.maxQueuedMessages) {
        this.dropped("queue full (--max-queued-messages)");
        return;
      }
      if (this.queue === NONE) this.queue = [];
      compactPayload(msg); // it may wait long: do not pin the socket read it arrived in
      if (!this.lagging) this.startLagging();
      this.queue.push(entry);
    }
    this.count(entry);
    if (this.persistent) {
      const stored = this.ctx.persistence.enqueue(this.clientId, [{ ...entry }]);
      // whoever waits on it (a publisher's ack) handles a failure; a lost ownership is ours
      stored.catch((e) => (e as Error)?.name === "FencedError" && this.writeFailed(e));
      return stored;
    }
  }

  /** The client went away and the session stays: what it holds may wait long (see lagging). */
  detached(): void {
    this.startLagging();
  }

  /** The client fell behind: what it holds in flight stops pinning socket reads (see lagging). */
  private startLagging(): void {
    this.lagging = true;
    if (this._inflight !== undefined) for (const e of this._inflight.values()) compactPayload(e.msg);
  }

  /** The entry entered inflight or the queue: its message counts for this session and the broker. */
  private count(e: OutgoingEntry): void {
    this.heldBytes += this.ctx.memory.hold(e.msg);
  }

  /** The entry left inflight / the queue (acknowledged, dropped, handed over, session gone). */
  private uncount(e: OutgoingEntry): void {
    this.heldBytes -= this.ctx.memory.release(e.msg);
    if (this.lagging && (this._inflight?.size ?? 0) < LAG_END) this.lagging = false;
  }

  /** [MQTT-3.3.2-5] queued copies whose lifetime has passed are deleted (here: to make room). */
  private dropExpired(): void {
    const now = this.ctx.clock.now();
    this.queue = this.queue.filter((e) => {
      if (e.msg.expiresAt === undefined || e.msg.expiresAt > now) return true;
      this.ctx.stats.droppedExpired++;
      this.uncount(e);
      if (this.persistent) this.ctx.persistence.removeOutgoing(this.clientId, e.msg.id).catch(this.writeFailed);
      return false;
    });
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
    if (!this.mayRead(e.msg.topic) || !c.sendPublish(e.msg, e.qos, e.retain, e.subscriptionIds, pid, dup)) {
      // larger than the client's Maximum Packet Size: discarded for this client [MQTT-3.1.2-25]
      if (this.persistent) this.ctx.persistence.removeOutgoing(this.clientId, e.msg.id).catch(this.writeFailed);
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
    // first what an earlier connection left unacknowledged, with its packet id, DUP set
    while (this.resendPids.length > 0 && this.outstanding() < c.sendWindow) {
      const pid = this.resendPids.shift()!;
      const e = this.inflight.get(pid);
      if (e && (!this.mayRead(e.msg.topic) || !c.sendPublish(e.msg, e.qos, e.retain, e.subscriptionIds, pid, true))) this.discard(pid, e);
    }
    if (this.resendPids.length > 0) return;
    const now = this.ctx.clock.now();
    let i = 0;
    while (i < this.queue.length && this.inflight.size < c.sendWindow) {
      const e = this.queue[i++];
      if (e.msg.expiresAt !== undefined && e.msg.expiresAt <= now) {
        this.ctx.stats.droppedExpired++;
        this.uncount(e);
        if (this.persistent) this.ctx.persistence.removeOutgoing(this.clientId, e.msg.id).catch(this.writeFailed);
        continue; // [MQTT-3.3.2-5] expired while queued: not delivered
      }
      if (!this.send(c, e, false)) this.uncount(e); // too large for this client: dropped
      else if (this.persistent) this.ctx.persistence.updateOutgoing(this.clientId, { ...e }).catch(this.writeFailed);
    }
    if (i > 0) this.queue = this.queue.slice(i);
  }

  /** PUBACK (QoS 1) or PUBCOMP (QoS 2): the message is done. */
  acknowledge(pid: number, expect: "sent" | "released"): boolean {
    const e = this.inflight.get(pid);
    if (!e || (expect === "sent" ? e.qos !== 1 : e.state !== "released")) return false;
    this.inflight.delete(pid);
    this.uncount(e);
    if (this.resendPids.length > 0) this.unpend(pid);
    if (this.persistent) this.ctx.persistence.removeOutgoing(this.clientId, e.msg.id).catch(this.writeFailed);
    this.pump();
    return true;
  }

  /** PUBREC: the receiver has it; we now send PUBREL and wait for PUBCOMP. */
  received(pid: number, failed: boolean): boolean {
    const e = this.inflight.get(pid);
    if (!e || e.qos !== 2) return false;
    if (this.resendPids.length > 0) this.unpend(pid);
    if (failed) {
      // a PUBREC with a reason code >= 0x80 ends the flow: treated as acknowledged, no PUBREL,
      // never re-sent [MQTT-4.4.0-2], not offered to another shared member [MQTT-4.8.2-6]
      this.discard(pid, e);
      this.pump();
      return true;
    }
    if (e.state !== "released") {
      e.state = "released";
      if (this.persistent) this.ctx.persistence.updateOutgoing(this.clientId, { ...e }).catch(this.writeFailed);
    }
    return true;
  }

  private unpend(pid: number): void {
    const i = this.resendPids.indexOf(pid);
    if (i >= 0) this.resendPids.splice(i, 1);
  }

  /** A message this client can never take (larger than its Maximum Packet Size) [MQTT-3.1.2-25]. */
  private discard(pid: number, e: OutgoingEntry): void {
    this.inflight.delete(pid);
    this.uncount(e);
    if (this.persistent) this.ctx.persistence.removeOutgoing(this.clientId, e.msg.id).catch(this.writeFailed);
  }

  /**
   * On session resume: resend unacknowledged messages in order with their packet ids, DUP set
   * [MQTT-4.4.0-1]; PUBRELs go at once, PUBLISHes up to the new connection's Receive Maximum,
   * the rest as acknowledgements free the quota [MQTT-3.3.4-9].
   */
  resume(c: Client): void {
    this.resendPids = NO_PIDS;
    if (!this.hasInflight && this.queue.length === 0) return;
    let sent = 0;
    for (const [pid, e] of [...this.inflight]) {
      if (e.state === "released") {
        c.sendPubrel(pid);
        sent++;
      } else if (sent >= c.sendWindow) {
        if (this.resendPids === NO_PIDS) this.resendPids = [];
        this.resendPids.push(pid);
      }
      else if (this.mayRead(e.msg.topic) && c.sendPublish(e.msg, e.qos, e.retain, e.subscriptionIds, pid, true)) sent++;
      else this.discard(pid, e);
    }
    this.pump();
  }

  /**
   * Shared-subscription deliveries not sent yet, taken out of the queue so that another member
   * can have them (routing/shared.ts); only those `canHandOver(share)` accepts.
   */
  takeUnsentShared(canHandOver: (share: string) => boolean): OutgoingEntry[] {
    const out: OutgoingEntry[] = [];
    this.queue = this.queue.filter((e) => {
      if (e.share === undefined || !canHandOver(e.share)) return true;
      out.push(e);
      this.uncount(e); // the member that takes it holds it from now on
      if (this.persistent) this.ctx.persistence.removeOutgoing(this.clientId, e.msg.id).catch(this.writeFailed);
      return false;
    });
    return out;
  }

  /**
   * When the session ends: its shared-subscription deliveries that another member should get —
   * the unsent ones and QoS 1 in flight; QoS 2 already sent is not given to anyone else
   * [MQTT-4.8.2-5].
   */
  sharedToHandOn(): OutgoingEntry[] {
    const out: OutgoingEntry[] = [];
    for (const e of this.inflight.values()) if (e.share !== undefined && e.qos === 1) out.push(e);
    for (const e of this.queue) if (e.share !== undefined) out.push(e);
    return out;
  }

  /** Replace in-memory outgoing state with what persistence holds (restart / other node). */
  restoreOutgoing(entries: OutgoingEntry[]): void {
    this.uncountAll();
    this.inflight.clear();
    this.queue = NONE;
    this.resendPids = NO_PIDS;
    // what was stored is held again as it is, even past today's byte bound: nothing stored is lost
    for (const e of entries) {
      if (e.state !== "queued" && e.packetId && !this.inflight.has(e.packetId)) {
        this.inflight.set(e.packetId, e);
        this.count(e);
      } else {
        if (this.queue === NONE) this.queue = [];
        const q: OutgoingEntry = { ...e, state: "queued", packetId: undefined };
        this.queue.push(q);
        this.count(q);
      }
    }
  }

  /** The session ends: everything it held is let go (and stops counting). */
  clearQueues(): void {
    this.uncountAll();
    this._inflight?.clear();
    this.queue = NONE;
    this.resendPids = NO_PIDS;
    this._incomingQos2?.clear();
  }

  private uncountAll(): void {
    if (this._inflight !== undefined) for (const e of this._inflight.values()) this.uncount(e);
    for (const e of this.queue) this.uncount(e);
  }
}
