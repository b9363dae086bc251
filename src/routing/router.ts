/**
 * Delivery routing: topic -> the local sessions that get a copy, with the QoS, retain flag and
 * subscription identifiers each one gets. Matches are cached per topic and the cache is
 * dropped whenever the subscription table changes (subscribe storms simply run uncached).
 *
 * Overlapping subscriptions of one client are delivered as ONE copy [MQTT-3.3.4-2 / 3.1.1
 * §3.3.5], never one per subscription (which the spec also allows): at the highest QoS of the
 * matching subscriptions, retain-as-published if any of them asks for it, carrying the
 * Subscription Identifier of every matching subscription that has one [MQTT-3.3.4-3]
 * [MQTT-3.3.4-4]. The choice is the same whether or not the subscriptions carry identifiers
 * (merge() below groups by client before it looks at identifiers), so adding an identifier to
 * a subscription never changes how many copies a client gets. A shared subscription is not an
 * overlap: its group gets its own copy for the member it picks (§4.8.2).
 * Shared subscriptions `$share/{group}/{filter}` pick one member per group per message; how the
 * member is chosen and what happens to its messages when it leaves is in shared.ts.
 *
 * Every filter held here counts its local subscribers (a shared filter counts its group's
 * members): add() says when a filter becomes routed on this node and remove() when it stops
 * being, so that the cluster route table (filter -> nodes) changes once per filter, not once
 * per subscriber. Messages from other nodes come through route() as well, with RouteOptions
 * naming what that node chose this one for. Nothing here knows about sockets or persistence.
 */
import type { QoS, StoredMessage, StoredSubscription } from "../message.ts";
import { type Member, SharedGroup } from "./shared.ts";
import { parseShared } from "./topic.ts";
import { TopicTrie } from "./topic-trie.ts";

export interface DeliveryOptions {
  qos: QoS;
  retain: boolean;
  subscriptionIds?: number[];
  /** Set when a shared subscription chose this session: its `$share/{group}/{filter}`. */
  share?: string;
  /** From a dead node's inbox (older than anything else the session is holding). */
  drained?: boolean;
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

/** How one route() call delivers (defaults: every local subscription, every group). */
export interface RouteOptions {
  /** false: skip ordinary subscriptions (a remote node sent this only for shared groups). */
  plain?: boolean;
  /** Whether this node takes a matching group's message (`$share/{group}/{filter}`). */
  share?: (share: string) => boolean;
  /** Deliver only to these sessions (a dead node's messages, for the sessions adopted from it). */
  only?: (clientId: string) => boolean;
  /** Mark the deliveries as drained from a dead node's inbox (DeliveryOptions.drained). */
  drained?: boolean;
}

export class Router {
  private trie = new TopicTrie<Entry>();
  private shared = new TopicTrie<SharedGroup<Subscriber>>();
  private cache = new Map<string, Match>();
  private cacheChars = 0;
  /** Local subscribers per filter as sent (a `$share/...` filter counts its members). */
  private counts = new Map<string, number>();

  /** Add or replace a subscription; true when the filter was not routed to this node before. */
  add(sub: Subscriber, s: StoredSubscription, share?: { group: string; filter: string }): boolean {
    this.clearCache();
    let isNew: boolean;
    if (share) {
      let g = this.shared.get(share.filter, share.group);
      if (!g) this.shared.add(share.filter, share.group, g = new SharedGroup(share.group, share.filter));
      isNew = !g.has(sub.clientId);
      g.set({ sub, opts: s }); // a second SUBSCRIBE only changes the options (§4.8.2)
    } else {
      isNew = this.trie.add(s.filter, sub.clientId, { sub, opts: s });
    }
    if (!isNew) return false;
    const n = (this.counts.get(s.filter) ?? 0) + 1;
    this.counts.set(s.filter, n);
    return n === 1;
  }

  /** Remove a subscription; true when it was the filter's last one on this node. */
  remove(clientId: string, filter: string, share?: { group: string; filter: string }): boolean {
    this.clearCache();
    if (share) {
      const g = this.shared.get(share.filter, share.group);
      if (!g || !g.delete(clientId)) return false;
      if (g.size === 0) this.shared.remove(share.filter, share.group);
    } else if (!this.trie.remove(filter, clientId)) return false;
    const n = (this.counts.get(filter) ?? 1) - 1;
    if (n > 0) {
      this.counts.set(filter, n);
      return false;
    }
    this.counts.delete(filter);
    return true;
  }

  /** Every filter routed to this node (the cluster route table's entry for it). */
  filters(): string[] {
    return [...this.counts.keys()];
  }

  /** Whether a shared group has a member on this node. */
  hasGroup(share: string): boolean {
    return this.group(share) !== undefined;
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
  route(msg: StoredMessage, publisher?: string, o?: RouteOptions): { matched: number; pending?: Promise<void>[] } {
    const m = this.lookup(msg.topic);
    let pending: Promise<void>[] | undefined;
    let matched = 0;
    const only = o?.only;
    if (o?.plain !== false) {
      for (let i = 0; i < m.targets.length; i++) {
        const t = m.targets[i];
        if (only !== undefined && !only(t.sub.clientId)) continue;
        const d = merge(t, msg, publisher);
        if (!d) continue;
        if (o?.drained) d.drained = true;
        matched++;
        const r = t.sub.deliver(msg, d);
        if (r) (pending ??= []).push(r);
      }
    }
    for (let i = 0; i < m.groups.length; i++) {
      // one member per group per message; no-local cannot be set on a shared subscription
      // [MQTT-3.8.3-4], so the publisher itself may be chosen
      const g = m.groups[i];
      if (o?.share !== undefined && !o.share(g.share)) continue;
      const r = this.toGroup(g, msg, undefined, false, only);
      if (r === false) continue;
      matched++;
      if (r) (pending ??= []).push(r);
    }
    return { matched, pending };
  }

  private toGroup(
    g: SharedGroup<Subscriber>, msg: StoredMessage, except?: string, onlineOnly = false,
    only?: (id: string) => boolean, drained?: boolean,
  ) {
    const e = g.pick(msg.qos, except, onlineOnly, only, msg.topic);
    if (!e) return false;
    const d: DeliveryOptions = g.options(e, msg);
    if (drained) d.drained = true;
    return e.sub.deliver(msg, d);
  }

  private group(share: string): SharedGroup<Subscriber> | undefined {
    const p = parseShared(share);
    return p && !(p instanceof Error) ? this.shared.get(p.filter, p.group) : undefined;
  }

  /**
   * Give one message to one member of the group `share` (a remote node chose this node for it).
   * False when the group has no (eligible) member here.
   */
  toShare(share: string, msg: StoredMessage, only?: (clientId: string) => boolean, drained?: boolean): false | Promise<void> | void {
    const g = this.group(share);
    return g ? this.toGroup(g, msg, undefined, false, only, drained) : false;
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
