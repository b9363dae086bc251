/**
 * Redis persistence (ioredis). Key schema and the reasons for it: keys.ts. Connection policy
 * (fail fast at start, reconnect while running, never buffer a write): connection.ts.
 *
 * Round trips, thanks to auto-pipelining (calls issued in one tick leave in one write) and to
 * one command per operation (Lua for anything multi-key):
 * - QoS 1 publish to N persistent sessions: the N enqueue calls of one tick are one script
 *   call (enqueueMany) = 1 round trip, the body sent once (see `bodies`); the PUBACKs handled
 *   in one tick are one removeEntries call = 1 round trip. So a QoS 1 message to N online
 *   persistent subscribers costs 2 round trips in all, shared with every other message and
 *   acknowledgement of the same ticks.
 * - putRetained / deleteRetained: 1. matchRetained: 1 (+1 only when it finds expired ones).
 */
import type { Redis } from "ioredis";
import type { Buffer } from "node:buffer";
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
import { closeRedis, type ConnectionOptions, openRedis, safeUrl } from "./connection.ts";
import { Keys } from "./keys.ts";
import * as lua from "./scripts.ts";

export interface RedisPersistenceOptions extends ConnectionOptions {
  /** Prepended to every key, e.g. "colibri:". */
  prefix: string;
  /** Clock for message expiry (default Date.now). */
  now?: () => number;
}

type Arg = string | number | Buffer;
type Call = (...args: Arg[]) => Promise<unknown>;
type Scripts = { [K in keyof typeof lua]: Call } & { readQueueB: Call; matchRetainedB: Call };

/** A message body outlives its expiry by this much in Redis (PEXPIREAT safety net only). */
const BODY_GRACE_MS = 60_000;
/** How many message ids to remember as "body already sent" (saves re-sending on fan-out). */
const BODY_MEMORY = 4096;
/** SSCAN batch for startup iteration. */
const SCAN_BATCH = 500;

export class RedisPersistence implements Persistence {
  readonly name: string;
  private readonly k: Keys;
  private readonly s: Scripts;
  private readonly now: () => number;
  /** Ids whose body this instance sent recently: later enqueues send the id only. If the
   *  body is gone after all, the script says so and the call is repeated with the body. */
  private readonly bodies = new Map<string, true>();
  /** Ownership tokens this node holds (cluster fencing, see fence()): client id -> token. */
  private readonly fences = new Map<string, string>();

  /** Connect (one attempt, bounded) and return the backend; rejects naming the URL. */
  static async connect(opts: RedisPersistenceOptions): Promise<RedisPersistence> {
    const redis = await openRedis(opts);
    // Load every script before the first call: ioredis answers a NOSCRIPT (a script Redis has not
    // seen, e.g. one just changed) by sending EVAL after the commands queued behind it, and that
    // reordering lost a retained message to the SUBSCRIBE right after it. (A Redis that restarts
    // empty forgets them again.)
    await Promise.all(Object.values(lua).map((def) => redis.script("LOAD", def.lua))).catch((e) => {
      throw new Error(`redis persistence: scripts not loaded: ${(e as Error).message}`, { cause: e });
    });
    return new RedisPersistence(redis, opts);
  }

  /** The connection (auto-pipelined); the cluster bus sends through it too, in order. */
  get client(): Redis {
    return this.redis;
  }

  private constructor(private readonly redis: Redis, opts: RedisPersistenceOptions) {
    this.name = `redis ${safeUrl(opts.url)} prefix=${opts.prefix}`;
    this.k = new Keys(opts.prefix);
    this.now = opts.now ?? Date.now;
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
  private staged: { key: string; id: string } | undefined;

  /**
   * Store `id` at `key` (forward only) in the same script as the enqueues issued in this tick,
   * if any: a node's inbox cursor moves exactly when the messages it read are queued.
   */
  stageCursor(key: string, id: string): void {
    if (this.enqueues !== undefined) this.staged = { key, id };
  }

  /** Resolves once everything issued before it was applied (one connection, in order). */
  async barrier(): Promise<void> {
    this.flushRemovals();
    await this.flushEnqueues();
    await this.redis.ping();
  }

  // --- sessions ---------------------------------------------------------------------------

  async getSession(clientId: string): Promise<SessionRecord | undefined> {
    const h = await this.redis.hgetallBuffer(this.k.session(clientId)).catch(this.fail("getSession"));
    return decodeSession(clientId, h);
  }

  async putSession(record: SessionRecord): Promise<void> {
    const cid = record.clientId;
    await this.s.touch(this.k.session(cid), this.k.sessions, this.k.owner(cid), cid, "hash!", this.token(cid), ...encodeSession(record))
      .catch(this.fail("putSession", cid));
  }

  async deleteSession(clientId: string): Promise<void> {
    await this.s.deleteSession(...this.k.sessionKeys(clientId), this.k.sessions, this.k.owner(clientId), clientId, this.k.msgPrefix, this.token(clientId))
      .catch(this.fail("deleteSession", clientId));
  }

  async *sessions(): AsyncIterable<SessionRecord> {
    for await (const ids of this.sessionIds()) {
      const hashes = await Promise.all(ids.map((id) => this.redis.hgetallBuffer(this.k.session(id))))
        .catch(this.fail("sessions"));
      for (let i = 0; i < ids.length; i++) {
        const r = decodeSession(ids[i], hashes[i]);
        if (r !== undefined) yield r;
      }
    }
  }

  /** Batches of distinct ids from the sessions set (SSCAN of one set, not of the keyspace). */
  private async *sessionIds(): AsyncIterable<string[]> {
    const seen = new Set<string>();
    let cursor = "0";
    do {
      const [next, ids] = await this.redis.sscan(this.k.sessions, cursor, "COUNT", SCAN_BATCH)
        .catch(this.fail("sessions"));
      cursor = next;
      const fresh = ids.filter((id) => !seen.has(id));
      for (const id of fresh) seen.add(id);
      if (fresh.length > 0) yield fresh;
    } while (cursor !== "0");
  }

  // --- subscriptions ----------------------------------------------------------------------

  async putSubscriptions(clientId: string, subs: StoredSubscription[]): Promise<void> {
    if (subs.length === 0) return;
    const fields: string[] = [];
    for (const sub of subs) fields.push(sub.filter, encodeSubscription(sub));
    await this.s.touch(this.k.subs(clientId), this.k.sessions, this.k.owner(clientId), clientId, "hash", this.token(clientId), ...fields)
      .catch(this.fail("putSubscriptions", clientId));
  }

  async removeSubscriptions(clientId: string, filters: string[]): Promise<void> {
    if (filters.length === 0) return;
    await this.s.touch(this.k.subs(clientId), this.k.sessions, this.k.owner(clientId), clientId, "hdel", this.token(clientId), ...filters)
      .catch(this.fail("removeSubscriptions", clientId));
  }

  async subscriptions(clientId: string): Promise<StoredSubscription[]> {
    const h = await this.redis.hgetall(this.k.subs(clientId)).catch(this.fail("subscriptions"));
    return Object.entries(h).map(([filter, json]) => decodeSubscription(filter, json));
  }

  async *allSubscriptions(): AsyncIterable<{ clientId: string; sub: StoredSubscription }> {
    for await (const ids of this.sessionIds()) {
      const hashes = await Promise.all(ids.map((id) => this.redis.hgetall(this.k.subs(id))))
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
   * Enqueues issued in one tick go to Redis as one script call (see removeOutgoing for why).
   * A body is sent once per batch and only if this instance has not sent it recently; if the
   * script finds a body missing after all, nothing is written and the batch is sent again
   * with every body.
   */
  enqueue(clientId: string, entries: OutgoingEntry[]): Promise<void> {
    if (entries.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const batch = this.enqueues ??= [];
      batch.push({ clientId, entries, resolve, reject });
      if (batch.length === 1) queueMicrotask(() => void this.flushEnqueues());
    });
  }

  private enqueues: Array<{ clientId: string; entries: OutgoingEntry[]; resolve: () => void; reject: (e: unknown) => void }> | undefined;

  private async flushEnqueues(): Promise<void> {
    const batch = this.enqueues;
    this.enqueues = undefined;
    const cursor = this.staged;
    this.staged = undefined;
    if (!batch) return;
    try {
      for (let attempt = 0; attempt < 2; attempt++) {
        const keys: string[] = [this.k.sessions, cursor?.key ?? this.k.sessions];
        const args: Arg[] = [BODY_GRACE_MS, batch.length, cursor?.id ?? ""];
        const inBatch = new Set<string>();
        for (const c of batch) {
          keys.push(this.k.queue(c.clientId), this.k.entries(c.clientId), this.k.owner(c.clientId));
          args.push(c.clientId, c.entries.length, this.token(c.clientId));
          for (const e of c.entries) {
            const id = e.msg.id;
            keys.push(this.k.msg(id));
            const sendBody = !inBatch.has(id) && (attempt > 0 || !this.bodies.has(id));
            inBatch.add(id);
            if (sendBody) this.rememberBody(id);
            args.push(id, encodeEntry(e), sendBody ? encodeMessage(e.msg) : "", e.msg.expiresAt ?? "");
          }
        }
        const [missing, fenced] = await this.s.enqueueMany(keys.length, ...keys, ...args) as [string[], string[]];
        if (missing.length === 0) {
          const stale = new Set(fenced);
          for (const c of batch) {
            if (stale.has(c.clientId)) c.reject(new FencedError(c.clientId));
            else c.resolve();
          }
          return;
        }
        for (const id of missing) this.bodies.delete(id);
      }
      throw new Error("message body missing after retry");
    } catch (e) {
      const err = new Error(`redis persistence enqueue failed: ${(e as Error).message ?? e}`, { cause: e });
      for (const c of batch) c.reject(err);
    }
  }

  private rememberBody(id: string): void {
    if (this.bodies.has(id)) return;
    this.bodies.set(id, true);
    if (this.bodies.size > BODY_MEMORY) this.bodies.delete(this.bodies.keys().next().value as string);
  }

  async updateOutgoing(clientId: string, entry: OutgoingEntry): Promise<void> {
    await this.s.updateEntry(this.k.entries(clientId), this.k.owner(clientId), entry.msg.id, encodeEntry(entry), this.token(clientId))
      .catch(this.fail("updateOutgoing", clientId));
  }

  /**
   * Acknowledgements handled in one tick (a socket read of PUBACKs, a fan-out's worth) go to
   * Redis as one script call instead of one call each: ioredis's per-command cost (building
   * the command, GC), not Redis, bounds a Redis-backed QoS 1 flow.
   */
  removeOutgoing(clientId: string, msgId: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const batch = this.removals ??= { keys: [], ids: [], done: [] };
      batch.keys.push(this.k.queue(clientId), this.k.entries(clientId), this.k.msg(msgId), this.k.owner(clientId));
      batch.ids.push(msgId, this.token(clientId));
      batch.done.push({ clientId, resolve, reject });
      if (batch.done.length === 1) queueMicrotask(() => this.flushRemovals());
    });
  }

  private removals: {
    keys: string[];
    ids: string[];
    done: Array<{ clientId: string; resolve: () => void; reject: (e: unknown) => void }>;
  } | undefined;

  private flushRemovals(): void {
    const batch = this.removals;
    this.removals = undefined;
    if (!batch) return;
    this.s.removeEntries(batch.keys.length, ...batch.keys, ...batch.ids).then(
      (refused) => {
        const stale = new Set(refused as number[]);
        batch.done.forEach((d, i) => (stale.has(i + 1) ? d.reject(new FencedError(d.clientId)) : d.resolve()));
      },
      (e) => {
        const err = new Error(`redis persistence removeOutgoing failed: ${(e as Error).message ?? e}`, { cause: e });
        for (const d of batch.done) d.reject(err);
      },
    );
  }

  async outgoing(clientId: string): Promise<OutgoingEntry[]> {
    const flat = await this.s.readQueueB(
      this.k.queue(clientId),
      this.k.entries(clientId),
      this.now(),
      this.k.msgPrefix,
    ).catch(this.fail("outgoing")) as Buffer[];
    const out = new Array<OutgoingEntry>(flat.length / 3);
    for (let i = 0; i < flat.length; i += 3) {
      out[i / 3] = decodeEntry(flat[i + 1].toString(), decodeMessage(flat[i + 2]));
    }
    return out;
  }

  async outgoingCount(clientId: string): Promise<number> {
    return await this.redis.hlen(this.k.entries(clientId)).catch(this.fail("outgoingCount"));
  }

  // --- incoming QoS 2 ---------------------------------------------------------------------

  async addIncomingQos2(clientId: string, packetId: number): Promise<void> {
    await this.s.touch(this.k.incoming(clientId), this.k.sessions, this.k.owner(clientId), clientId, "set", this.token(clientId), packetId)
      .catch(this.fail("addIncomingQos2", clientId));
  }

  async removeIncomingQos2(clientId: string, packetId: number): Promise<void> {
    await this.s.touch(this.k.incoming(clientId), this.k.sessions, this.k.owner(clientId), clientId, "srem", this.token(clientId), packetId)
      .catch(this.fail("removeIncomingQos2", clientId));
  }

  async incomingQos2(clientId: string): Promise<number[]> {
    const ids = await this.redis.smembers(this.k.incoming(clientId)).catch(this.fail("incomingQos2"));
    return ids.map(Number).sort((a, b) => a - b);
  }

  // --- retained ---------------------------------------------------------------------------

  async putRetained(msg: StoredMessage, quota?: RetainedQuota): Promise<void> {
    const idx = this.k.retainedIndex(msg.topic);
    const r = await this.s.retained(2 + idx.length, this.k.retained, this.k.retainedBytes, ...idx, "put", msg.topic,
      encodeMessage(msg), String(quota?.maxMessages ?? 0), String(quota?.maxBytes ?? 0))
      .catch(this.fail("putRetained"));
    if (r === -1) throw new RetainedQuotaError("messages", quota!.maxMessages);
    if (r === -2) throw new RetainedQuotaError("bytes", quota!.maxBytes);
  }

  async deleteRetained(topic: string): Promise<void> {
    const idx = this.k.retainedIndex(topic);
    await this.s.retained(2 + idx.length, this.k.retained, this.k.retainedBytes, ...idx, "del", topic)
      .catch(this.fail("deleteRetained"));
  }

  async matchRetained(filter: string): Promise<StoredMessage[]> {
    const sets = this.k.retainedLookup(filter);
    const flat = await this.s.matchRetainedB(1 + sets.length, this.k.retained, ...sets)
      .catch(this.fail("matchRetained")) as Buffer[];
    const now = this.now();
    const out: StoredMessage[] = [];
    const drops: Promise<unknown>[] = [];
    for (let i = 0; i < flat.length; i += 2) {
      const topic = flat[i].toString();
      if (!topicMatches(filter, topic)) continue;
      const msg = decodeMessage(flat[i + 1]);
      if (msg.expiresAt !== undefined && msg.expiresAt < now) {
        const idx = this.k.retainedIndex(topic);
        const header = flat[i + 1].subarray(0, headerLength(flat[i + 1]));
        // Housekeeping: a failure here must not fail the lookup.
        drops.push(this.s.retained(2 + idx.length, this.k.retained, this.k.retainedBytes, ...idx, "delif", topic, header).catch(() => {}));
      } else {
        out.push(msg);
      }
    }
    if (drops.length > 0) await Promise.all(drops);
    return out;
  }

  async retainedCount(): Promise<number> {
    return await this.redis.hlen(this.k.retained).catch(this.fail("retainedCount"));
  }

  async retainedBytes(): Promise<number> {
    return Number(await this.redis.get(this.k.retainedBytes).catch(this.fail("retainedBytes")) ?? 0);
  }

  async close(): Promise<void> {
    await closeRedis(this.redis);
  }
}
