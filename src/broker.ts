/**
 * The broker: accepts connections from any adapter, routes messages (through the cluster when
 * there is one), owns the router, the retained store (through persistence) and the one door
 * for subscription changes. The session lifecycle (attach, takeover, expiry, wills, restore,
 * adoption) lives in sessions.ts; packet semantics in session/handlers.
 */
import type { Acceptor, Connection, ConnectionEvents } from "./transport.ts";
import type { ListenerSpec } from "./listener-spec.ts";
import { type Clock, systemClock } from "./clock.ts";
import { setImmediate } from "node:timers";
import type { Config } from "./config.ts";
import { createLogger, type Logger } from "./log.ts";
import type { Persistence } from "./persistence/persistence.ts";
import type { StoredMessage, StoredSubscription, StoredWill } from "./message.ts";
import { Router } from "./routing/router.ts";
import { parseShared } from "./routing/topic.ts";
import { Client, releaseEncodings } from "./session/client.ts";
import { newStats, type PublishResult, type Stats } from "./session/context.ts";
import { KeepaliveWheel } from "./session/keepalive.ts";
import type { Session } from "./session/session.ts";
import { compactPayload, LEVEL, MemoryAccount } from "./session/memory.ts";
import { RC } from "./protocol/reason-codes.ts";
import { type ClusterBus, type Forward, LocalBus, type Request } from "./cluster/bus.ts";
import { Cluster } from "./cluster/cluster.ts";
import { type Attached, type RegistryHost, SessionRegistry } from "./sessions.ts";
import { ALLOW_ALL, allowAll, type Identity, type Permissions, type Security } from "./auth/auth.ts";
import { ConnectionLimits } from "./limits/connections.ts";
import { RetainedQuotaError } from "./persistence/persistence.ts";
import { SysTopics } from "./ops/sys.ts";

export interface BrokerOptions {
  config: Config;
  persistence: Persistence;
  clock?: Clock;
  log?: Logger;
  bus?: ClusterBus;
  /** Authentication and authorization; default: everyone may connect and do anything. */
  security?: Security;
}

/** The events of a connection refused at accept: whatever it still sends is ignored. */
const IGNORED: ConnectionEvents = { data() {}, drain() {}, close() {} };

/** Permissions of a session whose rules could not be fetched. */
const NOTHING_ALLOWED: Permissions = { canPublish: () => false, canRead: () => false, canSubscribe: () => false };

/** Per-process incarnation: message ids and the node's cluster identity never repeat. */
function incarnation(): string {
  return Math.floor(Math.random() * 36 ** 4).toString(36).padStart(4, "0");
}

export class Broker implements RegistryHost, Acceptor {
  readonly config: Config;
  readonly clock: Clock;
  readonly log: Logger;
  readonly persistence: Persistence;
  readonly router = new Router();
  readonly wheel: KeepaliveWheel;
  readonly cluster: Cluster;
  readonly registry: SessionRegistry;
  /** $SYS topics of this node (ops/sys.ts). */
  readonly sys: SysTopics;
  readonly clients = new Set<Client>();
  readonly stats: Stats = newStats();
  /** Bytes held for messages, and the pressure level past --max-memory-bytes (session/memory.ts). */
  readonly memory: MemoryAccount;
  readonly security: Security;
  readonly connectionLimits: ConnectionLimits;
  private refusalsLogged = 0;
  private stopWatchingSecurity: (() => void) | undefined;
  private dirty: Client[] = [];
  private flushScheduled = false;
  private seq = 0;
  private readonly idPrefix: string;
  shuttingDown = false;
  /** Topic sets of SUBSCRIBEs whose retained lookup is in progress (see watchRetained). */
  private retainWatches = new Set<Set<string>>();

  constructor(opts: BrokerOptions) {
    this.config = opts.config;
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log ?? createLogger(opts.config.logLevel);
    this.persistence = opts.persistence;
    this.wheel = new KeepaliveWheel(this.clock);
    this.memory = new MemoryAccount(opts.config.maxMemoryBytes, this.memoryLevel);
    this.persistence.trackMemory?.(this.memory);
    const bus = opts.bus ?? new LocalBus(opts.config.nodeId);
    this.idPrefix = `${bus.nodeId}${bus.clustered ? "" : "#" + incarnation()}:`;
    this.cluster = new Cluster(bus, this);
    this.registry = new SessionRegistry(this);
    this.sys = new SysTopics(this);
    this.security = opts.security ?? allowAll;
    this.connectionLimits = new ConnectionLimits(opts.config, this.clock);
    this.stopWatchingSecurity = this.security.changed?.(() => void this.securityChanged());
  }

  /** Sessions held by this node, by client id. */
  get sessions(): Map<string, Session> {
    return this.registry.map;
  }

  /** Logged when the memory pressure level changes (at most once a second while it flaps). */
  private memoryLevel = (level: number, held: number): void => {
    const now = this.clock.now();
    if (now - this.memoryLoggedAt < 1000) return;
    this.memoryLoggedAt = now;
    const what = ["normal", "shedding QoS 0 publishes", "refusing QoS 1/2 publishes (0x97)", "refusing new connections (0x89)"][level];
    const fields = { held, limit: this.config.maxMemoryBytes, level };
    if (level === LEVEL.OK) this.log.info(`memory use back under the limits: ${what}`, fields);
    else this.log.warn(`memory use past --max-memory-bytes thresholds: ${what}`, fields);
  };
  private memoryLoggedAt = -Infinity;

  // --- Acceptor ---------------------------------------------------------------------------
  /** A new connection, through `listener` (its per-listener settings; none for bare test sockets). */
  accept(conn: Connection, listener?: ListenerSpec): ConnectionEvents {
    const refused = this.connectionLimits.admit();
    if (refused !== undefined) {
      // over the node's connection limit: closed before anything is read (limits/connections.ts)
      this.stats.limitRefusals++;
      const now = this.clock.now();
      if (now - this.refusalsLogged >= 1000) {
        this.refusalsLogged = now;
        this.log.warn("connection refused", { remote: conn.remote.address, why: refused, refusedSoFar: this.stats.limitRefusals });
      }
      conn.close();
      return IGNORED;
    }
    const c = new Client(conn, this, listener);
    this.clients.add(c);
    this.stats.sockets++;
    return c;
  }

  // --- security ---------------------------------------------------------------------------

  permissionsFor(id: Identity): Permissions | undefined | Promise<Permissions | undefined> {
    const p = this.security.authorizer.permissions(id);
    if (p instanceof Promise) return p.then((q) => (q === ALLOW_ALL ? undefined : q));
    return p === ALLOW_ALL ? undefined : p;
  }

  /**
   * The rules changed (a reload): every session gets its permissions again (deliveries, publishes
   * and subscriptions follow the new rules from now on, queued messages included), and a
   * connection whose authentication is no longer valid is closed (MQTT 5: DISCONNECT 0x87).
   */
  async securityChanged(): Promise<void> {
    const auth = this.security.authenticator;
    for (const c of [...this.clients]) {
      if (!c.connected || c.closed || auth.stillValid === undefined) continue;
      if (!auth.stillValid({ clientId: c.clientId, username: c.username }, c.authStamp)) {
        this.log.info("credentials changed: connection closed", { clientId: c.clientId, username: c.username });
        c.disconnect(RC.NOT_AUTHORIZED, "credentials changed");
      }
    }
    let failed = 0;
    const pending: Promise<void>[] = [];
    const lost = (s: Session, e: unknown) => {
      // without an answer the session may do nothing until it has one
      failed++;
      s.permissions = NOTHING_ALLOWED;
      this.log.error("permissions not renewed; the session may do nothing until it reconnects", {
        clientId: s.clientId, error: String((e as Error)?.message ?? e),
      });
    };
    for (const s of this.sessions.values()) {
      try {
        const p = this.permissionsFor({ clientId: s.clientId, username: s.username });
        // answered at once (the files): in force before this returns, no delivery in between
        if (!(p instanceof Promise)) s.permissions = p;
        else pending.push(p.then((q) => void (s.permissions = q), (e) => lost(s, e)));
      } catch (e) {
        lost(s, e);
      }
    }
    await Promise.all(pending);
    this.log.info("permissions renewed", { sessions: this.sessions.size, failed });
  }

  newMessageId(): string {
    return this.idPrefix + (++this.seq).toString(36);
  }

  /**
   * Output goes out once the event loop has handled the input at hand (setImmediate, not a
   * microtask after each socket read or each Redis reply): what several reads, or several
   * store acknowledgements, owe one client leaves in one write. Bun fan-in: +15 % msg/s.
   */
  markDirty(c: Client): void {
    this.dirty.push(c);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushAll);
    }
  }

  private flushAll = () => {
    this.flushScheduled = false;
    const list = this.dirty;
    this.dirty = [];
    for (let i = 0; i < list.length; i++) list[i].flush();
  };

  // --- publishing -------------------------------------------------------------------------
  publish(msg: StoredMessage, publisher?: string): PublishResult {
    let stored: Promise<void> | undefined;
    let notRetained: { value: boolean } | undefined;
    if (msg.retain) {
      if (this.retainWatches.size > 0) for (const w of this.retainWatches) w.add(msg.topic);
      // [MQTT-3.3.1-5] store; [MQTT-3.3.1-6]/[MQTT-3.3.1-7] an empty payload clears the topic
      if (msg.payload.length === 0) stored = this.persistence.deleteRetained(msg.topic);
      else {
        // over --max-retained-messages / --max-retained-bytes the store refuses a new or larger
        // retained message: it is still delivered to the current subscribers, not kept
        const flag: { value: boolean } = notRetained = { value: false };
        stored = this.persistence.putRetained(msg, this.retainedQuota).catch((e) => {
          if (!(e instanceof RetainedQuotaError)) throw e;
          flag.value = true;
          this.retainedRefused(msg, e);
        });
      }
      if (msg.qos === 0) {
        stored.catch((e) => this.log.error("retained message not stored", { topic: msg.topic, error: String(e) }));
        stored = undefined;
      }
    }
    const r = this.cluster.route(msg, publisher);
    // The fan-out above was synchronous. From here on the message may live on (retained,
    // queued, in flight): drop the received frame and the encodings shared during the fan-out,
    // and keep a compact copy of a retained payload, so that a 10-byte message does not pin the
    // whole socket read it arrived in (queued ones and those of lagging clients: session.ts).
    msg.wire = undefined;
    releaseEncodings();
    if (msg.retain) compactPayload(msg);
    let done: Promise<unknown> | undefined;
    if (r.pending === undefined && stored === undefined) return { matched: r.matched };
    const parts: Promise<unknown>[] = r.pending ?? [];
    if (stored) parts.push(stored);
    if (parts.length === 1) done = parts[0];
    else if (parts.length > 1) done = Promise.all(parts);
    return { matched: r.matched, done, notRetained };
  }

  private get retainedQuota() {
    const { maxRetainedMessages: maxMessages, maxRetainedBytes: maxBytes } = this.config;
    return maxMessages === 0 && maxBytes === 0 ? undefined : { maxMessages, maxBytes };
  }

  private retainedRefusals = 0;
  private retainedRefused(msg: StoredMessage, e: RetainedQuotaError): void {
    // logged the first time and then every 1000th: a publisher retaining in a loop floods nothing
    if (this.retainedRefusals++ % 1000 === 0) {
      this.log.warn("retained message not kept", { topic: msg.topic, why: e.message, refusedSoFar: this.retainedRefusals });
    }
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
    // the broker's own $SYS values are retained on this node only (ops/sys.ts)
    if (filter.startsWith("$SYS") && (filter.length === 4 || filter.charCodeAt(4) === 47)) msgs = msgs.concat(this.sys.match(filter));
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

  retainedSeen(topic: string): void {
    if (this.retainWatches.size > 0) for (const w of this.retainWatches) w.add(topic);
  }

  // --- subscriptions: the one door ---------------------------------------------------------

  /**
   * Subscriptions of a session into the router; filters new to this node into the cluster route
   * table. Resolves when every node knows the new routes (a SUBACK after it cannot race a
   * publish on another node); undefined when nothing had to be shared.
   */
  addSubscriptions(s: Session, subs: StoredSubscription[]): Promise<void> | undefined {
    let fresh: string[] | undefined;
    for (const sub of subs) {
      s.subscriptions.set(sub.filter, sub);
      const share = parseShared(sub.filter);
      if (this.router.add(s, sub, share instanceof Error ? undefined : share)) (fresh ??= []).push(sub.filter);
    }
    return fresh ? this.cluster.subscribed(fresh) : undefined;
  }

  /** Remove subscriptions (filters the session did not have are ignored); true per removed. */
  removeSubscriptions(s: Session, filters: string[]): boolean[] {
    const gone: string[] = [];
    const out = filters.map((filter) => {
      if (!s.subscriptions.delete(filter)) return false;
      const share = parseShared(filter);
      if (this.router.remove(s.clientId, filter, share instanceof Error ? undefined : share)) gone.push(filter);
      return true;
    });
    this.cluster.unsubscribed(gone);
    return out;
  }

  removeAllSubscriptions(s: Session): void {
    if (s.subscriptions.size > 0) this.removeSubscriptions(s, [...s.subscriptions.keys()]);
  }

  // --- session lifecycle (sessions.ts) -----------------------------------------------------

  takeSession(clientId: string, clean: boolean): Promise<Attached> {
    return this.registry.attach(clientId, clean);
  }

  persistSession(s: Session, will?: StoredWill): Promise<void> {
    return this.registry.persist(s, will);
  }

  clientClosed(c: Client, publishWill: boolean): void {
    this.clients.delete(c);
    this.connectionLimits.release();
    if (c.admittedAddress !== undefined) this.connectionLimits.releaseAddress(c.admittedAddress);
    if (c.connected) {
      this.stats.connections--;
      this.log.info("client disconnected", {
        clientId: c.clientId, address: c.conn.remote.address, reason: c.reason,
        code: c.closeCode === undefined ? undefined : `0x${c.closeCode.toString(16)}`, will: publishWill && c.will !== undefined,
      });
    }
    this.registry.detach(c, publishWill);
  }

  /** A write of a session's state failed (lost ownership, or the store is away). */
  sessionWriteFailed(s: Session, what: string, e: unknown): void {
    this.registry.failed(s, what, e);
  }

  // --- cluster ------------------------------------------------------------------------------

  /** Join the cluster (when there is one) and take over the stored sessions nobody holds. */
  async start(): Promise<void> {
    const cl = this.cluster;
    if (cl.enabled) {
      await cl.bus.start({
        forwards: (list: Forward[], from: string, drainOf?: string, skip?: (clientId: string) => boolean) => {
          if (drainOf === undefined) this.sys.received(list, from);
          const only = drainOf === undefined ? undefined : this.adopting.get(drainOf);
          if (only === undefined) return cl.deliver(list);
          return cl.deliver(list, skip === undefined ? (id) => only.has(id) : (id) => only.has(id) && !skip(id));
        },
        routes: (node, added, removed, reset) => {
          if (reset) cl.remote.reset(node, added);
          else {
            for (const f of added) cl.remote.add(node, f);
            for (const f of removed) cl.remote.remove(node, f);
          }
        },
        nodeGone: (node) => {
          cl.remote.dropNode(node);
          this.sys.forget(node);
        },
        request: (from: string, req: Request) => this.registry.onRequest(from, req),
        held: (delta) => this.memory.addForwarding(delta),
        reap: async (node) => {
          const ids = await this.registry.adopt(node);
          this.adopting.set(node, new Set(ids));
          return ids;
        },
        buried: (node) => {
          const ids = this.adopting.get(node);
          this.adopting.delete(node);
          if (ids) this.registry.release([...ids]);
        },
        reconnected: (fresh) => this.reassert(fresh),
      });
    }
    await this.registry.start();
    this.sys.start();
  }

  /** Dead nodes being drained here: node -> the client ids adopted from it. */
  private adopting = new Map<string, Set<string>>();

  /** Back in touch with the store: our routes again (and, if it lost its data, our state). */
  private reassert(fresh: boolean): void {
    const cl = this.cluster;
    cl.bus.resetRoutes(this.router.filters()).catch((e) =>
      this.log.warn("routes not re-registered", { error: String(e) })
    );
    if (fresh) this.log.error("the cluster store lost its data; the state of this node's sessions is written again");
    void this.registry.reassert(fresh);
  }

  /**
   * Close a connection because this node stops (or drains, ops/drain.ts): MQTT 5 clients get
   * DISCONNECT 0x8B Server shutting down, or with a Server Reference (--drain-server-reference,
   * else --server-reference) 0x9C Use another server (0x9D Server moved with --server-moved).
   * Not an abnormal end: no will (see close).
   */
  sendAway(c: Client): void {
    const ref = this.config.drainServerReference || this.config.serverReference;
    if (ref === "") {
      c.disconnect(RC.SERVER_SHUTTING_DOWN, "server shutting down", undefined, false);
      return;
    }
    const code = this.config.serverMoved ? RC.SERVER_MOVED : RC.USE_ANOTHER_SERVER;
    c.disconnect(code, `server shutting down; use ${ref}`, { serverReference: ref }, false);
  }

  /**
   * Stop: close every connection (MQTT 5: 0x8B server shutting down), record the sessions as
   * disconnected without wills, leave the cluster (survivors adopt the sessions at once).
   */
  async close(): Promise<void> {
    // A planned shutdown is not an abnormal end of the clients' connections (MQTT 5 §3.1.2.5
    // lists network failure, keepalive expiry, protocol errors and the client closing without
    // DISCONNECT): no wills. Clients reconnect (to this node again or, in a cluster, another).
    this.shuttingDown = true;
    this.sys.stop();
    this.stopWatchingSecurity?.();
    for (const c of [...this.clients]) this.sendAway(c);
    this.flushAll();
    this.wheel.stop();
    this.registry.stop();
    await this.persistence.barrier?.().catch(() => {});
    await this.cluster.bus.leave().catch((e) => this.log.warn("leaving the cluster failed", { error: String(e) }));
    await this.cluster.bus.close();
  }
}
