/**
 * The session registry: the one door through which a session is attached to a connection,
 * taken over, detached, expired, ended, restored and adopted, and where wills are published.
 * CONNECT's handler and the broker only call it.
 *
 * In a cluster (bus.clustered) every client id has one owner node, recorded in the store with a
 * fencing token that every write of the session's state must present (the persistence checks
 * it), and a lock that lets one CONNECT per client id proceed at a time cluster-wide:
 *
 * - CONNECT here, owner elsewhere and alive: ask the owner to close the old connection (kick),
 *   then, for a session that continues, learn its subscriptions and make them routed here (every
 *   node has applied the route when that resolves, so from then on this node gets the session's
 *   messages too, held until the session is loaded), then ask the owner to release it (it stops
 *   delivering and writing; its answer comes after its last write), then take ownership by
 *   compare-and-set on the owner's token, load the state and deliver what was held, skipping
 *   what the loaded queue already has. The kick comes first so that no message can be
 *   acknowledged on the old connection while it is also held here (no duplicates); the routes
 *   come before the release so that nothing published meanwhile is missed (no loss).
 * - Owner dead (lease lapsed): wait until a survivor has adopted its sessions, then as above.
 * - A dead node's sessions are adopted by the one survivor that wins its reaping: each session
 *   is claimed by compare-and-set (so each will is published by exactly one node), restored and
 *   held; then the dead node's routes are dropped everywhere and its inbox drained into the
 *   adopted sessions (only those), and only then are they released, older messages first.
 */
import type { Client } from "./session/client.ts";
import type { BrokerContext } from "./session/context.ts";
import { NEVER_EXPIRES, Session } from "./session/session.ts";
import { willDelaySeconds, willMessage } from "./session/will.ts";
import type { OutgoingEntry, StoredMessage, StoredSubscription, StoredWill } from "./message.ts";
import type { SessionRecord } from "./persistence/persistence.ts";
import type { Owner, Request } from "./cluster/bus.ts";
import type { Cluster } from "./cluster/cluster.ts";
import { MqttError, RC } from "./protocol/reason-codes.ts";
import { type Permissions, reservedTopic } from "./auth/auth.ts";

const MAX_TIMER = 2 ** 31 - 1;
/** Sessions claimed at once while adopting a dead node's (each claim is a round trip). */
const ADOPT_CONCURRENCY = 64;

export interface RegistryHost extends BrokerContext {
  readonly cluster: Cluster;
  /** Subscriptions into the router and the cluster route table (resolves when routed everywhere). */
  addSubscriptions(s: Session, subs: StoredSubscription[]): Promise<void> | undefined;
  removeAllSubscriptions(s: Session): void;
  readonly shuttingDown: boolean;
}

export interface Attached {
  session: Session;
  present: boolean;
}

interface Meta {
  /** The store holds this session's state (it must be deleted when the session ends). */
  stored: boolean;
  /** Ownership token (cluster): presented by every write of the session's state. */
  token?: string;
}

export class SessionRegistry {
  readonly map = new Map<string, Session>();
  private meta = new WeakMap<Session, Meta>();

  constructor(private readonly b: RegistryHost) {}

  private get bus() {
    return this.b.cluster.bus;
  }

  private metaOf(s: Session): Meta {
    let m = this.meta.get(s);
    if (!m) this.meta.set(s, m = { stored: false });
    return m;
  }

  /** The ownership token of a session held here (cluster), if any. */
  tokenOf(s: Session): string | undefined {
    return this.meta.get(s)?.token;
  }

  private own(s: Session, token: string | undefined): void {
    if (token === undefined) return;
    this.metaOf(s).token = token;
    this.b.persistence.fence?.(s.clientId, token);
  }

  // --- attach -----------------------------------------------------------------------------

  /** CONNECT: the session for this client id, taken over from wherever it is. */
  async attach(clientId: string, clean: boolean): Promise<Attached> {
    if (!this.b.cluster.enabled) return await this.attachHere(clientId, clean);
    let lock: string | undefined;
    try {
      lock = await this.bus.lock(clientId, this.b.config.takeoverTimeoutMs * 2);
    } catch (e) {
      return this.unregistered(clientId, clean, e);
    }
    if (lock === undefined) {
      throw new MqttError(RC.SERVER_BUSY, "another connection with this client id is being set up");
    }
    try {
      for (let round = 0; round < 4; round++) {
        const owner = await this.bus.owner(clientId);
        if (owner === undefined || owner.node === this.bus.nodeId) return await this.attachHere(clientId, clean);
        if (this.bus.isLive(owner.node)) {
          const r = await this.takeFrom(owner, clientId, clean);
          if (r) return r;
          continue; // the owner turned out dead: its sessions are adopted first
        }
        await this.untilReaped(clientId, owner);
      }
      throw new MqttError(RC.SERVER_UNAVAILABLE, "the session's owner could not be settled");
    } catch (e) {
      if (e instanceof MqttError) throw e;
      return this.unregistered(clientId, clean, e);
    } finally {
      this.bus.unlock(clientId, lock).catch((e) => this.storeFailed("CONNECT lock not released (it expires by itself)", clientId, e));
    }
  }

  /**
   * The cluster store is unreachable: a clean session still connects (local traffic goes on;
   * its ownership is registered when the store is back); a persistent one is refused with
   * Server unavailable (issue: its state cannot be loaded or kept safe).
   */
  private async unregistered(clientId: string, clean: boolean, e: unknown): Promise<Attached> {
    this.b.log.warn("cluster store unavailable for CONNECT", { clientId, error: String((e as Error)?.message ?? e) });
    if (!clean) throw new MqttError(RC.SERVER_UNAVAILABLE, "server unavailable, try again later");
    return await this.attachHere(clientId, clean, false);
  }

  /** The session is (or may be made) owned by this node. */
  private async attachHere(clientId: string, clean: boolean, register = true): Promise<Attached> {
    let s = this.map.get(clientId);
    if (s?.client) {
      // [MQTT-3.1.4-3] the new connection wins; MQTT 5 gets DISCONNECT 0x8E
      this.b.log.info("session taken over", { clientId });
      s.client.disconnect(RC.SESSION_TAKEN_OVER, "session taken over by a new connection");
      s = this.map.get(clientId);
    }
    let token = s ? this.tokenOf(s) : undefined;
    if (!s) {
      if (this.b.cluster.enabled && register) {
        // read again: a session that just ended here may have given its ownership up
        token = await this.claim(clientId, await this.bus.owner(clientId));
        this.b.persistence.fence?.(clientId, token);
      }
      let rec: SessionRecord | undefined;
      try {
        rec = await this.b.persistence.getSession(clientId);
      } catch (e) {
        // without the store a persistent session cannot be resumed nor kept: refused (0x88);
        // a clean one does not need it
        if (!clean) throw new MqttError(RC.SERVER_UNAVAILABLE, "server unavailable, try again later");
        this.b.log.warn("session record not read", { clientId, error: String((e as Error)?.message ?? e) });
      }
      s = this.map.get(clientId); // another connect may have won meanwhile
      if (!s && rec && rec.expiryInterval > 0) s = await this.restore(rec, token);
      if (s?.client) s.client.disconnect(RC.SESSION_TAKEN_OVER, "session taken over by a new connection");
      if (!s && rec && rec.expiryInterval === 0 && rec.will && rec.disconnectedAt === undefined) {
        // a clean session recorded for its will whose connection died without this node
        // noticing (an earlier process): its session ends now, and its will goes
        this.publishWill(rec.will, clientId, rec);
      }
    }
    if (s) this.cancelTimers(s, clean);
    if (s && clean) {
      // [MQTT-3.1.2-6] / [MQTT-3.1.2-4] clean start discards the previous session
      await this.end(s, true);
      s = undefined;
    }
    if (s) return { session: s, present: true };
    const fresh = new Session(clientId, this.b);
    this.map.set(clientId, fresh);
    this.own(fresh, token);
    return { session: fresh, present: false };
  }

  /** A reconnect stops the expiry; a pending delayed will is cancelled, or sent if the session ends. */
  private cancelTimers(s: Session, clean: boolean): void {
    this.b.clock.clearTimeout(s.expiryTimer);
    s.expiryTimer = undefined;
    if (s.pendingWill) {
      this.b.clock.clearTimeout(s.willTimer);
      const w = s.pendingWill;
      s.pendingWill = undefined;
      // reconnect within the delay cancels the will [MQTT-3.1.3-9]; a clean start ends the
      // old session, and a session end sends it
      if (clean) this.publishWill(w, s.clientId, s);
    }
  }

  /** Take ownership: from `owner` (its token), or the unowned id; a new token. */
  private async claim(clientId: string, owner: Owner | undefined): Promise<string> {
    let expect: string | null | "any" = owner ? owner.token : null;
    for (let i = 0; i < 3; i++) {
      const t = await this.bus.claim(clientId, expect);
      if (t !== undefined) return t;
      const now = await this.bus.owner(clientId);
      expect = now ? now.token : null;
      if (now && now.node !== this.bus.nodeId && this.bus.isLive(now.node)) break;
    }
    throw new MqttError(RC.SERVER_BUSY, "the client id is being taken by another node");
  }

  /** The owner is dead: wait (bounded) until a survivor has adopted its sessions. */
  private async untilReaped(clientId: string, owner: Owner): Promise<void> {
    const deadline = this.b.clock.now() + this.b.config.nodeLeaseMs * 4 + 5000;
    let logged = false;
    while (this.b.clock.now() < deadline) {
      // alive after all (it joined after this node last looked): take over from it instead
      if (!(await this.bus.suspect(owner.node))) return;
      const now = await this.bus.owner(clientId);
      if (now?.token !== owner.token) return;
      if (!logged) this.b.log.info("waiting for a dead node's sessions to be adopted", { clientId, peer: owner.node });
      logged = true;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new MqttError(RC.SERVER_UNAVAILABLE, `node ${owner.node} is gone and its sessions are not adopted yet`);
  }

  /**
   * The owner is another live node: kick, route here, release, claim, load (see the header).
   * Undefined when the owner did not answer and turned out dead (adopt first, then retry).
   */
  private async takeFrom(owner: Owner, clientId: string, clean: boolean): Promise<Attached | undefined> {
    const b = this.b;
    const ask = (op: Request["op"]) =>
      this.bus.request(owner.node, { op, clientId, by: this.bus.nodeId }, b.config.takeoverTimeoutMs).then(
        () => true,
        (e) => {
          b.log.warn("node did not answer a takeover request", { clientId, peer: owner.node, op, error: String(e?.message ?? e) });
          return false;
        },
      );
    b.log.info("session taken over from another node", { clientId, from: owner.node });
    const kicked = await ask("kick");
    if (!kicked && await this.bus.suspect(owner.node)) return undefined;
    let held: Session | undefined;
    if (!clean && kicked) {
      const subs = await b.persistence.subscriptions(clientId);
      held = new Session(clientId, b);
      held.hold();
      this.map.set(clientId, held);
      await b.addSubscriptions(held, subs);
    }
    try {
      const released = kicked && await ask("release");
      const token = await this.claimAfter(owner, clientId, released);
      b.persistence.fence?.(clientId, token);
      // the record and the queues in one round trip (the queues are only used when resumed)
      const [rec, state] = await Promise.all([b.persistence.getSession(clientId), clean ? undefined : this.fetch(clientId)]);
      if (clean || !rec || rec.expiryInterval === 0) {
        if (held) this.drop(held);
        if (rec?.will && (rec.willAt !== undefined || (clean && rec.disconnectedAt === undefined))) {
          // the previous session ends here: its pending will goes now [MQTT-3.1.3-9]
          this.publishWill(rec.will, clientId, rec);
        }
        if (rec) await b.persistence.deleteSession(clientId);
        const fresh = new Session(clientId, b);
        this.map.set(clientId, fresh);
        this.own(fresh, token);
        return { session: fresh, present: false };
      }
      if (!held) {
        held = new Session(clientId, b);
        held.hold();
        this.map.set(clientId, held);
        await b.addSubscriptions(held, await b.persistence.subscriptions(clientId));
      }
      this.own(held, token);
      this.apply(held, rec, state!);
      this.metaOf(held).stored = true;
      held.unhold();
      return { session: held, present: true };
    } catch (e) {
      if (held) this.drop(held);
      throw e;
    }
  }

  /**
   * Ownership after the old owner answered (or not): by compare-and-set on its token; an owner
   * that released may have given the id up meanwhile (its session ended), or still hold it
   * under another token of its own; without an answer the id is taken whoever has it.
   */
  private async claimAfter(owner: Owner, clientId: string, released: boolean): Promise<string> {
    let expect: string | null | "any" = released ? owner.token : "any";
    for (let i = 0; i < 3; i++) {
      const t = await this.bus.claim(clientId, expect);
      if (t !== undefined) return t;
      const now = await this.bus.owner(clientId);
      if (now === undefined) expect = null;
      else if (now.node === owner.node || now.node === this.bus.nodeId) expect = now.token;
      else break;
    }
    throw new MqttError(RC.SERVER_BUSY, "the client id is being taken by another node");
  }
  /** Answer another node's request about a session this node holds. */
  async onRequest(from: string, req: Request): Promise<void> {
    let s = this.map.get(req.clientId);
    if (!s) return;
    if (s.holding) {
      // still being adopted here (a dead node's inbox is being drained into it): finish first,
      // so that what it holds is stored before another node loads it
      await s.ready();
      s = this.map.get(req.clientId);
      if (!s) return;
    }
    if (s.client) {
      // [MQTT-3.1.4-3] the connection on the other node wins; MQTT 5 gets DISCONNECT 0x8E
      this.b.log.info("session taken over by another node", { clientId: req.clientId, by: from });
      s.client.disconnect(RC.SESSION_TAKEN_OVER, "session taken over by a new connection");
    }
    if (req.op === "release") {
      const cur = this.map.get(req.clientId);
      if (cur) this.drop(cur);
      // everything this node wrote for the session was sent before the answer, on the same
      // connection: the new owner reads it all
      await this.b.persistence.barrier?.();
    }
  }

  /** Forget a session here without touching its stored state (it lives on elsewhere). */
  private drop(s: Session): void {
    this.b.clock.clearTimeout(s.expiryTimer);
    this.b.clock.clearTimeout(s.willTimer);
    s.pendingWill = undefined;
    this.b.removeAllSubscriptions(s);
    if (this.map.get(s.clientId) === s) this.map.delete(s.clientId);
    const token = this.tokenOf(s);
    if (token !== undefined) this.b.persistence.fence?.(s.clientId, undefined, token);
    s.unhold();
  }

  /** A write was refused: another node owns the session now. Let it go without writing. */
  lost(clientId: string): void {
    const s = this.map.get(clientId);
    if (!s) return;
    this.b.log.warn("session owned by another node now; dropped here", { clientId });
    s.client?.disconnect(RC.SESSION_TAKEN_OVER, "session taken over by a new connection");
    this.drop(s);
  }

  /** CONNECT accepted: record the session (persistent ones, and any connection with a will). */
  async persist(s: Session, will?: StoredWill): Promise<void> {
    const rec: SessionRecord = {
      clientId: s.clientId,
      protocolVersion: s.protocolVersion,
      expiryInterval: s.expiryInterval,
      node: this.bus.nodeId,
      will,
      username: s.username,
    };
    this.metaOf(s).stored = true;
    await this.b.persistence.putSession(rec);
  }

  // --- detach / end -----------------------------------------------------------------------

  /** The connection of `c` closed. */
  detach(c: Client, publishWill: boolean): void {
    const s = c.session;
    const will = publishWill && !this.b.shuttingDown ? c.will : undefined;
    c.will = undefined;
    if (!s || s.client !== c) return;
    s.client = undefined;
    if (s.expiryInterval === 0) {
      // the session ends with the connection; the will goes now [MQTT-3.1.3-9]
      void this.end(s, false);
      if (will) this.publishWill(will, s.clientId, s);
      return;
    }
    s.detached(); // its messages in flight may now wait long: compact them
    // shared-subscription messages queued here and not sent yet go to a connected member of
    // their group now (routing/shared.ts); what was sent waits for this session to come back
    const unsent = s.takeUnsentShared((share) => this.b.router.canHandOver(share, s.clientId));
    if (unsent.length) this.handOver(unsent, s.clientId, true);
    const now = this.b.clock.now();
    let willAt: number | undefined;
    if (will) {
      const delay = willDelaySeconds(will, s.expiryInterval);
      if (delay === 0) this.publishWill(will, s.clientId, s);
      else {
        willAt = now + delay * 1000;
        this.scheduleWill(s, will, willAt);
      }
    }
    this.scheduleExpiry(s, now + s.expiryInterval * 1000);
    this.store(s, {
      clientId: s.clientId, protocolVersion: s.protocolVersion, expiryInterval: s.expiryInterval, username: s.username,
      disconnectedAt: now, will: willAt ? will : undefined, willAt,
    });
  }

  private store(s: Session, rec: SessionRecord): void {
    this.metaOf(s).stored = true;
    this.b.persistence.putSession(rec).catch((e) => this.failed(s, "session state not stored", e));
  }

  /** A write for this session failed: lost ownership (drop it) or the store is away (log). */
  failed(s: Session, what: string, e: unknown): void {
    if ((e as Error)?.name === "FencedError") {
      this.lost(s.clientId);
      return;
    }
    this.b.stats.persistenceErrors++;
    this.b.log.error(what, { clientId: s.clientId, error: String((e as Error)?.message ?? e) });
  }

  /** A cluster-store write about a client id failed where nothing else depends on it: logged and counted. */
  private storeFailed(what: string, clientId: string, e: unknown): void {
    this.b.stats.persistenceErrors++;
    this.b.log.warn(what, { clientId, error: String((e as Error)?.message ?? e) });
  }

  /**
   * Publish a will, if its client may (still) publish to its topic: the session's permissions
   * now, or those of the stored session's user (the rules may have changed since its CONNECT).
   */
  publishWill(w: StoredWill, clientId: string, who: Session | { username?: string }): void {
    const go = (p: Permissions | undefined) => {
      if (reservedTopic(w.topic) || (p !== undefined && !p.canPublish(w.topic))) {
        this.b.stats.aclDenied++;
        this.b.log.info("will not published: not authorized", { clientId, topic: w.topic });
        return;
      }
      this.b.log.debug("publishing will", { clientId, topic: w.topic });
      const r = this.b.publish(willMessage(w, this.b.newMessageId(), this.b.clock.now()), clientId);
      r.done?.catch((e) => this.b.log.error("will not stored", { clientId, error: String(e) }));
    };
    const p = who instanceof Session ? who.permissions : this.b.permissionsFor({ clientId, username: who.username });
    if (p instanceof Promise) {
      p.then(go, (e) => this.b.log.error("will not published: permissions unavailable", { clientId, error: String(e?.message ?? e) }));
    } else go(p);
  }

  private scheduleWill(s: Session, w: StoredWill, at: number) {
    s.pendingWill = w;
    this.b.clock.clearTimeout(s.willTimer);
    s.willTimer = this.longTimeout(at, () => {
      if (s.pendingWill !== w || s.client || this.map.get(s.clientId) !== s) return;
      s.pendingWill = undefined;
      this.publishWill(w, s.clientId, s);
      this.store(s, {
        clientId: s.clientId, protocolVersion: s.protocolVersion, expiryInterval: s.expiryInterval, username: s.username,
        disconnectedAt: this.b.clock.now(),
      });
    });
  }

  private scheduleExpiry(s: Session, at: number) {
    this.b.clock.clearTimeout(s.expiryTimer);
    if (s.expiryInterval >= NEVER_EXPIRES) return; // 0xFFFFFFFF never expires (§3.1.2.11.2)
    s.expiryTimer = this.longTimeout(at, () => {
      if (s.client || this.map.get(s.clientId) !== s) return;
      this.b.log.debug("session expired", { clientId: s.clientId });
      this.b.stats.sessionsExpired++;
      if (s.pendingWill) {
        const w = s.pendingWill;
        s.pendingWill = undefined;
        this.publishWill(w, s.clientId, s);
      }
      void this.end(s, false);
    });
  }

  /** setTimeout for an absolute time that may be further away than 24.8 days. */
  private longTimeout(at: number, fn: () => void): unknown {
    const holder: { h?: unknown } = {};
    const arm = () => {
      const ms = at - this.b.clock.now();
      if (ms > MAX_TIMER) holder.h = this.b.clock.setTimeout(arm, MAX_TIMER);
      else holder.h = this.b.clock.setTimeout(fn, Math.max(0, ms));
    };
    arm();
    return holder.h;
  }

  /**
   * Shared-subscription deliveries a member cannot complete go to another member of the same
   * group (routing/shared.ts); dropped when the group has no one else.
   */
  private handOver(entries: OutgoingEntry[], from: string, onlineOnly: boolean): void {
    for (const e of entries) {
      const r = this.b.router.handOver(e.share!, e.msg, from, onlineOnly);
      if (r === false) this.b.log.debug("shared message dropped: no other member", { clientId: from, share: e.share });
      else if (r) r.catch((err) => this.b.log.error("shared message not stored", { share: e.share, error: String(err) }));
    }
  }

  /** The session ends: its subscriptions, queues, stored state and (cluster) ownership go. */
  async end(s: Session, replaced: boolean): Promise<void> {
    this.b.clock.clearTimeout(s.expiryTimer);
    this.b.clock.clearTimeout(s.willTimer);
    this.b.removeAllSubscriptions(s);
    // after leaving its groups: its unsent and QoS 1 in-flight shared messages go to another
    // member (QoS 2 already sent does not [MQTT-4.8.2-5])
    const handOn = s.sharedToHandOn();
    s.clearQueues();
    if (handOn.length) this.handOver(handOn, s.clientId, false);
    if (this.map.get(s.clientId) === s) this.map.delete(s.clientId);
    const m = this.metaOf(s);
    // both writes leave in this order on one connection, before anything a successor sends
    let deleted: Promise<void> | undefined;
    if (m.stored) {
      m.stored = false;
      deleted = this.b.persistence.deleteSession(s.clientId).catch((e) => this.failed(s, "session not deleted from storage", e));
    }
    // a clean start keeps the ownership for the session that replaces this one
    if (m.token !== undefined && !replaced) {
      this.bus.disown(s.clientId, m.token).catch((e) => this.storeFailed("ownership not given up (the next claim replaces it)", s.clientId, e));
      this.b.persistence.fence?.(s.clientId, undefined, m.token);
    }
    await deleted;
  }

  // --- restore / adopt --------------------------------------------------------------------

  /** Rebuild one session from the store (offline), owned here with `token`. */
  private async restore(rec: SessionRecord, token: string | undefined, held = false): Promise<Session> {
    const s = new Session(rec.clientId, this.b);
    s.expiryInterval = cappedExpiry(rec, this.b.config.maxSessionExpiry);
    s.protocolVersion = rec.protocolVersion;
    // its last user's rules apply while it is offline (deliveries into its queue)
    s.username = rec.username;
    this.metaOf(s).stored = true;
    this.own(s, token);
    if (held) s.hold();
    this.map.set(rec.clientId, s);
    const [subs, , permissions] = await Promise.all([
      this.b.persistence.subscriptions(rec.clientId), this.load(s, rec),
      this.b.permissionsFor({ clientId: rec.clientId, username: rec.username }),
    ]);
    s.permissions = permissions;
    await this.b.addSubscriptions(s, subs);
    return s;
  }

  /** Outgoing messages and incoming QoS 2 ids from the store into a session. */
  private async load(s: Session, rec: SessionRecord): Promise<void> {
    this.apply(s, rec, await this.fetch(rec.clientId));
  }

  private async fetch(clientId: string): Promise<{ out: OutgoingEntry[]; q2: number[] }> {
    const [out, q2] = await Promise.all([this.b.persistence.outgoing(clientId), this.b.persistence.incomingQos2(clientId)]);
    return { out, q2 };
  }

  private apply(s: Session, rec: SessionRecord, { out, q2 }: { out: OutgoingEntry[]; q2: number[] }): void {
    s.expiryInterval = cappedExpiry(rec, this.b.config.maxSessionExpiry);
    s.protocolVersion = rec.protocolVersion;
    s.restoreOutgoing(out);
    for (const id of q2) s.incomingQos2.add(id);
  }

  /**
   * A session recovered from the store without a live connection (an earlier process died, or
   * its node did): start its expiry, publish or schedule its will. The record is rewritten
   * first (without the will once it is due), so a will is never published twice.
   */
  private async recover(s: Session, rec: SessionRecord, now: number): Promise<void> {
    const crashed = rec.disconnectedAt === undefined;
    const since = crashed ? now : rec.disconnectedAt!;
    const expiresAt = s.expiryInterval >= NEVER_EXPIRES ? Infinity : since + s.expiryInterval * 1000;
    let willAt = rec.willAt;
    if (crashed && rec.will) willAt = now + willDelaySeconds(rec.will, rec.expiryInterval) * 1000;
    const willDue = rec.will !== undefined && willAt !== undefined && (willAt <= now || expiresAt <= now);
    if (expiresAt <= now) {
      await this.end(s, false);
      if (willDue) this.publishWill(rec.will!, s.clientId, s);
      return;
    }
    if (crashed || willDue) {
      await this.b.persistence.putSession({
        clientId: s.clientId, protocolVersion: s.protocolVersion, expiryInterval: s.expiryInterval, username: s.username,
        disconnectedAt: since, will: willDue ? undefined : rec.will, willAt: willDue ? undefined : willAt,
      });
    }
    if (rec.will && willAt !== undefined) {
      if (willDue) this.publishWill(rec.will, s.clientId, s);
      else this.scheduleWill(s, rec.will, willAt);
    }
    this.scheduleExpiry(s, expiresAt);
  }

  /** A clean session recorded only for its will: its connection died with its process. */
  private async recoverClean(rec: SessionRecord, token: string | undefined): Promise<void> {
    await this.b.persistence.deleteSession(rec.clientId);
    if (token !== undefined) {
      await this.bus.disown(rec.clientId, token).catch((e) => this.storeFailed("ownership not given up (the next claim replaces it)", rec.clientId, e));
    }
    if (rec.will && rec.disconnectedAt === undefined) this.publishWill(rec.will, rec.clientId, rec);
  }

  /**
   * Start-up: take every stored session nobody owns (an earlier single process, or a store whose
   * ownership records are gone): restore it here, publish the wills of connections that died
   * with their process, resume delayed wills and expiries. A dead node's sessions are adopted by
   * reaping (adopt), not here.
   */
  async start(): Promise<void> {
    const records: SessionRecord[] = [];
    for await (const rec of this.b.persistence.sessions()) records.push(rec);
    const taken: Array<{ rec: SessionRecord; token?: string }> = [];
    await this.inBatches(records, async (rec) => {
      let token: string | undefined;
      if (this.b.cluster.enabled) {
        if ((await this.bus.owner(rec.clientId)) !== undefined) return;
        token = await this.bus.claim(rec.clientId, null);
        if (token === undefined) return; // another node took it meanwhile
        this.b.persistence.fence?.(rec.clientId, token);
      }
      taken.push({ rec, token });
    });
    const restored = await this.recoverAll(taken, false);
    if (restored.length) this.b.log.info("sessions restored", { count: restored.length });
  }

  /**
   * Sessions taken from the store (owned here now): every persistent one restored first, then
   * the wills and expiries of all of them, so that a will published now reaches a subscriber
   * among them [issue: restore sessions before publishing recovered wills].
   */
  private async recoverAll(taken: Array<{ rec: SessionRecord; token?: string }>, held: boolean): Promise<string[]> {
    const now = this.b.clock.now();
    const restored: Array<[Session, SessionRecord]> = [];
    await this.inBatches(taken.filter((t) => t.rec.expiryInterval > 0), async ({ rec, token }) => {
      restored.push([await this.restore(rec, token, held), rec]);
    });
    for (const { rec, token } of taken) if (rec.expiryInterval === 0) await this.recoverClean(rec, token);
    for (const [s, rec] of restored) await this.recover(s, rec, now);
    return restored.map(([s]) => s.clientId);
  }

  private async inBatches<T>(items: T[], fn: (t: T) => Promise<void>): Promise<void> {
    for (let i = 0; i < items.length; i += ADOPT_CONCURRENCY) {
      await Promise.all(items.slice(i, i + ADOPT_CONCURRENCY).map(fn));
    }
  }

  /**
   * This node won the reaping of a dead node: claim each of its sessions (exactly one survivor
   * succeeds per session), publish the wills of its connections, restore its persistent
   * sessions here, held until its inbox is drained (cluster.ts / bus.bury). Returns the ids.
   */
  async adopt(node: string): Promise<string[]> {
    const ids = await this.bus.owned(node);
    const taken: Array<{ rec: SessionRecord; token?: string }> = [];
    let wills = 0;
    await this.inBatches(ids, async (clientId) => {
      const token = await this.bus.claim(clientId, { node });
      if (token === undefined) return; // not that node's any more
      this.b.persistence.fence?.(clientId, token);
      const rec = await this.b.persistence.getSession(clientId);
      if (!rec) {
        await this.bus.disown(clientId, token);
        this.b.persistence.fence?.(clientId, undefined, token);
        return;
      }
      if (rec.will && rec.disconnectedAt === undefined) wills++;
      taken.push({ rec, token });
    });
    const adopted = await this.recoverAll(taken, true);
    this.b.log.info("adopted a dead node's sessions", { peer: node, sessions: adopted.length, wills });
    return adopted;
  }

  /** The adopted sessions' held deliveries go out, once the dead node's inbox is drained. */
  release(ids: string[]): void {
    for (const id of ids) this.map.get(id)?.unhold();
  }

  /**
   * Back in touch with the store after an outage: every session held here is checked against
   * its ownership record (a node that took one over meanwhile keeps it; it is dropped here), a
   * clean session that connected during the outage registers now. `fresh`: the store lost its
   * data (restarted empty): the whole state of this node's sessions is written again, so that
   * nothing comes back stale or missing.
   */
  async reassert(fresh: boolean): Promise<void> {
    if (!this.b.cluster.enabled) return;
    let rewritten = 0;
    await this.inBatches([...this.map.values()], async (s) => {
      if (this.map.get(s.clientId) !== s) return;
      const m = this.metaOf(s);
      try {
        const owner = await this.bus.owner(s.clientId);
        if (owner !== undefined && owner.token !== m.token) {
          if (owner.node !== this.bus.nodeId) return this.lost(s.clientId);
        }
        if (owner === undefined) {
          const token = await this.bus.claim(s.clientId, null);
          if (token === undefined) return this.lost(s.clientId);
          this.own(s, token);
        }
        if (fresh && (s.persistent || (s.client?.will !== undefined))) {
          await this.rewrite(s);
          rewritten++;
        }
      } catch (e) {
        this.b.log.warn("session not re-registered", { clientId: s.clientId, error: String((e as Error)?.message ?? e) });
      }
    });
    if (fresh) this.b.log.warn("sessions written again after the store lost its data", { sessions: rewritten });
  }

  /** Everything the store should hold for a session held here, written again from memory. */
  private async rewrite(s: Session): Promise<void> {
    const p = this.b.persistence;
    const rec: SessionRecord = {
      clientId: s.clientId, protocolVersion: s.protocolVersion, expiryInterval: s.expiryInterval, username: s.username,
      node: this.bus.nodeId,
    };
    if (s.client) rec.will = s.client.will;
    else rec.disconnectedAt = this.b.clock.now();
    this.metaOf(s).stored = true;
    await p.putSession(rec);
    if (!s.persistent) return;
    await p.putSubscriptions(s.clientId, [...s.subscriptions.values()]);
    const entries = [...s.inflight.values(), ...s.queue].map((e) => ({ ...e }));
    if (entries.length) await p.enqueue(s.clientId, entries);
    for (const id of s.incomingQos2) await p.addIncomingQos2(s.clientId, id);
  }

  /** Planned shutdown: stop every timer (the sessions stay stored, resumable elsewhere). */
  stop(): void {
    for (const s of this.map.values()) {
      this.b.clock.clearTimeout(s.expiryTimer);
      this.b.clock.clearTimeout(s.willTimer);
    }
  }
}

/**
 * A stored session's expiry under today's --max-session-expiry: a record written before the cap
 * was lowered, or a 3.1.1 session stored as "never", is held at most that long.
 */
function cappedExpiry(rec: SessionRecord, max: number): number {
  return Math.min(rec.expiryInterval, max);
}
