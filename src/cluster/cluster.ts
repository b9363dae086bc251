/**
 * The cluster as the broker sees it: where a published message goes besides this node's own
 * sessions, and what arrives from the other nodes.
 *
 * Interest routing: a message goes only to the nodes whose routes (RemoteRoutes, kept current
 * by the bus) match its topic, once per node however many subscribers that node has, and local
 * subscribers never cause bus traffic. A QoS 1/2 publisher is acknowledged once every target
 * node's inbox holds the message (the bus stores it before it answers), so an acknowledged
 * message survives the target node dying: the survivor that adopts its sessions drains its
 * inbox (sessions.ts).
 *
 * Shared subscriptions: the publishing node picks, per message and per group, one node among
 * those with members of the group (itself included), round robin; that node picks the member.
 * A node chosen for a group it no longer has a member of passes the message on to another node
 * that has one (and drops it only when none is left).
 */
import type { StoredMessage } from "../message.ts";
import type { Logger } from "../log.ts";
import type { RouteOptions, Router } from "../routing/router.ts";
import { releaseEncodings } from "../session/client.ts";
import type { ClusterBus, Forward } from "./bus.ts";
import { type RemoteMatch, RemoteRoutes } from "./routes.ts";

/** Forwarded messages go to ordinary subscriptions only: the sender chose the groups. */
const NO_GROUP = () => false;
const PLAIN_ONLY: RouteOptions = { share: NO_GROUP };

export interface ClusterHost {
  readonly router: Router;
  readonly log: Logger;
  /** A retained message arrived from another node (supersedes pending retained lookups). */
  retainedSeen(topic: string): void;
}

export interface RouteResult {
  matched: number;
  pending?: Promise<unknown>[];
}

export class Cluster {
  readonly remote = new RemoteRoutes();
  /** Round-robin position per shared group. */
  private rr = new Map<string, number>();

  constructor(readonly bus: ClusterBus, private readonly host: ClusterHost) {}

  get enabled(): boolean {
    return this.bus.clustered;
  }

  get nodeId(): string {
    return this.bus.nodeId;
  }

  // --- routes -----------------------------------------------------------------------------

  /** Filters that became routed to this node: resolves once every live node knows. */
  subscribed(filters: string[]): Promise<void> | undefined {
    if (!this.enabled || filters.length === 0) return undefined;
    return this.bus.routes(filters, []);
  }

  unsubscribed(filters: string[]): void {
    if (!this.enabled || filters.length === 0) return;
    this.bus.routes([], filters).catch((e) =>
      this.host.log.warn("route removal not shared (re-sent when the store is back)", { error: String(e) })
    );
  }

  // --- publishing -------------------------------------------------------------------------

  /** Deliver a message published on this node: local sessions, then the nodes that want it. */
  route(msg: StoredMessage, publisher?: string): RouteResult {
    const router = this.host.router;
    const remote = this.enabled ? this.remote.match(msg.topic) : undefined;
    if (remote === undefined || (remote.nodes.length === 0 && remote.shares.size === 0)) {
      return router.route(msg, publisher);
    }
    if (remote.shares.size === 0) {
      // the common case: ordinary subscriptions only, one send per node, nothing to decide
      const r: RouteResult = router.route(msg, publisher);
      for (const node of remote.nodes) this.sendTo(node, msg, publisher, true, undefined, r);
      return r;
    }
    // shared groups: this node or one of those with members, round robin per group
    let chosen: Map<string, string[]> | undefined;
    const choose = (node: string, share: string) => {
      const list = (chosen ??= new Map()).get(node);
      if (list) list.push(share);
      else chosen.set(node, [share]);
    };
    let decided: Set<string> | undefined;
    const r: RouteResult = router.route(msg, publisher, {
      share: (share) => {
        (decided ??= new Set()).add(share);
        const nodes = remote.shares.get(share);
        if (nodes === undefined) return true;
        const i = this.next(share, nodes.length + 1);
        if (i === nodes.length) return true;
        choose(nodes[i], share);
        return false;
      },
    });
    for (const [share, nodes] of remote.shares) {
      if (!decided?.has(share)) choose(nodes[this.next(share, nodes.length)], share);
    }
    for (const node of remote.nodes) {
      this.sendTo(node, msg, publisher, true, chosen?.get(node), r);
      chosen?.delete(node);
    }
    if (chosen) for (const [node, shares] of chosen) this.sendTo(node, msg, publisher, false, shares, r);
    return r;
  }

  private next(share: string, n: number): number {
    const i = (this.rr.get(share) ?? 0) % n;
    this.rr.set(share, i + 1);
    return i;
  }

  /** One node's copy; a QoS 1/2 publisher's acknowledgement waits until it is stored. */
  private sendTo(node: string, msg: StoredMessage, publisher: string | undefined, plain: boolean, shares: string[] | undefined, r: RouteResult): void {
    r.matched++;
    const p = this.bus.send(node, msg, publisher, plain, shares);
    // QoS 0 is not waited for (a bus reports its own failed sends; see ClusterBus.send)
    if (msg.qos > 0) (r.pending ??= []).push(p);
  }

  // --- from other nodes -------------------------------------------------------------------

  /**
   * Messages another node forwarded here (or, with `only`, the inbox of a dead node whose
   * sessions were adopted here: delivered to those sessions only).
   */
  deliver(list: Forward[], only?: (clientId: string) => boolean): Promise<unknown> | undefined {
    const router = this.host.router;
    let pending: Promise<unknown>[] | undefined;
    // one options object per batch, not per message
    const opts: RouteOptions = only === undefined ? PLAIN_ONLY : { share: NO_GROUP, only, drained: true };
    const drained = only !== undefined;
    for (const f of list) {
      const msg = f.msg;
      if (msg.retain) this.host.retainedSeen(msg.topic);
      if (f.plain) {
        const r = router.route(msg, f.publisher, opts);
        if (r.pending) (pending ??= []).push(...r.pending);
      }
      if (f.shares !== undefined) {
        for (const share of f.shares) {
          // a group message from a dead node's inbox goes to any member still here (the dead
          // node's own members are gone or adopted; the group is what counts)
          const r = router.toShare(share, msg, undefined, drained);
          if (r === false) {
            const on = this.passOn(share, msg, f.publisher);
            if (on) (pending ??= []).push(on);
          } else if (r) (pending ??= []).push(r);
        }
      }
      // the fan-out was synchronous: the frame (a view into the whole batch) is not kept
      msg.wire = undefined;
    }
    releaseEncodings(); // nor the encodings shared during the fan-out
    if (pending === undefined) return undefined;
    return Promise.all(pending);
  }

  /** A group message for a group with no member here (any more): to another node that has one. */
  private passOn(share: string, msg: StoredMessage, publisher?: string): Promise<void> | undefined {
    const nodes = this.remote.match(msg.topic).shares.get(share)?.filter((n) => this.bus.isLive(n));
    if (!nodes || nodes.length === 0) {
      this.host.log.debug("shared message dropped: no member left in the cluster", { share });
      return undefined;
    }
    return this.bus.send(nodes[this.next(share, nodes.length)], msg, publisher, false, [share]);
  }

  /** What the route table says about a topic (tests, metrics). */
  match(topic: string): RemoteMatch {
    return this.remote.match(topic);
  }
}
