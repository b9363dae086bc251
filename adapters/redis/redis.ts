/**
 * Redis persistence (ioredis) on a single Redis, a Sentinel set-up or a Redis Cluster. Key
 * schema: keys.ts and docs/redis.md. Connection policy (fail fast at start, reconnect while
 * running, never buffer or resend a write): connection.ts.
 *
 * Round trips, thanks to auto-pipelining (calls issued in one tick leave in one write per
 * server) and to one command per operation (Lua for anything multi-key):
 * - QoS 1 publish to N persistent sessions: the N enqueue calls of one tick are one script
 *   call per session group (one group on a single Redis: 1 call; on Redis Cluster at most one
 *   per group the N sessions fall in, each sent to its shard), the body sent once per group;
 *   the PUBACKs handled in one tick are one removeEntries call per group. So a QoS 1 message
 *   to N online persistent subscribers costs 2 round trips in all, shared with every other
 *   message and acknowledgement of the same ticks.
 * - putRetained / deleteRetained: 1. matchRetained: 1 or a few reads in chunks (+1 only when
 *   it finds expired ones).
 * - with --redis-wait-replicas N, every write a client acknowledgement depends on is followed
 *   by one WAIT per server per tick (see replicated()).
 */
import type { Redis } from "ioredis";
import { Buffer } from "node:buffer";
import {
  FencedError,
  type OutgoingEntry,
  type Persistence,
  type RetainedQuota,
  RetainedQuotaError,
  type SessionRecord,
  type StoredMessage,
  type StoredSubscription,
} from "../../src/persistence/persistence.ts";
import { topicMatches } from "../../src/routing/topic.ts";
import {
  decodeEntry,
  decodeMessage,
  decodeSession,
  decodeSubscription,
  encodeEntry,
  encodeMessage,
  encodeSession,
  encodeSubscription,
  headerLength,
} from "./codec.ts";
import {
  closeRedis,
  type ConnectionOptions,
  describeTarget,
  isCluster,
  keepScriptsLoaded,
  openRedis,
  type RedisClient,
} from "./connection.ts";
import { GROUPS, type Group, Keys, slotOf } from "./keys.ts";
import * as lua from "./scripts.ts";
import { spread } from "./lua.ts";

export interface RedisPersistenceOptions extends ConnectionOptions {
  /** Prepended to every key, e.g. "colibri:". */
  prefix: string;
  /** Clock for message expiry (default Date.now). */
  now?: () => number;
  /** Acknowledge only once this many replicas have the write (WAIT); default 0. */
  waitReplicas?: number;
  /**
   * Session groups (keys.ts); default 1 on a single Redis or Sentinel, GROUPS on a Redis
   * Cluster. Other values only for measurements (scripts/bench/redis-footprint.ts).
   */
  groups?: number;
  /**
   * Where a queued message's body is stored: once per session group, shared by the group's
   * sessions that have it queued (default), or once per session with its entry. The second
   * exists to be measured against the first (docs/redis.md, scripts/bench/redis-footprint.ts).
   */
  bodies?: "group" | "session";
}

type Arg = string | number | Buffer;
type Call = (...args: Arg[]) => Promise<unknown>;
type Scripts = { [K in keyof typeof lua]: Call } & { readQueueB: Call };

/** A message body outlives its expiry by this much in Redis (PEXPIREAT safety net only). */
const BODY_GRACE_MS = 60_000;
/** How many message bodies to remember as "sent already" (saves re-sending on fan-out). */
const BODY_MEMORY = 4096;
/** SSCAN / HSCAN batch for iterations, and the chunk of reads by key lists. */
const SCAN_BATCH = 500;
/** Entries (or acknowledgements) per script call at most: bounds the time Redis spends in one. */
const MAX_BATCH = 1000;
/** Groups read at once while iterating every group (startup, reaping). */
const GROUP_CONCURRENCY = 256;
/** How long a write waits for its replicas (--redis-wait-replicas) before it counts as failed. */
const WAIT_MS = 2000;

interface Enqueue {
  clientId: string;
  entries: OutgoingEntry[];
  resolve: () => void;
  reject: (e: unknown) => void;
}

interface Removals {
  /** cid, message id, fencing token per acknowledgement. */
  args: string[];
  done: Array<{ clientId: string; resolve: () => void; reject: (e: unknown) => void }>;
}

export class RedisPersistence implements Persistence {
  readonly name: string;
  /** The key schema (shared with the cluster bus). */
  readonly keys: Keys;
  private readonly s: Scripts;
  private readonly now: () => number;
  private readonly replicas: number;
  /** Body keys this instance sent recently: later enqueues send the id only. If the body is
   *  gone after all, the script says so and the call is repeated with the body. */
  private readonly bodies = new Set<string>();
  /** The same keys in insertion order, a ring: the oldest is forgotten in O(1) (a Map's first
   *  key is not: after many deletions at its head, finding it walks the holes, 15 % of a QoS 1
   *  profile). */
  private readonly bodyRing: string[] = new Array(BODY_MEMORY);
  private bodyNext = 0;
  /** Ownership tokens this node holds (cluster fencing, see fence()): client id -> token. */
  private readonly fences = new Map<string, string>();
  /** Body keys per session instead of per group (RedisPersistenceOptions.bodies). */
  private readonly bodyPerSession: boolean;
  /** The same as the scripts' PER_SESSION argument (scripts.ts DERIVE). */
  private readonly bodyMode: "1" | "";
  /** Writes sent and not answered yet (barrier). */
  private readonly inflight = new Set<Promise<unknown>>();
  /** A WAIT per server not sent yet, which writes answered meanwhile join (replicated). */
  private readonly waits = new Map<Redis, Promise<void>>();

  /** Connect (one attempt, bounded) and return the backend; rejects naming where it tried. */
  static async connect(opts: RedisPersistenceOptions): Promise<RedisPersistence> {
    const redis = await openRedis(opts);
    try {
      await keepScriptsLoaded(redis, Object.values(lua).map((d) => d.lua)).catch((e) => {
        throw new Error(`redis persistence: scripts not loaded: ${(e as Error).message}`, { cause: e });
      });
      const groups = opts.groups ?? (isCluster(redis) ? GROUPS : 1);
      await checkLayout(redis, new Keys(opts.prefix, 1).layout, groups, describeTarget(opts), opts.prefix);
      return new RedisPersistence(redis, opts, new Keys(opts.prefix, groups));
    } catch (e) {
      await closeRedis(redis);
      throw e;
    }
  }

  /** The connection (auto-pipelined); the cluster bus sends through it too. */
  get client(): RedisClient {
    return this.redis;
  }

  /** Another connection to the same Redis (the bus's blocking readers). */
  connectAgain(over: Partial<ConnectionOptions>): Promise<RedisClient> {
    return openRedis({ ...this.opts, ...over });
  }

  private constructor(private readonly redis: RedisClient, private readonly opts: RedisPersistenceOptions, keys: Keys) {
    this.name = `redis ${describeTarget(opts)} prefix=${opts.prefix}`;
    this.keys = keys;
    this.now = opts.now ?? Date.now;
    this.replicas = opts.waitReplicas ?? 0;
    this.bodyPerSession = opts.bodies === "session";
    this.bodyMode = this.bodyPerSession ? "1" : "";
    const s: Record<string, Call> = {};
    for (const [name, def] of Object.entries(lua)) {
      const cmd = `colibri_${name}`;
      redis.defineCommand(cmd, { lua: def.lua, numberOfKeys: def.keys });
      const r = redis as unknown as Record<string, Call>;
      s[name] = r[cmd].bind(redis);
      s[name + "B"] = r[cmd + "Buffer"].bind(redis);
    }
    this.s = s as Scripts;
  }

  private fail(op: string, clientId?: string): (e: unknown) => never {
    return (e) => {
      if (clientId !== undefined && /\bFENCED\b/.test((e as Error)?.message ?? "")) throw new FencedError(clientId);
      throw new Error(`redis persistence ${op} failed: ${(e as Error).message ?? e}`, { cause: e });
    };
  }

  /** Prefix of the body keys a session's entries name (scripts derive the keys from it). */
  private bodyPrefix(g: Group, cid: string): string {
    // the id's length in bytes, as the scripts measure it (scripts.ts DERIVE)
    return this.bodyPerSession ? `${g.msgPrefix}${Buffer.byteLength(cid)}:${cid}:` : g.msgPrefix;
  }

  /** A write: counted until answered (barrier). */
  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    const done = () => this.inflight.delete(p);
    p.then(done, done);
    return p;
  }

  /**
   * A write a client's acknowledgement depends on: with --redis-wait-replicas N it counts as
   * done only once N replicas have it (WAIT on the connection that sent it, after its reply:
   * every write answered before the WAIT is sent is covered by it; one WAIT per server per tick).
   */
  /** Whether writes wait for replicas (--redis-wait-replicas): replicated() then sends a WAIT. */
  get waitsForReplicas(): boolean {
    return this.replicas > 0;
  }

  async replicated<T>(p: Promise<T>, key: string): Promise<T> {
    const v = await p;
    if (this.replicas > 0) await this.waitReplicas(key);
    return v;
  }

  private waitReplicas(key: string): Promise<void> {
    const server = this.serverFor(key);
    if (server === undefined) return Promise.reject(new Error(`no Redis master known for the slot of ${key}`));
    let w = this.waits.get(server);
    if (w === undefined) {
      w = new Promise<void>((resolve, reject) => {
        queueMicrotask(() => {
          this.waits.delete(server);
          server.wait(this.replicas, WAIT_MS).then((n) => {
            if (n >= this.replicas) resolve();
            else reject(new Error(`the write reached ${n} of ${this.replicas} replicas within ${WAIT_MS} ms (--redis-wait-replicas)`));
          }, reject);
        });
      });
      this.waits.set(server, w);
    }
    return w;
  }

  /** The server that holds a key: the connection, or on a Cluster the master of its slot. */
  private serverFor(key: string): Redis | undefined {
    const r = this.redis;
    if (!isCluster(r)) return r;
    const master = r.slots[slotOf(key)]?.[0];
    if (master === undefined) return undefined;
    return r.nodes("master").find((n) => `${n.options.host}:${n.options.port}` === master);
  }

  // --- health -----------------------------------------------------------------------------

  get connected(): boolean {
    return this.redis.status === "ready";
  }

  async ping(): Promise<void> {
    await this.redis.ping();
  }

  // --- cluster fencing --------------------------------------------------------------------

  fence(clientId: string, token: string | undefined, ifCurrent?: string): void {
    if (ifCurrent !== undefined && this.fences.get(clientId) !== ifCurrent) return;
    if (token === undefined) this.fences.delete(clientId);
    else this.fences.set(clientId, token);
  }

  private token(clientId: string): string {
    return this.fences.get(clientId) ?? "";
  }

  /** An inbox position to store with this tick's enqueues (see enqueueMany; cluster bus). */
  private staged: { node: string; id: string } | undefined;

  /**
   * Store inbox position `id` of `node` (forward only) in the same script as each group's
   * enqueues issued in this tick, if any: the group's cursor of that node moves exactly when
   * the enqueues caused by the entries read into that group are stored.
   */
  stageCursor(node: string, id: string): void {
    if (this.enqueues !== undefined) this.staged = { node, id };
  }

  /** Resolves once everything issued before it was answered (on every server). */
  async barrier(): Promise<void> {
    this.flushRemovals();
    const enqueued = this.flushEnqueues();
    if (this.inflight.size > 0) await Promise.allSettled([...this.inflight, enqueued]);
    else await this.redis.ping();
  }

  /** Run `fn` over every session group, a bounded number at a time. */
  async eachGroup(fn: (g: Group) => Promise<void>): Promise<void> {
    const groups = this.keys.groups;
    for (let i = 0; i < groups.length; i += GROUP_CONCURRENCY) {
      await Promise.all(groups.slice(i, i + GROUP_CONCURRENCY).map(fn));
    }
  }

  // --- sessions ---------------------------------------------------------------------------

  async getSession(clientId: string): Promise<SessionRecord | undefined> {
    const h = await this.redis.hgetallBuffer(this.keys.group(clientId).session(clientId)).catch(this.fail("getSession"));
    return decodeSession(clientId, h);
  }

  /** One fenced change of one of a session's keys (scripts.ts touch). */
  private touch(g: Group, key: string, cid: string, mode: string, values: Arg[], op: string): Promise<void> {
    const p = this.track(this.s.touch(key, g.sessions, g.owner(cid), cid, mode, this.token(cid), ...values));
    return this.replicated(p, key).then(() => {}, this.fail(op, cid));
  }

  putSession(record: SessionRecord): Promise<void> {
    const cid = record.clientId;
    const g = this.keys.group(cid);
    return this.touch(g, g.session(cid), cid, "hash!", encodeSession(record), "putSession");
  }

  async deleteSession(clientId: string): Promise<void> {
    const g = this.keys.group(clientId);
    await this.track(this.s.deleteSession(...g.sessionKeys(clientId), g.sessions, g.owner(clientId), clientId, this.bodyPrefix(g, clientId), this.token(clientId)))
      .catch(this.fail("deleteSession", clientId));
  }

  async *sessions(): AsyncIterable<SessionRecord> {
    for await (const [g, ids] of this.sessionIds()) {
      const hashes = await Promise.all(ids.map((id) => this.redis.hgetallBuffer(g.session(id))))
        .catch(this.fail("sessions"));
      for (let i = 0; i < ids.length; i++) {
        const r = decodeSession(ids[i], hashes[i]);
        if (r !== undefined) yield r;
      }
    }
  }

  /**
   * Batches of distinct ids from each group's sessions set (SSCAN of sets, not of the
   * keyspace); empty groups are found first with one SCARD each, sent together.
   */
  private async *sessionIds(): AsyncIterable<[Group, string[]]> {
    const sizes = new Map<Group, number>();
    await this.eachGroup(async (g) => void sizes.set(g, await this.redis.scard(g.sessions).catch(this.fail("sessions"))));
    for (const g of this.keys.groups) {
      if (sizes.get(g) === 0) continue;
      const seen = new Set<string>();
      let cursor = "0";
      do {
        const [next, ids] = await this.redis.sscan(g.sessions, cursor, "COUNT", SCAN_BATCH)
          .catch(this.fail("sessions"));
        cursor = next;
        const fresh = ids.filter((id) => !seen.has(id));
        for (const id of fresh) seen.add(id);
        if (fresh.length > 0) yield [g, fresh];
      } while (cursor !== "0");
    }
  }

  // --- subscriptions ----------------------------------------------------------------------

  putSubscriptions(clientId: string, subs: StoredSubscription[]): Promise<void> {
    if (subs.length === 0) return Promise.resolve();
    const fields: string[] = [];
    for (const sub of subs) fields.push(sub.filter, encodeSubscription(sub));
    const g = this.keys.group(clientId);
    return this.touch(g, g.subs(clientId), clientId, "hash", fields, "putSubscriptions");
  }

  removeSubscriptions(clientId: string, filters: string[]): Promise<void> {
    if (filters.length === 0) return Promise.resolve();
    const g = this.keys.group(clientId);
    return this.touch(g, g.subs(clientId), clientId, "hdel", filters, "removeSubscriptions");
  }

  async subscriptions(clientId: string): Promise<StoredSubscription[]> {
    const h = await this.redis.hgetall(this.keys.group(clientId).subs(clientId)).catch(this.fail("subscriptions"));
    return Object.entries(h).map(([filter, json]) => decodeSubscription(filter, json));
  }

  async *allSubscriptions(): AsyncIterable<{ clientId: string; sub: StoredSubscription }> {
    for await (const [g, ids] of this.sessionIds()) {
      const hashes = await Promise.all(ids.map((id) => this.redis.hgetall(g.subs(id))))
        .catch(this.fail("allSubscriptions"));
      for (let i = 0; i < ids.length; i++) {
        for (const [filter, json] of Object.entries(hashes[i])) {
          yield { clientId: ids[i], sub: decodeSubscription(filter, json) };
        }
      }
    }
  }

  // --- outgoing ---------------------------------------------------------------------------

  /**
   * Enqueues issued in one tick go to Redis as one script call per session group (see
   * removeOutgoing for why). A body is sent once per call and only if this instance has not
   * sent it to that group recently; if the script finds a body missing after all, nothing is
   * written and the call is sent again with every body.
   */
  enqueue(clientId: string, entries: OutgoingEntry[]): Promise<void> {
    if (entries.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const batch = this.enqueues ??= [];
      batch.push({ clientId, entries, resolve, reject });
      if (batch.length === 1) queueMicrotask(() => void this.flushEnqueues());
    });
  }

  private enqueues: Enqueue[] | undefined;

  private flushEnqueues(): Promise<unknown> {
    const batch = this.enqueues;
    this.enqueues = undefined;
    const cursor = this.staged;
    this.staged = undefined;
    if (!batch) return Promise.resolve();
    // per group, in issue order; cut into calls of at most MAX_BATCH entries, the inbox cursor
    // with the last call of each group (issued together on one connection: applied in order)
    const byGroup = new Map<Group, Enqueue[][]>();
    for (const c of batch) {
      const g = this.keys.group(c.clientId);
      let calls = byGroup.get(g);
      if (calls === undefined) byGroup.set(g, calls = [[]]);
      let last = calls[calls.length - 1];
      let size = 0;
      for (const x of last) size += x.entries.length;
      if (last.length > 0 && size + c.entries.length > MAX_BATCH) calls.push(last = []);
      last.push(c);
    }
    const work: Promise<void>[] = [];
    for (const [g, calls] of byGroup) {
      calls.forEach((calls1, i) => work.push(this.enqueueCall(g, calls1, i === calls.length - 1 ? cursor : undefined)));
    }
    return Promise.all(work);
  }

  /** One enqueueMany call (one group), repeated once with every body if one was missing. */
  private async enqueueCall(g: Group, batch: Enqueue[], cursor: { node: string; id: string } | undefined): Promise<void> {
    try {
      for (let attempt = 0; attempt < 2; attempt++) {
        const args: Arg[] = [g.base, this.bodyMode, BODY_GRACE_MS, batch.length, cursor?.node ?? "", cursor?.id ?? ""];
        const inCall = new Set<string>();
        for (const c of batch) {
          args.push(c.clientId, c.entries.length, this.token(c.clientId));
          const bp = this.bodyPrefix(g, c.clientId);
          for (const e of c.entries) {
            const mk = bp + e.msg.id;
            const sendBody = !inCall.has(mk) && (attempt > 0 || !this.bodies.has(mk));
            inCall.add(mk);
            if (sendBody) this.rememberBody(mk);
            args.push(e.msg.id, encodeEntry(e), sendBody ? encodeMessage(e.msg) : "", e.msg.expiresAt ?? "");
          }
        }
        const call = this.track(this.s.enqueueMany(g.sessions, ...args) as Promise<[string[], string[]]>);
        const [missing, fenced] = await this.replicated(call, g.sessions);
        if (missing.length === 0) {
          const stale = new Set(fenced);
          for (const c of batch) {
            if (stale.has(c.clientId)) c.reject(new FencedError(c.clientId));
            else c.resolve();
          }
          return;
        }
        const gone = new Set(missing);
        for (const c of batch) for (const e of c.entries) if (gone.has(e.msg.id)) this.bodies.delete(this.bodyPrefix(g, c.clientId) + e.msg.id);
      }
      throw new Error("message body missing after retry");
    } catch (e) {
      const err = new Error(`redis persistence enqueue failed: ${(e as Error).message ?? e}`, { cause: e });
      for (const c of batch) c.reject(err);
    }
  }

  private rememberBody(key: string): void {
    if (this.bodies.has(key)) return;
    const old = this.bodyRing[this.bodyNext];
    if (old !== undefined) this.bodies.delete(old);
    this.bodyRing[this.bodyNext] = key;
    this.bodyNext = (this.bodyNext + 1) % BODY_MEMORY;
    this.bodies.add(key);
  }

  async updateOutgoing(clientId: string, entry: OutgoingEntry): Promise<void> {
    const g = this.keys.group(clientId);
    await this.track(this.s.updateEntry(g.entries(clientId), g.owner(clientId), entry.msg.id, encodeEntry(entry), this.token(clientId)))
      .catch(this.fail("updateOutgoing", clientId));
  }

  /**
   * Acknowledgements handled in one tick (a socket read of PUBACKs, a fan-out's worth) go to
   * Redis as one script call per session group instead of one call each: ioredis's
   * per-command cost (building the command, GC), not Redis, bounds a Redis-backed QoS 1 flow.
   */
  removeOutgoing(clientId: string, msgId: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const g = this.keys.group(clientId);
      const all = this.removals ??= new Map();
      let batch = all.get(g);
      if (batch === undefined) all.set(g, batch = { args: [], done: [] });
      batch.args.push(clientId, msgId, this.token(clientId));
      batch.done.push({ clientId, resolve, reject });
      if (all.size === 1 && batch.done.length === 1) queueMicrotask(() => this.flushRemovals());
    });
  }

  private removals: Map<Group, Removals> | undefined;

  private flushRemovals(): void {
    const all = this.removals;
    this.removals = undefined;
    if (!all) return;
    for (const [g, batch] of all) {
      for (let i = 0; i < batch.done.length; i += MAX_BATCH) {
        const n = Math.min(MAX_BATCH, batch.done.length - i);
        const done = batch.done.slice(i, i + n);
        this.track(this.s.removeEntries(g.sessions, g.base, this.bodyMode, ...batch.args.slice(3 * i, 3 * (i + n)))).then(
          (refused) => {
            const stale = new Set(refused as number[]);
            done.forEach((d, j) => (stale.has(j + 1) ? d.reject(new FencedError(d.clientId)) : d.resolve()));
          },
          (e) => {
            const err = new Error(`redis persistence removeOutgoing failed: ${(e as Error).message ?? e}`, { cause: e });
            for (const d of done) d.reject(err);
          },
        );
      }
    }
  }

  async outgoing(clientId: string): Promise<OutgoingEntry[]> {
    const g = this.keys.group(clientId);
    const flat = await this.s.readQueueB(g.queue(clientId), g.entries(clientId), this.now(), this.bodyPrefix(g, clientId))
      .catch(this.fail("outgoing")) as Buffer[];
    const out = new Array<OutgoingEntry>(flat.length / 3);
    for (let i = 0; i < flat.length; i += 3) {
      out[i / 3] = decodeEntry(flat[i + 1].toString(), decodeMessage(flat[i + 2]));
    }
    return out;
  }

  async outgoingCount(clientId: string): Promise<number> {
    return await this.redis.hlen(this.keys.group(clientId).entries(clientId)).catch(this.fail("outgoingCount"));
  }

  // --- incoming QoS 2 ---------------------------------------------------------------------

  addIncomingQos2(clientId: string, packetId: number): Promise<void> {
    const g = this.keys.group(clientId);
    return this.touch(g, g.incoming(clientId), clientId, "set", [packetId], "addIncomingQos2");
  }

  removeIncomingQos2(clientId: string, packetId: number): Promise<void> {
    const g = this.keys.group(clientId);
    return this.touch(g, g.incoming(clientId), clientId, "srem", [packetId], "removeIncomingQos2");
  }

  async incomingQos2(clientId: string): Promise<number[]> {
    const ids = await this.redis.smembers(this.keys.group(clientId).incoming(clientId)).catch(this.fail("incomingQos2"));
    return ids.map(Number).sort((a, b) => a - b);
  }

  // --- retained ---------------------------------------------------------------------------

  async putRetained(msg: StoredMessage, quota?: RetainedQuota): Promise<void> {
    const keys = this.retainedKeys(msg.topic);
    const p = this.track(this.s.retained(...spread(keys), "put", msg.topic, encodeMessage(msg),
      String(quota?.maxMessages ?? 0), String(quota?.maxBytes ?? 0)));
    const r = await this.replicated(p, this.keys.retained).catch(this.fail("putRetained"));
    if (r === -1) throw new RetainedQuotaError("messages", quota!.maxMessages);
    if (r === -2) throw new RetainedQuotaError("bytes", quota!.maxBytes);
  }

  async deleteRetained(topic: string): Promise<void> {
    const p = this.track(this.s.retained(...spread(this.retainedKeys(topic)), "del", topic));
    await this.replicated(p, this.keys.retained).catch(this.fail("deleteRetained"));
  }

  /** KEYS of the retained script for a topic: the hash, its bytes counter, its index sets. */
  private retainedKeys(topic: string): string[] {
    return [this.keys.retained, this.keys.retainedBytes, ...this.keys.retainedIndex(topic)];
  }

  async matchRetained(filter: string): Promise<StoredMessage[]> {
    const flat = await this.retainedCandidates(this.keys.retainedLookup(filter)).catch(this.fail("matchRetained"));
    const now = this.now();
    const out: StoredMessage[] = [];
    const drops: Promise<unknown>[] = [];
    for (let i = 0; i < flat.length; i += 2) {
      const topic = flat[i].toString();
      if (!topicMatches(filter, topic)) continue;
      const msg = decodeMessage(flat[i + 1]);
      if (msg.expiresAt !== undefined && msg.expiresAt < now) {
        const header = flat[i + 1].subarray(0, headerLength(flat[i + 1]));
        // Housekeeping: a failure here must not fail the lookup.
        drops.push(this.s.retained(...spread(this.retainedKeys(topic)), "delif", topic, header).catch(() => {}));
      } else {
        out.push(msg);
      }
    }
    if (drops.length > 0) await Promise.all(drops);
    return out;
  }

  /**
   * [topic, blob, ...] of every retained topic in the intersection of `sets` (none: all), read
   * in chunks (HSCAN / SSCAN + HMGET), so that no single command walks the whole store: a
   * subscription to `#` on a million retained topics is many short commands, not one long one.
   */
  private async retainedCandidates(sets: string[]): Promise<Buffer[]> {
    const ret = this.keys.retained;
    const out: Buffer[] = [];
    if (sets.length === 0) {
      let cursor = "0";
      do {
        const [next, flat] = await this.redis.hscanBuffer(ret, cursor, "COUNT", SCAN_BATCH);
        cursor = next.toString();
        for (const b of flat) out.push(b);
      } while (cursor !== "0");
      return out;
    }
    const values = async (topics: string[]) => {
      for (let i = 0; i < topics.length; i += SCAN_BATCH) {
        const chunk = topics.slice(i, i + SCAN_BATCH);
        const blobs = await this.redis.hmgetBuffer(ret, ...chunk);
        blobs.forEach((b, j) => {
          if (b !== null) out.push(Buffer.from(chunk[j]), b);
        });
      }
    };
    if (sets.length > 1) {
      await values(await this.redis.sinter(...sets));
      return out;
    }
    let cursor = "0";
    do {
      const [next, topics] = await this.redis.sscan(sets[0], cursor, "COUNT", SCAN_BATCH);
      cursor = next;
      await values([...new Set(topics)]);
    } while (cursor !== "0");
    return out;
  }

  async retainedCount(): Promise<number> {
    return await this.redis.hlen(this.keys.retained).catch(this.fail("retainedCount"));
  }

  async retainedBytes(): Promise<number> {
    return Number(await this.redis.get(this.keys.retainedBytes).catch(this.fail("retainedBytes")) ?? 0);
  }

  async close(): Promise<void> {
    await closeRedis(this.redis);
  }
}

/**
 * The number of session groups is part of the key schema: a store written with one number
 * cannot be read with another (every client id would be looked for in another group).
 */
async function checkLayout(redis: RedisClient, key: string, groups: number, where: string, prefix: string): Promise<void> {
  await redis.set(key, String(groups), "NX");
  const have = Number(await redis.get(key));
  if (have === groups) return;
  const what = (n: number) => (n === 1 ? "a single Redis or a Sentinel set-up (1 session group)" : `a Redis Cluster (${n} session groups)`);
  throw new Error(
    `the store under prefix ${JSON.stringify(prefix)} at ${where} was written for ${what(have)} and this broker uses ` +
      `${what(groups)}: its sessions cannot be found. Use another --redis-prefix, or empty the old one.`,
  );
}
