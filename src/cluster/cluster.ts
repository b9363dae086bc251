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
import type { Router } from "../routing/router.ts";
import type { ClusterBus, Forward } from "./bus.ts";
import { type RemoteMatch, RemoteRoutes } from "./routes.ts";

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
    const targets = new Map<string, Forward>();
    const target = (node: string) => {
      let f = targets.get(node);
      if (!f) targets.set(node, f = { msg, publisher, plain: false });
      return f;
    };
    for (const n of remote.nodes) target(n).plain = true;
    let decided: Set<string> | undefined;
    const r = router.route(msg, publisher, remote.shares.size === 0 ? undefined : {
      share: (share) => {
        (decided ??= new Set()).add(share);
        const nodes = remote.shares.get(share);
        if (nodes === undefined) return true;
        const i = this.next(share, nodes.length + 1);
        if (i === nodes.length) return true;
        (target(nodes[i]).shares ??= []).push(share);
        return false;
      },
    });
    for (const [share, nodes] of remote.shares) {
      if (decided?.has(share)) continue;
      (target(nodes[this.next(share, nodes.length)]).shares ??= []).push(share);
    }
    return this.send(targets, msg, r);
  }

  private next(share: string, n: number): number {
    const i = (this.rr.get(share) ?? 0) % n;
    this.rr.set(share, i + 1);
    return i;
  }

  private send(targets: Map<string, Forward>, msg: StoredMessage, r: RouteResult): RouteResult {
    let pending = r.pending;
    let matched = r.matched;
    for (const [node, f] of targets) {
      matched++;
      const p = this.bus.send(node, f);
      if (msg.qos > 0) (pending ??= []).push(p);
      else p.catch((e) => this.host.log.debug("QoS 0 message not forwarded", { node, error: String(e) }));
    }
    return { matched, pending };
  }

  // --- from other nodes -------------------------------------------------------------------

  /**
   * Messages another node forwarded here (or, with `only`, the inbox of a dead node whose
   * sessions were adopted here: delivered to those sessions only).
   */
  deliver(list: Forward[], only?: (clientId: string) => boolean): Promise<unknown> | undefined {
    const router = this.host.router;
    let pending: Promise<unknown>[] | undefined;
    for (const f of list) {
      const msg = f.msg;
      if (msg.retain) this.host.retainedSeen(msg.topic);
      if (f.plain) {
        const r = router.route(msg, f.publisher, { share: () => false, only, drained: only !== undefined });
        if (r.pending) (pending ??= []).push(...r.pending);
      }
      if (f.shares === undefined) continue;
      for (const share of f.shares) {
        // a group message from a dead node's inbox goes to any member still here (the dead
        // node's own members are gone or adopted; the group is what counts)
        const r = router.toShare(share, msg, undefined, only !== undefined);
        if (r === false) {
          const on = this.passOn(share, msg, f.publisher);
          if (on) (pending ??= []).push(on);
        } else if (r) (pending ??= []).push(r);
      }
    }
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
    return this.bus.send(nodes[this.next(share, nodes.length)], { msg, publisher, plain: false, shares: [share] });
  }

  /** What the route table says about a topic (tests, metrics). */
  match(topic: string): RemoteMatch {
    return this.remote.match(topic);
  }
}
