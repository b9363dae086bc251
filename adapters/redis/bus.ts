/**
 * The cluster bus on Redis: a single Redis, a Sentinel set-up or a Redis Cluster (the seam is
 * src/cluster/bus.ts; key schema in keys.ts, the reasoning for each topology in docs/redis.md).
 *
 * - Inbox per node: a Redis stream. What a node sends to another within one tick is one XADD
 *   (forwarded messages batched, src/cluster/wire.ts), so per-publisher order holds and a QoS 1/2
 *   publisher is acknowledged once the message is in the target's inbox. The owner reads it with
 *   XREAD on a connection of its own, remembers how far everything read is processed and stored
 *   (its cursor) and trims the stream there; the survivor that reaps a dead node drains the rest.
 * - Route table: a set of filters per node, changed by a script that also appends the delta to a
 *   broadcast stream (`bus`, numbered: a node that sees a gap reloads the whole table). Every
 *   node applies a delta and acknowledges it into the sender's inbox; routes() resolves when
 *   every live node has acknowledged (or after one lease: a node that cannot answer is dead).
 * - Leases: a sorted set node -> expiry on the Redis clock, renewed every third of the lease.
 *   A node that finds another's lease lapsed (and has itself been in touch for a whole lease,
 *   so that an outage of Redis does not make everyone look dead) competes for its reap lock; the
 *   winner adopts its sessions, drops its routes everywhere, drains its inbox, deletes its keys.
 * - Ownership: {node, token} per client id changed only by compare-and-set (claim), a CONNECT
 *   lock per client id, and the persistence's fencing (redis.ts) on every session write.
 *
 * Order between nodes. One inbox is one stream on one server, read in order. Between different
 * keys a node's commands are not ordered on Redis Cluster (they go to different shards on
 * different connections), so where the design needs "A's earlier write is in place before B
 * sees A's later message" it waits for the earlier write's reply first:
 * - a route change (or a dead node's removal) is acknowledged only once every forward this node
 *   sent before applying it is stored (afterSends): a node that has all acknowledgements knows
 *   that anything routed the old way is already in the inboxes (subscribe race, takeover,
 *   draining a dead node's inbox);
 * - the answer to "release" is sent only once every write the releasing node made for its
 *   sessions is answered (persistence barrier), so the new owner loads all of it.
 */
import type { RedisPersistence } from "./redis.ts";
import { Buffer } from "node:buffer";
import { setImmediate } from "node:timers";
import type { BusHandler, BusStats, ClusterBus, Expect, Owner, Request } from "../../src/cluster/bus.ts";
import type { StoredMessage } from "../../src/message.ts";
import { decodeForwards, ForwardBatch } from "../../src/cluster/wire.ts";
import { dropConnection, keepScriptsLoaded, type RedisClient, type RedisLogger } from "./connection.ts";
import type { Keys } from "./keys.ts";
import * as lua from "./bus-scripts.ts";

export interface RedisBusOptions {
  /** This node's identity in the cluster (unique per process: "<node-id>#<incarnation>"). */
  nodeId: string;
  /** Lease length; renewed every third of it. */
  leaseMs: number;
  logger: RedisLogger & { debug?: (m: string, f?: Record<string, unknown>) => void };
}

type Arg = string | number | Buffer;
type Call = (...args: Arg[]) => Promise<unknown>;
type Scripts = { [K in keyof typeof lua]: Call };

interface Waiter {
  node: string;
  resolve: () => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface AckWait {
  need: Set<string>;
  resolve: () => void;
  timer: ReturnType<typeof setTimeout>;
}

interface Outgoing {
  batch: ForwardBatch;
  /** Bytes reported to the handler as held for this batch (given back when it is settled). */
  held: number;
  promise: Promise<void>;
  resolve: () => void;
  reject: (e: Error) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const quiet = { info() {}, warn() {}, error() {} };
const READ_COUNT = 500;
/** Appends to one node's inbox in flight at once; more messages wait for one to return. */
const MAX_APPENDS = 8;
/** A batch this large is sent without waiting for the end of the tick. */
const BATCH_BYTES = 256 * 1024;
/** The reconnect backoff cap of connection.ts (the longest a node waits to try again). */
const RECONNECT_BACKOFF_MS = 2000;
const BLOCK_MS = 2000;

function field(fields: Buffer[], name: string): Buffer | undefined {
  for (let i = 0; i < fields.length; i += 2) if (fields[i].toString() === name) return fields[i + 1];
  return undefined;
}

/** Stream ids "ms-seq" compared: negative when a is older than b. */
export function compareIds(a: string, b: string): number {
  const i = a.indexOf("-"), j = b.indexOf("-");
  const d = Number(a.slice(0, i)) - Number(b.slice(0, j));
  return d !== 0 ? d : Number(a.slice(i + 1)) - Number(b.slice(j + 1));
}

function bindScripts(redis: RedisClient): Scripts {
  const s: Record<string, Call> = {};
  for (const [name, def] of Object.entries(lua)) {
    const c = `colibri_bus_${name}`;
    redis.defineCommand(c, { lua: def.lua, numberOfKeys: def.keys });
    s[name] = (redis as unknown as Record<string, Call>)[c].bind(redis);
  }
  return s as Scripts;
}

function bytes(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

export class RedisBus implements ClusterBus {
  readonly clustered = true;
  readonly nodeId: string;
  readonly stats: BusStats = { messagesSent: 0, batchesSent: 0, messagesReceived: 0, batchesReceived: 0 };
  private readonly k: Keys;
  /** Scripts on the persistence's connection (ownership, leases, sending). */
  private readonly s: Scripts;

  private readonly log: RedisBusOptions["logger"];
  private readonly leaseMs: number;
  private handler!: BusHandler;
  /**
   * The lease's own connection: a write waiting for its replicas (WAIT, --redis-wait-replicas)
   * holds up every later command on its connection, and a lease must not wait behind that.
   */
  private ctl: { client: RedisClient; heartbeat: Call } | undefined;
  /**
   * Appends to inboxes (forwards, and the acknowledgements, requests and answers that travel
   * with them, in one order) on a connection of their own, written at once: on the shared
   * connection they waited behind its one auto-pipeline in flight, a whole round trip, and
   * behind persistence writes. Not with --redis-wait-replicas: a WAIT covers the writes of
   * its own connection, and those appends go on the persistence's (replicated()).
   */
  private sender: { client: RedisClient; send: Call } | undefined;
  /** Blocking readers: one for this node's inbox, one for the broadcast stream (two slots). */
  private inboxReader: RedisClient | undefined;
  private busReader: RedisClient | undefined;
  /** node -> lease expiry (Redis clock), and that clock at the last heartbeat. */
  private leases = new Map<string, number>();
  private redisNow = 0;
  private known = new Set<string>();
  private inboxPos = "0-0";
  private busPos = "0-0";
  private busSeq = 0;
  private reqSeq = 0;
  private tokenSeq = 0;
  private lockSeq = 0;
  private replies = new Map<string, Waiter>();
  private acks = new Map<string, AckWait>();
  private earlyAcks = new Map<string, Set<string>>();
  private outbox = new Map<string, Outgoing>();
  /** Appends on their way to each node's inbox (see flushReady), and all of them (afterSends). */
  private appending = new Map<string, number>();
  private appends = new Set<Promise<unknown>>();
  private flushQueued = false;
  private routeBatch: { add: Set<string>; rem: Set<string>; done: Array<[() => void, (e: Error) => void]> } | undefined;
  private commitChain: Promise<unknown> = Promise.resolve();
  private commitTimer: ReturnType<typeof setTimeout> | undefined;
  private pendingCommit: string | undefined;
  private committed = "0-0";
  /** Since when this node has been in touch with Redis without a failed heartbeat. */
  private inTouchSince = Date.now();
  private heartbeatFailed = false;
  private rejoining: Promise<void> | undefined;
  private rejoinAgain = false;
  private reaping = new Set<string>();
  private leaving = new Set<string>();
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private closing = false;
  private epoch = "";
  private started = false;
  private resnap = false;
  private loops: Promise<void>[] = [];

  private readonly cmd: RedisClient;

  constructor(private readonly store: RedisPersistence, opts: RedisBusOptions) {
    const cmd = store.client;
    this.cmd = cmd;
    this.nodeId = opts.nodeId;
    this.k = store.keys;
    this.log = opts.logger;
    this.leaseMs = opts.leaseMs;
    this.s = bindScripts(cmd);
  }

  // --- membership ---------------------------------------------------------------------------

  async start(handler: BusHandler): Promise<void> {
    this.handler = handler;
    const mine = Math.random().toString(36).slice(2, 12);
    await this.cmd.set(this.k.epoch, mine, "NX");
    this.epoch = (await this.cmd.get(this.k.epoch)) ?? mine;
    // the extra connections log nothing of their own: the main one reports Redis's state
    const ctl = await this.store.connectAgain({ logger: quiet });
    this.ctl = { client: ctl, heartbeat: bindScripts(ctl).heartbeat };
    if (!this.store.waitsForReplicas) {
      const sender = await this.store.connectAgain({ autoPipelining: false, logger: quiet });
      this.sender = { client: sender, send: bindScripts(sender).send };
      await keepScriptsLoaded(sender, [lua.send.lua]);
    }
    await keepScriptsLoaded(this.cmd, Object.values(lua).map((d) => d.lua));
    await keepScriptsLoaded(ctl, [lua.heartbeat.lua]);
    await this.heartbeat();
    await this.loadRoutes();
    await this.resetRoutes([]); // announces this node (and creates the broadcast stream)
    const reader = { commandTimeoutMs: BLOCK_MS + 5000, autoPipelining: false, logger: quiet };
    this.inboxReader = await this.store.connectAgain(reader);
    this.busReader = await this.store.connectAgain(reader);
    this.started = true;
    this.loops = [this.inboxLoop(), this.busLoop()];
    this.heartbeatTimer = setInterval(() => void this.tick(), Math.max(100, Math.floor(this.leaseMs / 3)));
    this.cmd.on("ready", this.onReady);
    ctl.on("ready", this.onReady);
    this.log.info("joined the cluster", { member: this.nodeId, peers: this.peers().length });
  }

  private onReady = () => {
    if (!this.started || this.closing) return;
    this.inTouchSince = Date.now();
    void this.rejoin();
  };

  /**
   * Back in touch after an outage (the connection came back, or heartbeats work again after
   * failing: on a Redis Cluster a shard can fail over while the client stays connected): same
   * store or an empty one? Lease, routes, then the host. One at a time.
   */
  private rejoin(): Promise<void> {
    if (this.rejoining) {
      this.rejoinAgain = true;
      return this.rejoining;
    }
    this.rejoining = (async () => {
      do {
        this.rejoinAgain = false;
        await this.rejoinOnce();
      } while (this.rejoinAgain && !this.closing);
    })().finally(() => (this.rejoining = undefined));
    return this.rejoining;
  }

  private async rejoinOnce(): Promise<void> {
    try {
      const v = await this.cmd.get(this.k.epoch);
      const fresh = v !== this.epoch;
      if (fresh) {
        if (v === null) await this.cmd.set(this.k.epoch, this.epoch, "NX");
        this.epoch = (await this.cmd.get(this.k.epoch)) ?? this.epoch;
        this.log.error("the Redis store lost its data (restarted empty?); writing this node's state again", { member: this.nodeId });
      }
      await this.heartbeat();
      await this.loadRoutes();
      this.handler.reconnected(fresh);
    } catch (e) {
      // still down: the next reconnect rejoins; up (a Redis Cluster that is back but still
      // connecting to some of its nodes): again in a second
      const up = this.cmd.status === "ready";
      this.log.warn(`rejoining the cluster failed; retried ${up ? "in a second" : "on the next reconnect"}`, { error: String((e as Error)?.message ?? e) });
      if (up) {
        setTimeout(() => {
          if (!this.closing) void this.rejoin();
        }, 1000);
      }
    }
  }

  private async tick(): Promise<void> {
    if (this.closing) return;
    try {
      await this.heartbeat();
    } catch {
      // the connection's own logging says why; the lease is renewed when it is back
      this.heartbeatFailed = true;
      return;
    }
    if (this.heartbeatFailed) {
      this.heartbeatFailed = false;
      this.inTouchSince = Date.now();
      void this.rejoin();
    }
    // after (re)connecting, every other node gets a whole lease plus its reconnect backoff to
    // renew before anyone is declared dead (an outage of Redis is not the death of every node)
    const settled = Date.now() - this.inTouchSince >= this.leaseMs * 4 / 3 + RECONNECT_BACKOFF_MS;
    for (const [node, exp] of this.leases) {
      if (node === this.nodeId || exp > this.redisNow || this.reaping.has(node)) continue;
      if (settled || this.leaving.has(node)) void this.tryReap(node);
    }
  }

  private async heartbeat(): Promise<void> {
    // the live marker (appends to this node's inbox check it) is written before the first
    // lease, then again with each renewal (it lives in this node's slot, maybe another shard:
    // its failure is not the lease's)
    const ctl = this.ctl!;
    const live = ctl.client.set(this.k.live(this.nodeId), "1");
    if (!this.started) await live;
    else live.catch(() => {});
    const r = await ctl.heartbeat(this.k.nodes, this.nodeId, this.leaseMs) as string[];
    const before = this.redisNow;
    this.redisNow = Number(r[0]);
    const leases = new Map<string, number>();
    for (let i = 1; i < r.length; i += 2) leases.set(r[i], Number(r[i + 1]));
    for (const [node, exp] of leases) {
      const was = this.leases.get(node);
      if (exp <= this.redisNow && (was === undefined || was > before) && node !== this.nodeId) {
        this.nodeDown(node);
      }
    }
    for (const [node, exp] of leases) {
      if (!this.leases.has(node) && node !== this.nodeId && exp > this.redisNow) this.log.info("node joined", { peer: node });
    }
    this.leases = leases;
  }

  /** A node's lease lapsed: nobody waits for its answers any more. */
  private nodeDown(node: string): void {
    this.log.warn("node lease lapsed", { peer: node });
    for (const [id, w] of this.acks) {
      w.need.delete(node);
      if (w.need.size === 0) this.ackDone(id);
    }
    for (const [id, w] of this.replies) {
      if (w.node !== node) continue;
      this.replies.delete(id);
      clearTimeout(w.timer);
      w.reject(new Error(`node ${node} is dead (its lease lapsed)`));
    }
  }

  /**
   * A client of `node` reconnects here while the node still owns its session: if its lease has
   * lapsed, reap it now (without the settling time after an outage: a client coming back is a
   * sign the node is gone, not the store). Resolves with whether the node is (now) dead.
   */
  async suspect(node: string): Promise<boolean> {
    await this.heartbeat().catch(() => {});
    if (this.isLive(node)) return false;
    if (!this.reaping.has(node)) void this.tryReap(node);
    return true;
  }

  peers(): string[] {
    const out: string[] = [];
    for (const [node, exp] of this.leases) if (node !== this.nodeId && exp > this.redisNow) out.push(node);
    return out;
  }

  isLive(node: string): boolean {
    if (node === this.nodeId) return true;
    const exp = this.leases.get(node);
    return exp !== undefined && exp > this.redisNow;
  }

  private async tryReap(node: string): Promise<void> {
    this.reaping.add(node);
    try {
      const won = await this.s.reapLock(this.k.reap(node), this.k.nodes, node, this.nodeId, this.leaseMs * 20 + 60_000);
      if (won !== 1) return;
      const t0 = Date.now();
      this.log.warn("node declared dead; adopting its sessions", { peer: node, reaper: this.nodeId });
      const ids = await this.handler.reap(node);
      await this.bury(node);
      this.leaving.delete(node);
      this.log.info("dead node's sessions adopted and its inbox drained", { peer: node, sessions: ids.length, ms: Date.now() - t0 });
    } catch (e) {
      this.log.error("reaping a dead node failed; retried", { peer: node, error: String((e as Error)?.message ?? e) });
    } finally {
      this.reaping.delete(node);
    }
  }

  async bury(node: string): Promise<void> {
    const peers = this.peers();
    const id = await this.s.forget(this.k.routes(node), this.k.bus, this.k.busSeq, node, this.nodeId) as string;
    this.handler.nodeGone(node);
    this.known.delete(node);
    // every peer acknowledges once what it sent before it forgot the node is in its inbox, and
    // this node's own forwards to it are in too (they may be on another shard than the forget)
    await Promise.all([this.awaitAcks(id, peers), this.afterSends()]);
    // what the dead node stored in each session group before it died: those recipients are
    // skipped below (their state has the message already, and may have acknowledged it since)
    const stored = new Map<number, string>();
    await this.store.eachGroup(async (g) => {
      const pos = await this.cmd.hget(g.cursors, node);
      if (pos !== null) stored.set(g.index, pos);
    });
    // no node sends to it any more: what its inbox holds past its cursor goes to the adopted
    // sessions (held there behind it until released: the deliveries settle after that)
    let pos = (await this.cmd.get(this.k.cursor(node))) ?? "0-0";
    const work: Promise<unknown>[] = [];
    for (;;) {
      const entries = await this.cmd.xrangeBuffer(this.k.inbox(node), "(" + pos, "+", "COUNT", READ_COUNT) as
        unknown as Array<[Buffer, Buffer[]]>;
      if (entries.length === 0) break;
      for (const [idb, fields] of entries) {
        const at = pos = idb.toString();
        if (field(fields, "k")?.toString() !== "f") continue;
        const skip = stored.size === 0 ? undefined : (cid: string) => {
          const have = stored.get(this.k.group(cid).index);
          return have !== undefined && compareIds(have, at) >= 0;
        };
        const r = this.handler.forwards(decodeForwards(field(fields, "d")!), field(fields, "s")!.toString(), node, skip);
        if (r) work.push(r);
      }
    }
    this.handler.buried(node);
    // the inbox goes only once what it held is stored with the sessions
    await Promise.allSettled(work);
    await this.cmd.del(this.k.inbox(node), this.k.cursor(node), this.k.live(node));
    await this.store.eachGroup(async (g) => {
      await Promise.all([this.cmd.del(g.owned(node)), this.cmd.hdel(g.cursors, node)]);
    });
    await this.s.unlist(this.k.nodes, this.k.reap(node), node);
    this.leases.delete(node);
  }

  async leave(): Promise<void> {
    if (!this.started || this.closing) return;
    clearInterval(this.heartbeatTimer); // no lease renewed after this: survivors reap at once
    this.flushOutbox();
    await this.afterSends(); // (on their own connection: stored before the leave is)
    await this.commitNow();
    await this.s.leave(this.k.nodes, this.k.bus, this.k.busSeq, this.nodeId);
    this.log.info("left the cluster", { member: this.nodeId });
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.commitTimer);
    this.cmd.off("ready", this.onReady);
    this.ctl?.client.off("ready", this.onReady);
    for (const w of this.replies.values()) {
      clearTimeout(w.timer);
      w.reject(new Error("bus closed"));
    }
    this.replies.clear();
    for (const id of [...this.acks.keys()]) this.ackDone(id);
    // the readers only read: dropped at once (a quit would wait behind a blocked XREAD)
    for (const r of [this.inboxReader, this.busReader, this.ctl?.client, this.sender?.client]) if (r) dropConnection(r);
    await Promise.all(this.loops.map((l) => l.catch(() => {})));
  }

  // --- routes -------------------------------------------------------------------------------

  /** Load the whole route table; the broadcast stream is read from just before it. */
  private async loadRoutes(): Promise<void> {
    const last = await this.cmd.xrevrangeBuffer(this.k.bus, "+", "-", "COUNT", 1) as unknown as Array<[Buffer, Buffer[]]>;
    if (last.length > 0) {
      this.busPos = last[0][0].toString();
      this.busSeq = Number(field(last[0][1], "q")?.toString() ?? 0);
    } else {
      this.busPos = "0-0";
      this.busSeq = Number((await this.cmd.get(this.k.busSeq)) ?? 0);
    }
    const nodes = (await this.cmd.zrange(this.k.nodes, 0, -1)).filter((n) => n !== this.nodeId);
    const sets = await Promise.all(nodes.map((n) => this.cmd.smembers(this.k.routes(n))));
    for (const gone of this.known) if (!nodes.includes(gone)) this.handler.nodeGone(gone);
    this.known = new Set(nodes);
    nodes.forEach((n, i) => this.handler.routes(n, sets[i], [], true));
  }

  routes(added: string[], removed: string[]): Promise<void> {
    const b = this.routeBatch ??= { add: new Set(), rem: new Set(), done: [] };
    for (const f of added) {
      b.rem.delete(f);
      b.add.add(f);
    }
    for (const f of removed) {
      b.add.delete(f);
      b.rem.add(f);
    }
    return new Promise((resolve, reject) => {
      b.done.push([resolve, reject]);
      if (b.done.length === 1) queueMicrotask(() => void this.flushRoutes());
    });
  }

  private async flushRoutes(): Promise<void> {
    const b = this.routeBatch;
    this.routeBatch = undefined;
    if (!b) return;
    try {
      const peers = this.peers();
      const add = [...b.add];
      const rem = [...b.rem];
      const id = await this.s.routes(
        this.k.routes(this.nodeId), this.k.bus, this.k.busSeq, this.nodeId, "0",
        JSON.stringify({ added: add, removed: rem }), "+", ...add, "-", ...rem,
      ) as string;
      // a removal needs no wait: a message still sent here for it finds no subscriber
      if (add.length > 0) await this.awaitAcks(id, peers);
      for (const [resolve] of b.done) resolve();
    } catch (e) {
      const err = new Error(`route change not stored: ${(e as Error)?.message ?? e}`);
      for (const [, reject] of b.done) reject(err);
    }
  }

  async resetRoutes(filters: string[]): Promise<void> {
    await this.s.routes(
      this.k.routes(this.nodeId), this.k.bus, this.k.busSeq, this.nodeId, "1",
      JSON.stringify({ added: filters, removed: [], reset: true }), "+", ...filters,
    );
  }

  private awaitAcks(id: string, peers: string[]): Promise<void> {
    const need = new Set(peers.filter((p) => this.isLive(p)));
    const early = this.earlyAcks.get(id);
    if (early) {
      for (const n of early) need.delete(n);
      this.earlyAcks.delete(id);
    }
    if (need.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const w = this.acks.get(id);
        if (w && w.need.size > 0) {
          this.log.warn("route change not acknowledged in time by", { peers: [...w.need].join(","), entry: id });
        }
        this.ackDone(id);
      }, this.leaseMs);
      this.acks.set(id, { need, resolve, timer });
    });
  }

  private ackDone(id: string): void {
    const w = this.acks.get(id);
    if (!w) return;
    this.acks.delete(id);
    clearTimeout(w.timer);
    w.resolve();
  }

  private onAck(id: string, from: string): void {
    const w = this.acks.get(id);
    if (!w) {
      // the ack overtook the script's own reply (two connections): kept for a moment
      let set = this.earlyAcks.get(id);
      if (!set) {
        this.earlyAcks.set(id, set = new Set());
        setTimeout(() => this.earlyAcks.delete(id), this.leaseMs * 2);
      }
      set.add(from);
      return;
    }
    w.need.delete(from);
    if (w.need.size === 0) this.ackDone(id);
  }

  /**
   * Acknowledge a broadcast entry once every forward this node sent before is stored in its
   * target's inbox (those may be on other shards than the sender's inbox: without this wait
   * the acknowledgement could arrive first).
   */
  private acknowledge(to: string, entry: string): void {
    const post = () => void this.post(to, "a", entry).catch(() => {});
    const sent = this.afterSends();
    if (sent === undefined) post();
    else void sent.then(post);
  }

  /** Settles once every forward sent (or batched) before now is stored or failed; undefined: none. */
  private afterSends(): Promise<unknown> | undefined {
    const pending: Promise<unknown>[] = [...this.appends];
    for (const o of this.outbox.values()) pending.push(o.promise);
    return pending.length === 0 ? undefined : Promise.allSettled(pending);
  }

  // --- inbox --------------------------------------------------------------------------------

  send(node: string, msg: StoredMessage, publisher: string | undefined, plain: boolean, shares?: string[]): Promise<void> {
    let o = this.outbox.get(node);
    if (o === undefined) {
      let resolve!: () => void;
      let reject!: (e: Error) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      // callers that do not wait for it (QoS 0) leave it unhandled: the failure is logged here
      promise.catch((e) => this.log.debug?.("forwarded messages not stored", { node, error: String((e as Error)?.message ?? e) }));
      o = { batch: new ForwardBatch(), held: 0, promise, resolve, reject };
      this.outbox.set(node, o);
    }
    const before = o.batch.size;
    o.batch.add(msg, publisher, plain, shares);
    const grew = o.batch.size - before;
    o.held += grew;
    this.handler.held(grew);
    if (o.batch.size >= BATCH_BYTES && (this.appending.get(node) ?? 0) < MAX_APPENDS) {
      // a large batch goes at once: stream entries stay bounded, and Redis and the target node
      // start on it while this tick goes on
      this.outbox.delete(node);
      this.append(node, o);
    } else if (!this.flushQueued) {
      this.flushQueued = true;
      setImmediate(this.flushReady);
    }
    return o.promise;
  }

  /**
   * Batches go out once the event loop has handled the input at hand (setImmediate, not a
   * microtask: the publishes of every socket read in this turn of the loop share one batch per
   * target node, a third of the appends of a batch per read); while MAX_APPENDS are on their
   * way to a node, its messages gather in the next batch (under load a batch holds what arrived
   * during one Redis round trip: fewer, larger appends, and no extra latency when idle).
   */
  private flushReady = (): void => {
    this.flushQueued = false;
    for (const [node, o] of this.outbox) {
      if ((this.appending.get(node) ?? 0) >= MAX_APPENDS) continue;
      this.outbox.delete(node);
      this.append(node, o);
    }
  };

  /** Everything waiting goes now (leaving). */
  private flushOutbox(): void {
    for (const [node, o] of this.outbox) this.append(node, o);
    this.outbox.clear();
  }

  private append(node: string, o: Outgoing): void {
    this.stats.batchesSent++;
    this.stats.messagesSent += o.batch.count;
    this.appending.set(node, (this.appending.get(node) ?? 0) + 1);
    const done = () => {
      this.handler.held(-o.held);
      o.held = 0;
      this.appending.set(node, this.appending.get(node)! - 1);
      this.appends.delete(p);
      if (this.outbox.has(node) && !this.flushQueued) {
        this.flushQueued = true;
        queueMicrotask(this.flushReady);
      }
    };
    const inbox = this.k.inbox(node);
    const p = this.store.replicated(this.appendTo(inbox, this.k.live(node), "f", bytes(o.batch.bytes())), inbox);
    this.appends.add(p);
    p.then(
      (r) => {
        done();
        if (r === 0) o.reject(new Error(`node ${node} has left the cluster`));
        else o.resolve();
      },
      (e) => {
        done();
        o.reject(new Error(`forward to node ${node} not stored: ${(e as Error)?.message ?? e}`));
      },
    );
  }

  request(node: string, req: Request, timeoutMs: number): Promise<void> {
    if (!this.isLive(node)) return Promise.reject(new Error(`node ${node} is not live`));
    const id = `${this.nodeId}:${++this.reqSeq}`;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.replies.delete(id);
        reject(new Error(`node ${node} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.replies.set(id, { node, resolve, reject, timer });
      this.post(node, "q", JSON.stringify({ id, req })).then((r) => {
        if (r === 0) {
          clearTimeout(timer);
          this.replies.delete(id);
          reject(new Error(`node ${node} has left the cluster`));
        }
      }, (e) => {
        clearTimeout(timer);
        this.replies.delete(id);
        reject(e);
      });
    });
  }

  private post(node: string, kind: string, data: string): Promise<unknown> {
    return this.appendTo(this.k.inbox(node), this.k.live(node), kind, data);
  }

  /** One entry into a node's inbox (if the node is live): 1, or 0 when it is not. */
  private appendTo(inbox: string, live: string, kind: string, data: string | Buffer): Promise<unknown> {
    return (this.sender?.send ?? this.s.send)(inbox, live, kind, this.nodeId, data);
  }

  private async answer(from: string, id: string, req: Request): Promise<void> {
    let error: string | undefined;
    try {
      await this.handler.request(from, req);
    } catch (e) {
      error = String((e as Error)?.message ?? e);
    }
    // sent after every write the request caused was answered (the handler's barrier)
    await this.post(from, "r", JSON.stringify({ id, error })).catch(() => {});
  }

  /**
   * Read one stream: the next read is sent before a result is handled, so that what arrives
   * meanwhile waits in Redis for no round trip of ours. After a failed read the stream's tail
   * is checked first: a failover that lost its last entries (asynchronous replication) leaves
   * a tail older than our position, and a read from there would wait for ids it never sees.
   */
  private async readLoop(
    reader: () => RedisClient,
    key: string,
    pos: () => string,
    lost: (tail: string | undefined) => Promise<void>,
    handle: (entries: Array<[Buffer, Buffer[]]>) => void,
    before?: () => Promise<boolean>,
  ): Promise<void> {
    type Result = Array<[Buffer, Array<[Buffer, Buffer[]]>]> | null;
    const read = (from: string) =>
      reader().xreadBuffer("COUNT", READ_COUNT, "BLOCK", BLOCK_MS, "STREAMS", key, from) as unknown as Promise<Result>;
    let next: Promise<Result> | undefined;
    let check = false;
    while (!this.closing) {
      let res: Result;
      try {
        if (before && await before()) {
          if (next) await next.catch(() => null); // read from the old position: dropped
          next = undefined;
        }
        if (check) {
          const tail = await this.cmd.xrevrange(key, "+", "-", "COUNT", 1);
          const last = tail[0]?.[0];
          if (last === undefined ? pos() !== "0-0" : compareIds(last, pos()) < 0) await lost(last);
          check = false;
        }
        res = await (next ?? read(pos()));
        next = undefined;
      } catch {
        next = undefined;
        check = true;
        if (this.closing) break;
        await sleep(200);
        continue;
      }
      if (!res) continue;
      const entries = res[0]?.[1] ?? [];
      if (entries.length === 0) continue;
      if (!this.closing) {
        next = read(entries[entries.length - 1][0].toString());
        next.catch(() => {}); // handled when awaited
      }
      handle(entries);
    }
  }

  private inboxLoop(): Promise<void> {
    return this.readLoop(
      () => this.inboxReader!,
      this.k.inbox(this.nodeId),
      () => this.inboxPos,
      async (tail) => {
        // entries past our position were lost: read again from the stored cursor (what was
        // read and stored before it is not read twice; what is after it may be, never lost)
        const cur = (await this.cmd.get(this.k.cursor(this.nodeId))) ?? "0-0";
        this.log.warn("inbox lost its last entries (Redis failover or restart); reading again from the stored cursor", {
          member: this.nodeId, position: this.inboxPos, tail: tail ?? "none", cursor: cur,
        });
        this.inboxPos = cur;
        this.committed = cur;
      },
      (entries) => this.onInbox(entries),
    );
  }

  private busLoop(): Promise<void> {
    return this.readLoop(
      () => this.busReader!,
      this.k.bus,
      () => this.busPos,
      async () => {
        this.resnap = true; // the broadcast stream lost entries: the whole table again
      },
      (entries) => this.onBus(entries),
      async () => {
        if (!this.resnap) return false;
        this.resnap = false;
        await this.loadRoutes();
        return true;
      },
    );
  }

  private onInbox(entries: Array<[Buffer, Buffer[]]>): void {
    const work: Promise<unknown>[] = [];
    for (const [idb, fields] of entries) {
      const id = idb.toString();
      this.inboxPos = id;
      const kind = field(fields, "k")?.toString();
      const from = field(fields, "s")?.toString() ?? "";
      const data = field(fields, "d");
      if (data === undefined) continue;
      try {
        if (kind === "f") {
          const list = decodeForwards(data);
          this.stats.batchesReceived++;
          this.stats.messagesReceived += list.length;
          const r = this.handler.forwards(list, from);
          if (r) work.push(r);
        } else if (kind === "q") {
          const { id: rid, req } = JSON.parse(data.toString()) as { id: string; req: Request };
          void this.answer(from, rid, req);
        } else if (kind === "r") {
          const { id: rid, error } = JSON.parse(data.toString()) as { id: string; error?: string };
          const w = this.replies.get(rid);
          if (w) {
            this.replies.delete(rid);
            clearTimeout(w.timer);
            if (error) w.reject(new Error(error));
            else w.resolve();
          }
        } else if (kind === "a") {
          this.onAck(data.toString(), from);
        }
      } catch (e) {
        this.log.error("inbox entry not processed", { from, kind, error: String((e as Error)?.message ?? e) });
      }
    }
    if (entries.length === 0) return;
    const last = this.inboxPos;
    // the enqueues these messages caused (this tick) store the position with them, atomically
    // in each session group they went to
    this.store.stageCursor(this.nodeId, last);
    const settled = Promise.allSettled(work);
    this.commitChain = this.commitChain.then(() => settled).then(() => this.scheduleCommit(last));
  }

  private scheduleCommit(id: string): void {
    this.pendingCommit = id;
    if (this.commitTimer !== undefined) return;
    this.commitTimer = setTimeout(() => {
      this.commitTimer = undefined;
      void this.commitNow();
    }, 20);
  }

  private async commitNow(): Promise<void> {
    await this.commitChain;
    const id = this.pendingCommit;
    if (id === undefined || id === this.committed) return;
    this.pendingCommit = undefined;
    try {
      await this.s.commit(this.k.cursor(this.nodeId), this.k.inbox(this.nodeId), id);
      this.committed = id;
    } catch {
      this.pendingCommit ??= id; // retried with the next one
    }
  }

  private onBus(entries: Array<[Buffer, Buffer[]]>): void {
    for (const [idb, fields] of entries) {
      const id = idb.toString();
      this.busPos = id;
      const seq = Number(field(fields, "q")?.toString() ?? 0);
      if (seq !== this.busSeq + 1) this.resnap = true; // missed (trimmed) or the store restarted
      this.busSeq = seq;
      const kind = field(fields, "k")?.toString();
      const from = field(fields, "s")?.toString() ?? "";
      const data = field(fields, "d")?.toString() ?? "";
      if (from === this.nodeId) continue;
      try {
        if (kind === "r") {
          const d = JSON.parse(data) as { added: string[]; removed: string[]; reset?: boolean };
          this.known.add(from);
          this.handler.routes(from, d.added, d.removed, d.reset === true);
          this.acknowledge(from, id);
        } else if (kind === "g") {
          this.known.delete(data);
          this.handler.nodeGone(data);
          this.acknowledge(from, id);
        } else if (kind === "l") {
          this.leaving.add(data);
          void this.tick();
        }
      } catch (e) {
        this.log.error("bus entry not processed", { from, kind, error: String((e as Error)?.message ?? e) });
      }
    }
  }

  // --- ownership ----------------------------------------------------------------------------

  async lock(clientId: string, waitMs: number): Promise<string | undefined> {
    const value = `${this.nodeId}:${++this.lockSeq}`;
    const deadline = Date.now() + waitMs;
    const ttl = Math.max(10_000, waitMs * 3);
    const key = this.k.group(clientId).lock(clientId);
    for (let delay = 5;; delay = Math.min(delay * 2, 100)) {
      if (await this.cmd.set(key, value, "PX", ttl, "NX")) return value;
      if (Date.now() >= deadline) return undefined;
      await sleep(delay);
    }
  }

  async unlock(clientId: string, lock: string): Promise<void> {
    await this.s.unlock(this.k.group(clientId).lock(clientId), lock);
  }

  async owner(clientId: string): Promise<Owner | undefined> {
    const [node, token] = await this.cmd.hmget(this.k.group(clientId).owner(clientId), "n", "t");
    return node && token ? { node, token } : undefined;
  }

  async claim(clientId: string, expect: Expect): Promise<string | undefined> {
    const token = `${this.nodeId}.${(++this.tokenSeq).toString(36)}`;
    const [mode, expected] = expect === null ? ["none", ""] : expect === "any" ? ["any", ""]
      : typeof expect === "string" ? ["token", expect] : ["node", expect.node];
    const g = this.k.group(clientId);
    const key = g.owner(clientId);
    const r = await this.store.replicated(this.s.claim(key, g.owned(this.nodeId), this.nodeId, token, mode, expected, clientId), key);
    return typeof r === "string" ? r : undefined;
  }

  async disown(clientId: string, token: string): Promise<void> {
    const g = this.k.group(clientId);
    await this.s.disown(g.owner(clientId), g.owned(this.nodeId), token, clientId);
  }

  async owned(node: string): Promise<string[]> {
    const out: string[] = [];
    await this.store.eachGroup(async (g) => {
      for (const id of await this.cmd.smembers(g.owned(node))) out.push(id);
    });
    return out;
  }
}
