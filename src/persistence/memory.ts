/**
 * In-process persistence: the embedded default. Everything is synchronous inside and answered
 * with already-resolved promises.
 *
 * Values are copied on the way in and out (shallow: a record, an entry, a subscription), so
 * a caller mutating its own object after a call sees the same behaviour as with Redis.
 * Messages (StoredMessage and its payload) are immutable by contract and shared by reference:
 * one object per message, however many sessions have it queued.
 *
 * Retained messages live in a topic trie (retained-trie.ts): a lookup walks only the branches
 * the filter can reach.
 */
import {
  type MessageHolder,
  type OutgoingEntry,
  type Persistence,
  type RetainedQuota,
  RetainedQuotaError,
  type SessionRecord,
  type StoredMessage,
  type StoredSubscription,
} from "./persistence.ts";
import { RetainedTrie } from "./retained-trie.ts";

export interface MemoryPersistenceOptions {
  /** Clock for message expiry (default Date.now). */
  now?: () => number;
}

const done: Promise<void> = Promise.resolve();

export class MemoryPersistence implements Persistence {
  readonly name = "memory";
  private readonly now: () => number;
  private readonly records = new Map<string, SessionRecord>();
  private readonly subs = new Map<string, Map<string, StoredSubscription>>();
  /** Map keeps insertion order (FIFO) and removes from the middle in O(1). */
  private readonly out = new Map<string, Map<string, OutgoingEntry>>();
  private readonly in2 = new Map<string, Set<number>>();
  private readonly retained = new RetainedTrie();

  constructor(opts: MemoryPersistenceOptions = {}) {
    this.now = opts.now ?? Date.now;
  }

  /** Number of per-session containers held (leak checks in tests). */
  keyCount(): number {
    return this.records.size + this.subs.size + this.out.size + this.in2.size;
  }

  // --- sessions ---------------------------------------------------------------------------

  getSession(clientId: string): Promise<SessionRecord | undefined> {
    const r = this.records.get(clientId);
    return Promise.resolve(r === undefined ? undefined : { ...r });
  }

  putSession(record: SessionRecord): Promise<void> {
    this.records.set(record.clientId, { ...record });
    return done;
  }

  deleteSession(clientId: string): Promise<void> {
    this.records.delete(clientId);
    this.subs.delete(clientId);
    this.out.delete(clientId);
    this.in2.delete(clientId);
    return done;
  }

  async *sessions(): AsyncIterable<SessionRecord> {
    // Snapshot: the caller may modify sessions while iterating.
    for (const r of [...this.records.values()]) yield { ...r };
  }

  // --- subscriptions ----------------------------------------------------------------------

  putSubscriptions(clientId: string, subs: StoredSubscription[]): Promise<void> {
    if (subs.length === 0) return done;
    let m = this.subs.get(clientId);
    if (m === undefined) this.subs.set(clientId, m = new Map());
    for (const s of subs) m.set(s.filter, { ...s });
    return done;
  }

  removeSubscriptions(clientId: string, filters: string[]): Promise<void> {
    const m = this.subs.get(clientId);
    if (m === undefined) return done;
    for (const f of filters) m.delete(f);
    if (m.size === 0) this.subs.delete(clientId);
    return done;
  }

  subscriptions(clientId: string): Promise<StoredSubscription[]> {
    const m = this.subs.get(clientId);
    return Promise.resolve(m === undefined ? [] : [...m.values()].map((s) => ({ ...s })));
  }

  async *allSubscriptions(): AsyncIterable<{ clientId: string; sub: StoredSubscription }> {
    const all: { clientId: string; sub: StoredSubscription }[] = [];
    for (const [clientId, m] of this.subs) for (const s of m.values()) all.push({ clientId, sub: { ...s } });
    yield* all;
  }

  // --- outgoing ---------------------------------------------------------------------------

  enqueue(clientId: string, entries: OutgoingEntry[]): Promise<void> {
    if (entries.length === 0) return done;
    let q = this.out.get(clientId);
    if (q === undefined) this.out.set(clientId, q = new Map());
    // Re-enqueueing a queued id replaces the entry in place (same as Redis: idempotent).
    for (const e of entries) q.set(e.msg.id, { ...e });
    return done;
  }

  updateOutgoing(clientId: string, entry: OutgoingEntry): Promise<void> {
    const q = this.out.get(clientId);
    if (q !== undefined && q.has(entry.msg.id)) q.set(entry.msg.id, { ...entry });
    return done;
  }

  removeOutgoing(clientId: string, msgId: string): Promise<void> {
    const q = this.out.get(clientId);
    if (q === undefined) return done;
    q.delete(msgId);
    if (q.size === 0) this.out.delete(clientId);
    return done;
  }

  outgoing(clientId: string): Promise<OutgoingEntry[]> {
    const q = this.out.get(clientId);
    if (q === undefined) return Promise.resolve([]);
    const now = this.now();
    const list: OutgoingEntry[] = [];
    for (const [id, e] of q) {
      const at = e.msg.expiresAt;
      if (at !== undefined && at < now) q.delete(id); // deleting the current key is safe
      else list.push({ ...e });
    }
    if (q.size === 0) this.out.delete(clientId);
    return Promise.resolve(list);
  }

  /** Stored entries, including expired ones not yet dropped by a read (same as Redis). */
  outgoingCount(clientId: string): Promise<number> {
    return Promise.resolve(this.out.get(clientId)?.size ?? 0);
  }

  // --- incoming QoS 2 ---------------------------------------------------------------------

  addIncomingQos2(clientId: string, packetId: number): Promise<void> {
    let s = this.in2.get(clientId);
    if (s === undefined) this.in2.set(clientId, s = new Set());
    s.add(packetId);
    return done;
  }

  removeIncomingQos2(clientId: string, packetId: number): Promise<void> {
    const s = this.in2.get(clientId);
    if (s === undefined) return done;
    s.delete(packetId);
    if (s.size === 0) this.in2.delete(clientId);
    return done;
  }

  incomingQos2(clientId: string): Promise<number[]> {
    const s = this.in2.get(clientId);
    return Promise.resolve(s === undefined ? [] : [...s].sort((a, b) => a - b));
  }

  // --- retained ---------------------------------------------------------------------------

  putRetained(msg: StoredMessage, quota?: RetainedQuota): Promise<void> {
    const old = this.retained.peek(msg.topic);
    if (quota !== undefined) {
      const grow = msg.payload.length - (old?.payload.length ?? 0);
      if (old === undefined && quota.maxMessages > 0 && this.retained.size >= quota.maxMessages) {
        return Promise.reject(new RetainedQuotaError("messages", quota.maxMessages));
      }
      if (grow > 0 && quota.maxBytes > 0 && this.retained.payloadBytes + grow > quota.maxBytes) {
        return Promise.reject(new RetainedQuotaError("bytes", quota.maxBytes));
      }
    }
    this.retained.put(msg);
    return done;
  }

  deleteRetained(topic: string): Promise<void> {
    this.retained.delete(topic);
    return done;
  }

  matchRetained(filter: string): Promise<StoredMessage[]> {
    return Promise.resolve(this.retained.match(filter, this.now()));
  }

  retainedCount(): Promise<number> {
    return Promise.resolve(this.retained.size);
  }

  retainedBytes(): Promise<number> {
    return Promise.resolve(this.retained.payloadBytes);
  }

  /** Retained messages count towards the broker's --max-memory-bytes (they live in process). */
  trackMemory(account: MessageHolder): void {
    this.retained.setHolder(account);
  }

  close(): Promise<void> {
    return done;
  }
}
