/**
 * Shared subscriptions `$share/{ShareName}/{filter}` (MQTT 5.0 §4.8.2): one SharedGroup per
 * (ShareName, filter); every matching message goes to exactly one member session of the group,
 * each group independently of the others and of non-shared subscriptions.
 *
 * Choosing the member, per message (the spec leaves the choice to the server):
 *   1. a connected member with room in its send window and nothing waiting (round robin);
 *   2. else the connected member with the smallest backlog (in flight + queued): a member that
 *      stops acknowledging fills its window and is no longer chosen while others can take more;
 *   3. else, QoS 1/2 only, an offline member with a persistent session (queued there).
 *   QoS 0 goes to connected members only and is dropped when none is connected.
 *   The granted QoS of the chosen member's subscription is respected [MQTT-4.8.2-3].
 *
 * Redelivery when a member goes away — the choice made here:
 *   - Messages chosen for a member but not sent to it yet (queued behind its window) are handed
 *     to another connected member as soon as its connection closes: nothing was sent, so
 *     nothing can be duplicated.
 *   - QoS 1 sent and unacknowledged stays in the member's session: a persistent session gets it
 *     again (DUP) when it reconnects; when the session ends first (expiry 0 ends it with the
 *     connection, otherwise when the expiry interval passes) the message goes to another member
 *     of the group (the SHOULD of §4.8.2).
 *   - QoS 2 sent and unfinished is completed with the same member when it reconnects
 *     [MQTT-4.8.2-4] and dropped if its session ends first, never sent to another member
 *     [MQTT-4.8.2-5].
 *   - A PUBACK/PUBREC with a failure code ends the delivery; the message is not offered to
 *     anyone else [MQTT-4.8.2-6].
 * The mark saying which group a queued delivery came from (OutgoingEntry.share) lives in memory;
 * after a broker restart the restored entries stay with the session that holds them.
 */
import type { QoS, StoredMessage, StoredSubscription } from "../message.ts";

/** What a group needs of a member session (the router's Subscriber). */
export interface Member {
  readonly clientId: string;
  /** Survives its connection (an offline member can still be given QoS 1/2). */
  readonly persistent: boolean;
  /** Connected, window not full, nothing queued. */
  readyForMore(): boolean;
  isOnline(): boolean;
  /** Messages in flight plus queued. */
  backlog(): number;
  /** Whether it may receive a message on this topic (its ACL): a member that may not is skipped. */
  mayRead(topic: string): boolean;
}

export interface MemberEntry<M extends Member = Member> {
  sub: M;
  opts: StoredSubscription;
}

export class SharedGroup<M extends Member = Member> {
  private readonly members = new Map<string, MemberEntry<M>>();
  /** members as an array, rebuilt after a change (picking allocates nothing). */
  private list: MemberEntry<M>[] = [];
  private rr = 0;

  /** The full `$share/{ShareName}/{filter}`, stamped on each delivery it makes. */
  readonly share: string;

  constructor(readonly name: string, readonly filter: string) {
    this.share = `$share/${name}/${filter}`;
  }

  get size(): number {
    return this.members.size;
  }

  /** Join, or change the options of a member that is already in (not a second membership). */
  set(e: MemberEntry<M>): void {
    this.members.set(e.sub.clientId, e);
    this.list = [...this.members.values()];
  }

  delete(clientId: string): boolean {
    if (!this.members.delete(clientId)) return false;
    this.list = [...this.members.values()];
    return true;
  }

  has(clientId: string): boolean {
    return this.members.has(clientId);
  }

  /** The member for the next message of this QoS, or undefined (see the header for the order). */
  pick(
    qos: QoS, except?: string, onlineOnly = false, only?: (clientId: string) => boolean, topic?: string,
  ): MemberEntry<M> | undefined {
    const list = this.list;
    const n = list.length;
    let busy: MemberEntry<M> | undefined;
    let busyLoad = Infinity;
    let offline: MemberEntry<M> | undefined;
    for (let i = 0; i < n; i++) {
      const at = (this.rr + i) % n;
      const e = list[at];
      if (e.sub.clientId === except) continue;
      if (only !== undefined && !only(e.sub.clientId)) continue;
      if (topic !== undefined && !e.sub.mayRead(topic)) continue;
      if (e.sub.readyForMore()) {
        this.rr = (at + 1) % n;
        return e;
      }
      if (e.sub.isOnline()) {
        const load = e.sub.backlog();
        if (load < busyLoad) {
          busy = e;
          busyLoad = load;
        }
      } else if (offline === undefined && e.sub.persistent) offline = e;
    }
    if (busy || qos === 0 || onlineOnly) return busy;
    return offline;
  }

  /** Whether a connected member other than `except` exists (hand-over is possible now). */
  hasOnline(except?: string): boolean {
    for (const e of this.list) if (e.sub.clientId !== except && e.sub.isOnline()) return true;
    return false;
  }

  /** Delivery options of a message for the chosen member's subscription. */
  options(e: MemberEntry, msg: StoredMessage) {
    return {
      qos: (msg.qos < e.opts.qos ? msg.qos : e.opts.qos) as QoS, // [MQTT-4.8.2-3]
      retain: e.opts.retainAsPublished ? msg.retain : false, // [MQTT-3.3.1-12] / [MQTT-3.3.1-13]
      // only the receiving member's own identifier (§3.3.4)
      subscriptionIds: e.opts.subscriptionId ? [e.opts.subscriptionId] : undefined,
      share: this.share,
    };
  }
}
