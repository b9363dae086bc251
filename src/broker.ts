/**
 * The broker: owns the live sessions, the router and the retained store (through
 * persistence), accepts connections from any adapter and wires clients to sessions.
 * Session lifecycle (takeover, resume, expiry, wills) lives here; packet semantics live in
 * session/handlers.
 */
import type { Acceptor, Connection, ConnectionEvents } from "./transport.ts";
import type { ListenerSpec } from "./listener-spec.ts";
import { type Clock, systemClock } from "./clock.ts";
import type { Config } from "./config.ts";
import { createLogger, type Logger } from "./log.ts";
import type { OutgoingEntry, Persistence, SessionRecord, StoredMessage, StoredWill } from "./persistence/persistence.ts";
import { Router } from "./routing/router.ts";
import { parseShared } from "./routing/topic.ts";
import { Client } from "./session/client.ts";
import type { BrokerContext, Stats } from "./session/context.ts";
import { KeepaliveWheel } from "./session/keepalive.ts";
import { compactPayload, NEVER_EXPIRES, Session } from "./session/session.ts";
import { willDelaySeconds, willMessage } from "./session/will.ts";
import { RC } from "./protocol/reason-codes.ts";
import type { ClusterBus } from "./cluster/bus.ts";
import { LocalBus } from "./cluster/bus.ts";

const MAX_TIMER = 2 ** 31 - 1;



export interface BrokerOptions {
  config: Config;
  persistence: Persistence;
  clock?: Clock;
  log?: Logger;
  bus?: ClusterBus;
}

/** Per-session bookkeeping the broker keeps beside the Session object. */
interface Meta {
  stored: boolean;
}

export class Broker implements BrokerContext, Acceptor {
  readonly config: Config;
  readonly clock: Clock;
  readonly log: Logger;
  readonly persistence: Persistence;
  readonly router = new Router();
  readonly sessions = new Map<string, Session>();
  readonly wheel: KeepaliveWheel;
  readonly bus: ClusterBus;
  readonly clients = new Set<Client>();
  readonly stats: Stats = {
    connections: 0, messagesIn: 0, messagesOut: 0, droppedQueueFull: 0,
    droppedQos0SlowConsumer: 0, droppedTooLarge: 0, protocolErrors: 0,
  };
  private meta = new WeakMap<Session, Meta>();
  private dirty: Client[] = [];
  private flushScheduled = false;
  private seq = 0;
  private shuttingDown = false;
  /** Topic sets of SUBSCRIBEs whose retained lookup is in progress (see watchRetained). */
  private retainWatches = new Set<Set<string>>();

  constructor(opts: BrokerOptions) {
    this.config = opts.config;
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log ?? createLogger(opts.config.logLevel);
    this.persistence = opts.persistence;
    this.wheel = new KeepaliveWheel(this.clock);
    this.bus = opts.bus ?? new LocalBus(opts.config.nodeId);
    this.bus.onMessage((m, pub) => this.router.route(m, pub));
  }

  // --- Acceptor ---------------------------------------------------------------------------
  /** A new connection, through `listener` (its per-listener settings; none for bare test sockets). */
  accept(conn: Connection, listener?: ListenerSpec): ConnectionEvents {
    const c = new Client(conn, this, listener);
    this.clients.add(c);
    return c;
  }

  newMessageId(): string {
    return `${this.config.nodeId}:${(++this.seq).toString(36)}`;
  }

  markDirty(c: Client): void {
    this.dirty.push(c);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(this.flushAll);
    }
  }

  private flushAll = () => {
    this.flushScheduled = false;
    const list = this.dirty;
    this.dirty = [];
    for (let i = 0; i < list.length; i++) list[i].flush();
  };

  // --- publishing -------------------------------------------------------------------------
  publish(msg: StoredMessage, publisher?: string): { matched: number; done?: Promise<unknown> } {
    let stored: Promise<void> | undefined;
    if (msg.retain) {
      if (this.retainWatches.size > 0) for (const w of this.retainWatches) w.add(msg.topic);
      // [MQTT-3.3.1-5] store; [MQTT-3.3.1-6]/[MQTT-3.3.1-7] an empty payload clears the topic
      stored = msg.payload.length === 0 ? this.persistence.deleteRetained(msg.topic) : this.persistence.putRetained(msg);
      if (msg.qos === 0) {
        stored.catch((e) => this.log.error("retained message not stored", { topic: msg.topic, error: String(e) }));
        stored = undefined;
      }
    }
    const r = this.router.route(msg, publisher);
    const fwd = this.bus.forward(msg, publisher);
    // The fan-out above was synchronous. From here on the message may live on (retained,
    // queued, in flight): drop the received frame and keep a compact copy of the payload, so
    // that a 10-byte message does not pin the whole socket read it arrived in.
    msg.wire = undefined;
    if (msg.retain) compactPayload(msg);
    let done: Promise<unknown> | undefined;
    if (r.pending === undefined && stored === undefined && !fwd) return { matched: r.matched };
    const parts: Promise<unknown>[] = r.pending ?? [];
    if (stored) parts.push(stored);
    if (fwd) parts.push(fwd);
    if (parts.length === 1) done = parts[0];
    else if (parts.length > 1) done = Promise.all(parts);
    return { matched: r.matched, done };
  }

  watchRetained(): Set<string> {
    const topics = new Set<string>();
    this.retainWatches.add(topics);
    return topics;
  }

  unwatchRetained(topics: Set<string>): void {
    this.retainWatches.delete(topics);
  }

  async sendRetained(s: Session, filter: string, qos: number, subscriptionId?: number, skip?: Set<string>): Promise<void> {
    let msgs: StoredMessage[];
    try {
      msgs = await this.persistence.matchRetained(filter);
    } catch (e) {
      this.log.error("retained lookup failed", { filter, error: String(e) });
      return;
    }
    for (const m of msgs) {
      // a newer retained message for this topic was delivered live meanwhile
      if (skip !== undefined && skip.has(m.topic)) continue;
      const q = Math.min(m.qos, qos) as 0 | 1 | 2;
      if (q === 0) {
        // a wildcard can match more retained bytes than the slow-consumer limit: wait for the
        // socket to take them instead of dropping, a reading client gets all of them
        // (3.1.1 [MQTT-3.3.1-6] / 5.0 [MQTT-3.3.1-9])
        const c = s.client;
        if (c && c.outputBacklog > this.config.maxOutputBuffer) {
          await c.drained();
          if (s.client !== c) continue; // gone meanwhile: QoS 0 is not kept for later
        }
      }
      // [MQTT-3.3.1-8] retained messages sent on subscribe carry RETAIN=1
      const r = s.deliver(m, {
        qos: q,
        retain: true,
        subscriptionIds: subscriptionId ? [subscriptionId] : undefined,
      });
      if (r) r.catch((e) => this.log.error("retained delivery not stored", { clientId: s.clientId, error: String(e) }));
    }
  }

  // --- session lifecycle ------------------------------------------------------------------
  async takeSession(clientId: string, clean: boolean): Promise<{ session: Session; present: boolean }> {
    let s = this.sessions.get(clientId);
    if (s?.client) {
      // [MQTT-3.1.4-3] the new connection wins; MQTT 5 gets DISCONNECT 0x8E
      this.log.info("session taken over", { clientId });
      s.client.disconnect(RC.SESSION_TAKEN_OVER, "session taken over by a new connection");
      s = this.sessions.get(clientId);
    }
    if (!s) {
      const rec = await this.persistence.getSession(clientId).catch(() => undefined);
      s = this.sessions.get(clientId); // another connect may have won meanwhile
      if (!s && rec && rec.expiryInterval > 0) s = await this.restore(rec);
      if (s?.client) s.client.disconnect(RC.SESSION_TAKEN_OVER, "session taken over by a new connection");
    }
    if (s) {
      this.clock.clearTimeout(s.expiryTimer);
      s.expiryTimer = undefined;
      if (s.pendingWill) {
        this.clock.clearTimeout(s.willTimer);
        const w = s.pendingWill;
        s.pendingWill = undefined;
        // reconnect within the delay cancels the will [MQTT-3.1.3-9]; a clean start ends the
        // old session, and a session end sends it
        if (clean) this.publishWill(w, clientId);
      }
    }
    if (s && clean) {
      // [MQTT-3.1.2-6] / [MQTT-3.1.2-4] clean start discards the previous session
      await this.endSession(s);
      s = undefined;
    }
    if (s) return { session: s, present: true };
    const fresh = new Session(clientId, this);
    this.sessions.set(clientId, fresh);
    return { session: fresh, present: false };
  }

  async persistSession(s: Session, will?: StoredWill): Promise<void> {
    const rec: SessionRecord = {
      clientId: s.clientId,
      protocolVersion: s.protocolVersion,
      expiryInterval: s.expiryInterval,
      node: this.config.nodeId,
      will,
    };
    this.metaOf(s).stored = true;
    await this.persistence.putSession(rec);
  }

  private metaOf(s: Session): Meta {
    let m = this.meta.get(s);
    if (!m) this.meta.set(s, m = { stored: false });
    return m;
  }

  clientClosed(c: Client, publishWill: boolean): void {
    this.clients.delete(c);
    if (c.connected) this.stats.connections--;
    const s = c.session;
    const will = publishWill && !this.shuttingDown ? c.will : undefined;
    c.will = undefined;
    if (!s || s.client !== c) return;
    s.client = undefined;
    if (s.expiryInterval === 0) {
      // the session ends with the connection; the will goes now [MQTT-3.1.3-9]
      void this.endSession(s);
      if (will) this.publishWill(will, s.clientId);
      return;
    }
    // shared-subscription messages queued here and not sent yet go to a connected member of
    // their group now (routing/shared.ts); what was sent waits for this session to come back
    const unsent = s.takeUnsentShared((share) => this.router.canHandOver(share, s.clientId));
    if (unsent.length) this.handOver(unsent, s.clientId, true);
    const now = this.clock.now();
    let willAt: number | undefined;
    if (will) {
      const delay = willDelaySeconds(will, s.expiryInterval);
      if (delay === 0) this.publishWill(will, s.clientId);
      else {
        willAt = now + delay * 1000;
        this.scheduleWill(s, will, willAt);
      }
    }
    this.scheduleExpiry(s, now + s.expiryInterval * 1000);
    this.persistence.putSession({
      clientId: s.clientId, protocolVersion: s.protocolVersion, expiryInterval: s.expiryInterval,
      disconnectedAt: now, will: willAt ? will : undefined, willAt,
    }).catch((e) => this.log.error("session state not stored", { clientId: s.clientId, error: String(e) }));
    this.metaOf(s).stored = true;
  }

  private publishWill(w: StoredWill, clientId: string): void {
    this.log.debug("publishing will", { clientId, topic: w.topic });
    const r = this.publish(willMessage(w, this.newMessageId(), this.clock.now()), clientId);
    r.done?.catch((e) => this.log.error("will not stored", { clientId, error: String(e) }));
  }

  private scheduleWill(s: Session, w: StoredWill, at: number) {
    s.pendingWill = w;
    this.clock.clearTimeout(s.willTimer);
    s.willTimer = this.longTimeout(at, () => {
      if (s.pendingWill !== w || s.client) return;
      s.pendingWill = undefined;
      this.publishWill(w, s.clientId);
      this.persistence.putSession({
        clientId: s.clientId, protocolVersion: s.protocolVersion, expiryInterval: s.expiryInterval,
        disconnectedAt: this.clock.now(),
      }).catch(() => {});
    });
  }

  private scheduleExpiry(s: Session, at: number) {
    this.clock.clearTimeout(s.expiryTimer);
    if (s.expiryInterval >= NEVER_EXPIRES) return; // [MQTT-3.1.2-?] 0xFFFFFFFF never expires
    s.expiryTimer = this.longTimeout(at, () => {
      if (s.client || this.sessions.get(s.clientId) !== s) return;
      this.log.debug("session expired", { clientId: s.clientId });
      if (s.pendingWill) {
        const w = s.pendingWill;
        s.pendingWill = undefined;
        this.publishWill(w, s.clientId);
      }
      void this.endSession(s);
    });
  }

  /** setTimeout for an absolute time that may be further away than 24.8 days. */
  private longTimeout(at: number, fn: () => void): unknown {
    const holder: { h?: unknown } = {};
    const arm = () => {
      const ms = at - this.clock.now();
      if (ms > MAX_TIMER) holder.h = this.clock.setTimeout(arm, MAX_TIMER);
      else holder.h = this.clock.setTimeout(fn, Math.max(0, ms));
    };
    arm();
    return holder.h;
  }

  /**
   * Shared-subscription deliveries a member cannot complete go to another member of the same
   * group (routing/shared.ts); dropped when the group has no one else.
   */
  private handOver(entries: OutgoingEntry[], from: string, onlineOnly: boolean): void {
    for (const e of entries) {
      const r = this.router.handOver(e.share!, e.msg, from, onlineOnly);
      if (r === false) this.log.debug("shared message dropped: no other member", { clientId: from, share: e.share });
      else if (r) r.catch((err) => this.log.error("shared message not stored", { share: e.share, error: String(err) }));
    }
  }

  private async endSession(s: Session): Promise<void> {
    this.clock.clearTimeout(s.expiryTimer);
    this.clock.clearTimeout(s.willTimer);
    for (const filter of s.subscriptions.keys()) {
      const share = parseShared(filter);
      this.router.remove(s.clientId, filter, share instanceof Error ? undefined : share);
    }
    s.subscriptions.clear();
    // after leaving its groups: its unsent and QoS 1 in-flight shared messages go to another
    // member (QoS 2 already sent does not [MQTT-4.8.2-5])
    const handOn = s.sharedToHandOn();
    s.clearQueues();
    if (handOn.length) this.handOver(handOn, s.clientId, false);
    if (this.sessions.get(s.clientId) === s) this.sessions.delete(s.clientId);
    if (this.metaOf(s).stored) {
      this.metaOf(s).stored = false;
      await this.persistence.deleteSession(s.clientId).catch((e) =>
        this.log.error("session not deleted from storage", { clientId: s.clientId, error: String(e) })
      );
    }
  }

  /** Rebuild one session from persistence (offline). */
  private async restore(rec: SessionRecord): Promise<Session> {
    const s = new Session(rec.clientId, this);
    s.expiryInterval = rec.expiryInterval;
    s.protocolVersion = rec.protocolVersion;
    this.metaOf(s).stored = true;
    const [subs, out, q2] = await Promise.all([
      this.persistence.subscriptions(rec.clientId),
      this.persistence.outgoing(rec.clientId),
      this.persistence.incomingQos2(rec.clientId),
    ]);
    for (const sub of subs) {
      s.subscriptions.set(sub.filter, sub);
      const share = parseShared(sub.filter);
      this.router.add(s, sub, share instanceof Error ? undefined : share);
    }
    s.restoreOutgoing(out);
    for (const id of q2) s.incomingQos2.add(id);
    this.sessions.set(rec.clientId, s);
    return s;
  }

  /**
   * Startup recovery: load every stored session; sessions that were connected when the last
   * process died get their wills published (once: the record is rewritten without it) and
   * their expiry started; delayed wills and expiries resume where they were.
   */
  async start(): Promise<void> {
    const records: SessionRecord[] = [];
    for await (const rec of this.persistence.sessions()) records.push(rec);
    const now = this.clock.now();
    const loaded: Array<[Session, SessionRecord]> = [];
    for (const rec of records) {
      if (rec.expiryInterval === 0) {
        // a clean session stored only for its will: its connection died with the process
        await this.persistence.deleteSession(rec.clientId);
        if (rec.will) this.publishWill(rec.will, rec.clientId);
        continue;
      }
      loaded.push([await this.restore(rec), rec]);
    }
    for (const [s, rec] of loaded) {
      const crashed = rec.disconnectedAt === undefined;
      const since = crashed ? now : rec.disconnectedAt!;
      const expiresAt = rec.expiryInterval >= NEVER_EXPIRES ? Infinity : since + rec.expiryInterval * 1000;
      let willAt = rec.willAt;
      if (crashed && rec.will) {
        const d = willDelaySeconds(rec.will, rec.expiryInterval);
        willAt = now + d * 1000;
      }
      if (expiresAt <= now) {
        if (rec.will && willAt !== undefined) this.publishWill(rec.will, s.clientId);
        await this.endSession(s);
        continue;
      }
      if (rec.will && willAt !== undefined) {
        if (willAt <= now) this.publishWill(rec.will, s.clientId);
        else this.scheduleWill(s, rec.will, willAt);
      }
      this.scheduleExpiry(s, expiresAt);
      if (crashed || (willAt !== undefined && willAt <= now)) {
        await this.persistence.putSession({
          clientId: s.clientId, protocolVersion: s.protocolVersion, expiryInterval: s.expiryInterval,
          disconnectedAt: since, will: willAt && willAt > now ? rec.will : undefined,
          willAt: willAt && willAt > now ? willAt : undefined,
        });
      }
    }
    if (records.length) this.log.info("sessions restored", { count: loaded.length });
  }

  /** Stop: close every connection (MQTT 5: 0x8B server shutting down) and the stores. */
  async close(): Promise<void> {
    // A planned shutdown is not an abnormal end of the clients' connections (MQTT 5 §3.1.2.5
    // lists network failure, keepalive expiry, protocol errors and the client closing without
    // DISCONNECT): no wills. Clients reconnect (to this node again or, in a cluster, another).
    this.shuttingDown = true;
    for (const c of [...this.clients]) c.disconnect(RC.SERVER_SHUTTING_DOWN, "server shutting down");
    this.flushAll();
    this.wheel.stop();
    for (const s of this.sessions.values()) {
      this.clock.clearTimeout(s.expiryTimer);
      this.clock.clearTimeout(s.willTimer);
    }
    await this.bus.close();
  }
}
