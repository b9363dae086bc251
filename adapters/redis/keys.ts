/**
 * The Redis key schema of the persistence backend: every key it reads or writes is built here.
 * Every key starts with the configured prefix P (e.g. "colibri:"); <cid> is a client id,
 * <id> a message id, both used verbatim (the fixed part before them keeps names unambiguous).
 *
 * | key                  | type | contents                                            | written by                              | deleted when |
 * |----------------------|------|-----------------------------------------------------|-----------------------------------------|--------------|
 * | P sessions           | SET  | client ids that own any session key below           | putSession, putSubscriptions, enqueue,  | deleteSession (SREM) |
 * |                      |      | (sessions()/allSubscriptions() iterate it, no SCAN) | addIncomingQos2 (in the same script)    |              |
 * | P s:<cid>            | HASH | session record: v protocol, x expiry interval,      | putSession (DEL + HSET, one script)     | deleteSession |
 * |                      |      | d disconnectedAt, n node, wa willAt, w will blob,   |
 * |                      |      | u user name                                         |                                         |              |
 * | P sub:<cid>          | HASH | filter -> subscription options (JSON)               | putSubscriptions / removeSubscriptions  | deleteSession, or empty |
 * | P q:<cid>            | LIST | message ids of the outgoing entries, FIFO           | enqueue (RPUSH), removeOutgoing (LREM), | deleteSession, or empty |
 * |                      |      |                                                     | outgoing (rewritten when expired drop)  |              |
 * | P e:<cid>            | HASH | message id -> entry "<qos><retain><state>|<packet  | enqueue, updateOutgoing, removeOutgoing | deleteSession, or empty |
 * |                      |      | id>|<subscription ids>" (the reference to m:<id>)   |                                         |              |
 * | P m:<id>             | HASH | b message blob, r reference count (number of e:*    | enqueue creates it or HINCRBY r 1       | r reaches 0 (removeOutgoing, |
 * |                      |      | entries naming it), x expiresAt (epoch ms)          |                                         | deleteSession, expiry drop); |
 * |                      |      |                                                     |                                         | PEXPIREAT x + grace |
 * | P in2:<cid>          | SET  | packet ids of received QoS 2 PUBLISH awaiting PUBREL| add/removeIncomingQos2                  | deleteSession, or empty |
 * | P ret                | HASH | topic -> retained message blob                      | putRetained / deleteRetained            | empty |
 * | P retbytes           | STR  | payload bytes of every blob in ret (retained quota) | same script as ret                      | back at 0 |
 * | P ret:l:<i>:<value>  | SET  | topics whose level i (0-based, i < 8) is <value>    | same script as ret                      | empty |
 * | P ret:d:<n>          | SET  | topics that have exactly n levels                   | same script as ret                      | empty |
 * | P o:<cid>            | HASH | owner of the client id: n node, t fencing token     | bus claim (compare-and-set)             | disown (the owner ends the session) |
 * | P l:<cid>            | STR  | CONNECT lock (one CONNECT per id cluster-wide)      | bus lock (SET NX PX)                    | unlock, or its PX |
 *
 * Cluster bus keys (adapters/redis/bus.ts; <n> is a node's identity, "<node-id>#<incarnation>"):
 *
 * | key                  | type | contents                                            |
 * |----------------------|------|-----------------------------------------------------|
 * | P nodes              | ZSET | node -> lease expiry (ms, Redis clock)              |
 * | P in:<n>             | STRM | the node's inbox: forwarded messages, requests, replies, route acks |
 * | P cur:<n>            | STR  | inbox position up to which everything is processed and stored |
 * | P routes:<n>         | SET  | filters the node holds (the route table, per node)  |
 * | P owned:<n>          | SET  | client ids the node claimed (superset; reaping reads it) |
 * | P reap:<n>           | STR  | the survivor reaping a dead node (SET NX PX)        |
 * | P bus                | STRM | broadcast: route deltas, nodes gone or leaving (trimmed ~10k) |
 * | P busseq             | STR  | sequence of bus entries (a gap means a missed delta: reload) |
 * | P epoch              | STR  | random id written once: a different or missing one means the store lost its data |
 *
 * Why this shape:
 * - Many nodes write at once. Every multi-key change is one Lua script (atomic, and a single
 *   command so it rides the auto-pipeline in issue order; MULTI would bypass it). Scripts touch
 *   m:<id> keys they derive from ids, so the schema targets one Redis (or one shard), not
 *   Redis Cluster.
 * - A message body is stored once (m:<id>) and shared by every session that has it queued.
 *   Reference counting, not a collector: the count changes only inside the scripts that add or
 *   remove an e:<cid> field, so it is exact; the body is deleted when it reaches 0. A body
 *   with an expiry also gets PEXPIREAT (expiresAt + grace) so it cannot outlive its usefulness
 *   if a session is never read again; an entry whose body is gone is dropped as expired.
 * - Re-enqueueing an id already queued for a session only replaces its entry (no second list
 *   item, no second reference): a retried enqueue whose first reply was lost is harmless.
 * - The sessions set is the index for startup recovery; an id in it without s:<cid> is only
 *   transient (a write racing a delete) and is skipped by sessions().
 * - Retained wildcard lookup intersects index sets: `a/+/c` = SINTER ret:l:0:a ret:l:2:c
 *   ret:d:3; `a/#` = SMEMBERS ret:l:0:a (depth >= 1, so `a` itself too); `+/b` = SINTER ret:l:1:b
 *   ret:d:2. Only a filter with no literal level and a `#` (`#`, `+/#`) reads the whole hash,
 *   which is then the answer anyway. Candidates are re-checked with topicMatches (`$`-rule,
 *   depth for `a/+/#`, literal levels past the indexed ones).
 * - Only the first INDEXED_LEVELS levels are indexed. Each index set holds the whole topic
 *   name, so indexing every level made one retained PUBLISH cost levels x topic length in
 *   Redis (a 65,535-level topic: 65k keys and an 11 s script, Redis BUSY for everyone). Now a
 *   put or delete touches at most INDEXED_LEVELS + 1 sets, whatever the topic (the broker
 *   also refuses topics deeper than --max-topic-levels before they get here). Real topic
 *   trees put their selective levels first (site/device/...), and deeper literal levels are
 *   still matched exactly by the re-check.
 */

/** Levels of a retained topic that get an index set (see above). */
export const INDEXED_LEVELS = 8;

export class Keys {
  readonly sessions: string;
  readonly retained: string;
  /** Payload bytes of the retained messages together (--max-retained-bytes). */
  readonly retainedBytes: string;
  /** Prefix of message body keys, passed to scripts that derive m:<id> from ids. */
  readonly msgPrefix: string;
  readonly nodes: string;
  readonly bus: string;
  readonly busSeq: string;
  readonly epoch: string;

  constructor(readonly prefix: string) {
    this.nodes = prefix + "nodes";
    this.bus = prefix + "bus";
    this.busSeq = prefix + "busseq";
    this.epoch = prefix + "epoch";
    this.sessions = prefix + "sessions";
    this.retained = prefix + "ret";
    this.retainedBytes = prefix + "retbytes";
    this.msgPrefix = prefix + "m:";
  }

  session(cid: string): string {
    return this.prefix + "s:" + cid;
  }
  subs(cid: string): string {
    return this.prefix + "sub:" + cid;
  }
  queue(cid: string): string {
    return this.prefix + "q:" + cid;
  }
  entries(cid: string): string {
    return this.prefix + "e:" + cid;
  }
  incoming(cid: string): string {
    return this.prefix + "in2:" + cid;
  }
  msg(id: string): string {
    return this.msgPrefix + id;
  }

  /** Cluster ownership record of a client id (see the bus). */
  owner(cid: string): string {
    return this.prefix + "o:" + cid;
  }
  lock(cid: string): string {
    return this.prefix + "l:" + cid;
  }
  inbox(node: string): string {
    return this.prefix + "in:" + node;
  }
  cursor(node: string): string {
    return this.prefix + "cur:" + node;
  }
  routes(node: string): string {
    return this.prefix + "routes:" + node;
  }
  owned(node: string): string {
    return this.prefix + "owned:" + node;
  }
  reap(node: string): string {
    return this.prefix + "reap:" + node;
  }

  /** Every key of one session except message bodies (those are reference counted). */
  sessionKeys(cid: string): string[] {
    return [this.session(cid), this.subs(cid), this.queue(cid), this.entries(cid), this.incoming(cid)];
  }

  /** Index sets a retained topic belongs to: one per indexed level, one for its depth. */
  retainedIndex(topic: string): string[] {
    const levels = topic.split("/");
    const indexed = Math.min(levels.length, INDEXED_LEVELS);
    const keys = new Array<string>(indexed + 1);
    for (let i = 0; i < indexed; i++) keys[i] = `${this.prefix}ret:l:${i}:${levels[i]}`;
    keys[indexed] = `${this.prefix}ret:d:${levels.length}`;
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
      if (levels[i] !== "+") keys.push(`${this.prefix}ret:l:${i}:${levels[i]}`);
    }
    if (!multi) keys.push(`${this.prefix}ret:d:${levels.length}`);
    return keys;
  }
}
