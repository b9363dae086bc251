/**
 * The Redis key schema of the persistence backend and the cluster bus: every key either reads or
 * writes is built here. The table of keys, what they hold, who writes them and why they have
 * this shape is in docs/redis.md ("Key schema"); keep the two in step.
 *
 * Every key is `P{tag}:<rest>`: the configured prefix P, then a Redis Cluster hash tag naming the
 * slot the key lives in (Redis hashes only what is between the first `{` and the next `}`):
 *
 * - `{c}`        the cluster-wide keys: membership, route table, broadcast stream, epoch;
 * - `{r}`        the retained messages and their index sets;
 * - `{n:<node>}` one node's inbox, its cursor and its "live" marker;
 * - `{g:<k>}`    session group k: every key of the sessions in the group (record,
 *                subscriptions, queue, entries, QoS 2 ids, owner, lock), the message bodies they
 *                share, and the group's indexes (sessions, owned-by-node, inbox positions).
 *
 * So every Lua script touches the keys of one slot: one session (or several of one group), one
 * node, the retained set, or the cluster-wide keys. A client id's group is
 * CRC16(client id) mod G (the Redis Cluster slot function, cluster-key-slot): G = 1 on a single
 * Redis or Sentinel (one group: batched calls stay one call, a body is stored once), GROUPS on
 * Redis Cluster (calls are grouped per group, a body is stored once per group that has it
 * queued). G is recorded in the store (`layout`) and checked at start.
 *
 * Names after the tag are used verbatim (<cid> a client id, <id> a message id, <node> a node's
 * identity "<node-id>#<incarnation>"): the fixed part before them keeps names unambiguous. A
 * prefix must not contain `{` or `}` on Redis Cluster (it would move the tag); config refuses it.
 */
import calculateSlot from "cluster-key-slot";

/** Session groups on Redis Cluster: enough to spread over many shards, few enough to share bodies. */
export const GROUPS = 1024;

/** Levels of a retained topic that get an index set (see docs/redis.md). */
export const INDEXED_LEVELS = 8;

/** The Redis Cluster slot of a key (hash tags honoured). */
export function slotOf(key: string): number {
  return (calculateSlot as (k: string) => number)(key);
}

/** The keys of one session group (one slot). */
export class Group {
  /** Prefix of message body keys, passed to scripts that derive body keys from ids. */
  readonly msgPrefix: string;
  /** Client ids of the group's stored sessions (startup recovery iterates these). */
  readonly sessions: string;
  /** node -> inbox position up to which the node's enqueues into this group are stored. */
  readonly cursors: string;
  private readonly p: string;

  /** The prefix of every key of the group (with its hash tag): scripts derive keys from it. */
  get base(): string {
    return this.p;
  }

  constructor(prefix: string, readonly index: number) {
    this.p = `${prefix}{g:${index}}:`;
    this.msgPrefix = this.p + "m:";
    this.sessions = this.p + "sessions";
    this.cursors = this.p + "cur";
  }

  session(cid: string): string {
    return this.p + "s:" + cid;
  }
  subs(cid: string): string {
    return this.p + "sub:" + cid;
  }
  queue(cid: string): string {
    return this.p + "q:" + cid;
  }
  entries(cid: string): string {
    return this.p + "e:" + cid;
  }
  incoming(cid: string): string {
    return this.p + "in2:" + cid;
  }
  msg(id: string): string {
    return this.msgPrefix + id;
  }
  /** Cluster ownership record of a client id: n node, t fencing token. */
  owner(cid: string): string {
    return this.p + "o:" + cid;
  }
  lock(cid: string): string {
    return this.p + "l:" + cid;
  }
  /** Client ids of this group a node claimed (a superset; reaping reads it). */
  owned(node: string): string {
    return this.p + "owned:" + node;
  }
  /** Every key of one session except message bodies (those are reference counted). */
  sessionKeys(cid: string): string[] {
    return [this.session(cid), this.subs(cid), this.queue(cid), this.entries(cid), this.incoming(cid)];
  }
}

export class Keys {
  /** Cluster-wide keys (one slot). */
  readonly nodes: string;
  readonly bus: string;
  readonly busSeq: string;
  readonly epoch: string;
  /** The number of session groups the store was created with. */
  readonly layout: string;
  /** Retained messages (one slot), and their payload bytes together (--max-retained-bytes). */
  readonly retained: string;
  readonly retainedBytes: string;
  readonly groups: readonly Group[];

  constructor(readonly prefix: string, readonly groupCount = 1) {
    const c = `${prefix}{c}:`;
    this.nodes = c + "nodes";
    this.bus = c + "bus";
    this.busSeq = c + "busseq";
    this.epoch = c + "epoch";
    this.layout = c + "layout";
    this.retained = `${prefix}{r}:ret`;
    this.retainedBytes = `${prefix}{r}:retbytes`;
    this.groups = Array.from({ length: groupCount }, (_, i) => new Group(prefix, i));
  }

  /** The group of a client id. */
  group(cid: string): Group {
    return this.groups.length === 1 ? this.groups[0] : this.groups[slotOf(cid) % this.groups.length];
  }

  /** A node's filters (the route table, per node). */
  routes(node: string): string {
    return `${this.prefix}{c}:routes:${node}`;
  }
  /** The survivor reaping a dead node (SET NX PX). */
  reap(node: string): string {
    return `${this.prefix}{c}:reap:${node}`;
  }
  inbox(node: string): string {
    return `${this.prefix}{n:${node}}:in`;
  }
  /** Inbox position up to which everything the node read is processed and stored. */
  cursor(node: string): string {
    return `${this.prefix}{n:${node}}:cur`;
  }
  /** Exists from a node's start until it is buried: appends to its inbox check it. */
  live(node: string): string {
    return `${this.prefix}{n:${node}}:live`;
  }

  /** Index sets a retained topic belongs to: one per indexed level, one for its depth. */
  retainedIndex(topic: string): string[] {
    const levels = topic.split("/");
    const indexed = Math.min(levels.length, INDEXED_LEVELS);
    const keys = new Array<string>(indexed + 1);
    for (let i = 0; i < indexed; i++) keys[i] = `${this.retained}:l:${i}:${levels[i]}`;
    keys[indexed] = `${this.retained}:d:${levels.length}`;
    return keys;
  }

  /**
   * Index sets whose intersection holds every topic the filter can match (a superset: the
   * caller re-checks with topicMatches). Empty: no narrowing possible, read every topic.
   */
  retainedLookup(filter: string): string[] {
    const levels = filter.split("/");
    const multi = levels[levels.length - 1] === "#";
    const fixed = multi ? levels.length - 1 : levels.length;
    const keys: string[] = [];
    for (let i = 0; i < Math.min(fixed, INDEXED_LEVELS); i++) {
      if (levels[i] !== "+") keys.push(`${this.retained}:l:${i}:${levels[i]}`);
    }
    if (!multi) keys.push(`${this.retained}:d:${levels.length}`);
    return keys;
  }
}
