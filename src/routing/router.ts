/**
 * Delivery routing: topic -> the local sessions that get a copy, with the QoS, retain flag and
 * subscription identifiers each one gets. Matches are cached per topic and the cache is
 * dropped whenever the subscription table changes (subscribe storms simply run uncached).
 *
 * Overlapping subscriptions of one client are delivered once [MQTT-3.3.4-2 / 3.1.1 §3.3.5]:
 * at the highest QoS of the matching subscriptions, carrying every matching subscription
 * identifier [MQTT-3.3.4-3], retain-as-published if any matching subscription asks for it.
 * Shared subscriptions `$share/{group}/{filter}` pick one member per group per message; how the
 * member is chosen and what happens to its messages when it leaves is in shared.ts.
 *
 * A cluster bus later feeds remote publishes into route() and reads the filter set to build
 * its node route table; nothing here knows about sockets or persistence.
 */
import type { QoS, StoredMessage, StoredSubscription } from "../persistence/persistence.ts";
import { type Member, SharedGroup } from "./shared.ts";
import { parseShared } from "./topic.ts";
import { TopicTrie } from "./topic-trie.ts";

export interface DeliveryOptions {
  qos: QoS;
  retain: boolean;
  subscriptionIds?: number[];
  /** Set when a shared subscription chose this session: its `$share/{group}/{filter}`. */
  share?: string;
}

/** What the router needs of a session (Member: what a shared group needs to choose). */
export interface Subscriber extends Member {
  deliver(msg: StoredMessage, opts: DeliveryOptions): Promise<void> | void;
}

interface Entry {
  sub: Subscriber;
  opts: StoredSubscription;
}

interface Target {
  sub: Subscriber;
  entries: StoredSubscription[];
}

interface Match {
  targets: Target[];
  groups: SharedGroup<Subscriber>[];
}

const CACHE_LIMIT = 10_000;
/**
 * The cache keys are topic names of up to 64 KB: 10,000 long ones would keep 640 MB alive, so
 * the cache is also dropped once its keys add up to this many characters.
 */
const CACHE_KEY_CHARS = 4 * 1024 * 1024;

export class Router {
  private trie = new TopicTrie<Entry>();
  private shared = new TopicTrie<SharedGroup<Subscriber>>();
  private cache = new Map<string, Match>();
  private cacheChars = 0;

  add(sub: Subscriber, s: StoredSubscription, share?: { group: string; filter: string }): void {
    this.clearCache();
    if (share) {
      let g = this.shared.get(share.filter, share.group);
      if (!g) this.shared.add(share.filter, share.group, g = new SharedGroup(share.group, share.filter));
      g.set({ sub, opts: s }); // a second SUBSCRIBE only changes the options (§4.8.2)
      return;
    }
    this.trie.add(s.filter, sub.clientId, { sub, opts: s });
  }

  remove(clientId: string, filter: string, share?: { group: string; filter: string }): boolean {
    this.clearCache();
    if (share) {
      const g = this.shared.get(share.filter, share.group);
      if (!g || !g.delete(clientId)) return false;
      if (g.size === 0) this.shared.remove(share.filter, share.group);
      return true;
    }
    return this.trie.remove(filter, clientId);
  }

  /** Topics and key characters the match cache holds (bounded, see CACHE_KEY_CHARS). */
  get cacheFootprint(): { topics: number; chars: number } {
    return { topics: this.cache.size, chars: this.cacheChars };
  }

  private clearCache(): void {
    this.cache.clear();
    this.cacheChars = 0;
  }

  private lookup(topic: string): Match {
    let m = this.cache.get(topic);
    if (m) return m;
    const byClient = new Map<string, Target>();
    this.trie.match(topic, (_k, e) => {
      const t = byClient.get(e.sub.clientId);
      if (t) t.entries.push(e.opts);
      else byClient.set(e.sub.clientId, { sub: e.sub, entries: [e.opts] });
    });
    const groups: SharedGroup<Subscriber>[] = [];
    this.shared.match(topic, (_k, g) => groups.push(g));
    m = { targets: [...byClient.values()], groups };
    if (this.cache.size >= CACHE_LIMIT || this.cacheChars + topic.length > CACHE_KEY_CHARS) this.clearCache();
    this.cacheChars += topic.length;
    this.cache.set(topic, m);
    return m;
  }

  /**
   * Deliver a message to every matching local subscriber. `publisher` is the client id of the
   * sender (no-local). Returns promises of deliveries that had to be persisted (the publisher's
   * acknowledgement waits for them), or undefined when none.
   */
  route(msg: StoredMessage, publisher?: string): { matched: number; pending?: Promise<void>[] } {
    const m = this.lookup(msg.topic);
    let pending: Promise<void>[] | undefined;
    let matched = 0;
    for (let i = 0; i < m.targets.length; i++) {
      const t = m.targets[i];
      const o = merge(t, msg, publisher);
      if (!o) continue;
      matched++;
      const r = t.sub.deliver(msg, o);
      if (r) (pending ??= []).push(r);
    }
    for (let i = 0; i < m.groups.length; i++) {
      // one member per group per message; no-local cannot be set on a shared subscription
      // [MQTT-3.8.3-4], so the publisher itself may be chosen
      const r = this.toGroup(m.groups[i], msg);
      if (r === false) continue;
      matched++;
      if (r) (pending ??= []).push(r);
    }
    return { matched, pending };
  }

  private toGroup(g: SharedGroup<Subscriber>, msg: StoredMessage, except?: string, onlineOnly = false) {
    const e = g.pick(msg.qos, except, onlineOnly);
    if (!e) return false;
    return e.sub.deliver(msg, g.options(e, msg));
  }

  private group(share: string): SharedGroup<Subscriber> | undefined {
    const p = parseShared(share);
    return p && !(p instanceof Error) ? this.shared.get(p.filter, p.group) : undefined;
  }

  /** Whether the group of `share` has a connected member other than `except`. */
  canHandOver(share: string, except: string): boolean {
    return this.group(share)?.hasOnline(except) ?? false;
  }

  /**
   * Give a message that was chosen for `except` (a member that left, see shared.ts) to another
   * member of its group. False when the group has no other member to take it.
   */
  handOver(share: string, msg: StoredMessage, except: string, onlineOnly = false): false | Promise<void> | void {
    const g = this.group(share);
    return g ? this.toGroup(g, msg, except, onlineOnly) : false;
  }
}

function merge(t: Target, msg: StoredMessage, publisher?: string): DeliveryOptions | undefined {
  const own = publisher !== undefined && publisher === t.sub.clientId;
  if (t.entries.length === 1) {
    const s = t.entries[0];
    if (own && s.noLocal) return undefined; // [MQTT-3.8.3-3]
    return {
      qos: (msg.qos < s.qos ? msg.qos : s.qos) as QoS, // [MQTT-3.8.4-8] downgrade to granted QoS
      retain: s.retainAsPublished ? msg.retain : false, // [MQTT-3.3.1-12] / [MQTT-3.3.1-13]
      subscriptionIds: s.subscriptionId ? [s.subscriptionId] : undefined,
    };
  }
  let qos = -1;
  let retain = false;
  let ids: number[] | undefined;
  for (const s of t.entries) {
    if (own && s.noLocal) continue;
    if (s.qos > qos) qos = s.qos;
    if (s.retainAsPublished && msg.retain) retain = true;
    if (s.subscriptionId) (ids ??= []).push(s.subscriptionId);
  }
  if (qos < 0) return undefined;
  return { qos: Math.min(msg.qos, qos) as QoS, retain, subscriptionIds: ids };
}
