/**
 * $SYS topics, with Mosquitto's names and meanings (mosquitto(8), "BROKER STATUS"), published
 * every --sys-interval seconds (0: never) as retained messages that stay on this node:
 *
 *   $SYS/broker/version                       "colibri version 0.1.0" (once, at start)
 *   $SYS/broker/uptime                        "<n> seconds"
 *   $SYS/broker/clients/connected (active)    clients connected now
 *   $SYS/broker/clients/disconnected (inactive) persistent sessions held here without a client
 *   $SYS/broker/clients/total                 both
 *   $SYS/broker/clients/maximum               the largest total since start
 *   $SYS/broker/clients/expired               persistent sessions ended by their expiry
 *   $SYS/broker/messages/received|sent        MQTT packets of every type
 *   $SYS/broker/publish/messages/received|sent|dropped   PUBLISH packets (dropped: queue limits)
 *   $SYS/broker/publish/bytes/received|sent   PUBLISH payload bytes
 *   $SYS/broker/bytes/received|sent           bytes on the wire
 *   $SYS/broker/subscriptions/count           subscriptions of the sessions held here
 *   $SYS/broker/retained messages/count       retained messages: the store's and these $SYS ones
 *   $SYS/broker/load/<series>/{1min,5min,15min}   per-minute rates, exponentially averaged
 *       over 1, 5 and 15 minutes, for messages/received|sent, publish/received|sent|dropped,
 *       bytes/received|sent, connections (CONNECTs) and sockets (accepted connections)
 *
 * and Colibri's own (Mosquitto has no such topics; its heap/current is the nearest):
 *
 *   $SYS/broker/memory/held      bytes the broker holds for messages (session/memory.ts)
 *   $SYS/broker/memory/messages  ... of which message payloads, topics and properties
 *   $SYS/broker/memory/output    ... of which connections' output buffers
 *   $SYS/broker/memory/forwarding ... of which forward batches on their way to other nodes
 *   $SYS/broker/memory/limit     --max-memory-bytes (0 = none)
 *   $SYS/broker/memory/level     0 normal, 1 shedding QoS 0, 2 refusing QoS 1/2, 3 refusing connections
 *
 * Like Mosquitto, a topic is published again only when its value changed (uptime and the
 * memory figures always, so that a reader can wait for a fresh sample), and
 * a subscriber to $SYS gets the current values at once, as retained messages. Topics starting
 * with $ do not match a leading wildcard [MQTT-4.7.2-1]: subscribe to `$SYS/#`. Clients may not
 * publish to $SYS (session/handlers/publish.ts).
 *
 * In a cluster each node's $SYS/broker/... describes that node only (the load balancer decides
 * which node a subscriber sees), and is never stored in Redis nor sent to other nodes. For a
 * view of every node, each node also publishes all of its values every interval under
 * $SYS/broker/cluster/<node-id>/..., plus $SYS/broker/cluster/nodes (live nodes): these go
 * through interest routing like any message, so they reach only the nodes that have a
 * subscriber for them (no subscriber: no bus traffic). A node keeps the last values it
 * received from each other node as retained messages of its own (a new subscriber gets them
 * at once) and forgets a node's values when the node leaves the cluster. A node that had no
 * such subscriber before has the other nodes' values within one interval.
 */
import { VERSION } from "../version.ts";
import type { Clock } from "../clock.ts";
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import type { StoredMessage } from "../message.ts";
import type { Persistence } from "../persistence/persistence.ts";
import type { Router } from "../routing/router.ts";
import { topicMatches } from "../routing/topic.ts";
import type { Stats } from "../session/context.ts";
import type { Session } from "../session/session.ts";
import type { MemoryAccount } from "../session/memory.ts";
import type { Forward } from "../cluster/bus.ts";
import type { Cluster } from "../cluster/cluster.ts";
import { sessionGauges } from "./snapshot.ts";

export interface SysHost {
  readonly config: Config;
  readonly clock: Clock;
  readonly log: Logger;
  readonly stats: Stats;
  readonly memory: MemoryAccount;
  readonly sessions: Map<string, Session>;
  readonly persistence: Persistence;
  readonly router: Router;
  readonly cluster: Cluster;
  newMessageId(): string;
}

const PREFIX = "$SYS/broker/";
const CLUSTER = "$SYS/broker/cluster/";
const enc = new TextEncoder();
const dec = new TextDecoder();
const WINDOWS = [["1min", 60], ["5min", 300], ["15min", 900]] as const;
/** Published every interval even when unchanged (a reader waits for a fresh sample of them). */
const ALWAYS = new Set(["uptime", "memory/held", "memory/messages", "memory/output", "memory/forwarding"]);

/** A counter whose per-minute rate is averaged over 1, 5 and 15 minutes (Mosquitto's load). */
class Load {
  private last: number | undefined;
  readonly avg = [0, 0, 0];
  constructor(readonly name: string, readonly read: (s: Stats) => number) {}
  update(s: Stats, dtSeconds: number): void {
    const v = this.read(s);
    if (this.last !== undefined && dtSeconds > 0) {
      const perMinute = (v - this.last) * 60 / dtSeconds;
      for (let i = 0; i < 3; i++) {
        const k = Math.exp(-dtSeconds / WINDOWS[i][1]);
        this.avg[i] = perMinute + k * (this.avg[i] - perMinute);
      }
    }
    this.last = v;
  }
}

const sum = (a: number[]) => a[0] + a[1] + a[2];
/** Messages dropped by queueing and memory limits (Mosquitto's publish/messages/dropped). */
export const queueDrops = (s: Stats) => s.droppedQueueFull + s.droppedQos0SlowConsumer + s.shedQos0;

/** A name usable as one topic level. */
function level(name: string): string {
  return name.replace(/[/+#\u0000]/g, "_") || "_";
}

export class SysTopics {
  /** Every $SYS value this node holds: its own, and the cluster/<node>/ values of the others. */
  private held = new Map<string, StoredMessage>();
  /** Topic -> the cluster member it came from (others' cluster/<node>/ values). */
  private from = new Map<string, string>();
  private readonly loads: Load[] = [
    new Load("messages/received", (s) => s.packetsIn),
    new Load("messages/sent", (s) => s.packetsOut),
    new Load("publish/received", (s) => s.messagesIn),
    new Load("publish/sent", (s) => s.messagesOut),
    new Load("publish/dropped", queueDrops),
    new Load("bytes/received", (s) => s.bytesIn),
    new Load("bytes/sent", (s) => s.bytesOut),
    new Load("connections", (s) => s.connectionsTotal),
    new Load("sockets", (s) => s.sockets),
  ];
  private timer: unknown;
  private stopped = false;
  private clientsMax = 0;
  private readonly startedAt: number;
  private lastTick: number;
  private readonly node: string;

  constructor(private readonly h: SysHost) {
    this.startedAt = h.clock.now();
    this.lastTick = this.startedAt;
    this.node = level(h.config.nodeId);
  }

  start(): void {
    const seconds = this.h.config.sysInterval;
    if (seconds <= 0) return;
    this.local("version", `colibri version ${VERSION}`);
    this.tick();
  }

  stop(): void {
    this.stopped = true;
    this.h.clock.clearTimeout(this.timer);
  }

  /** The held $SYS messages a new subscription's filter matches (sent as retained). */
  match(filter: string): StoredMessage[] {
    const out: StoredMessage[] = [];
    for (const [topic, m] of this.held) if (topicMatches(filter, topic)) out.push(m);
    return out;
  }

  /** Forwarded messages from another node: keep its cluster/<node>/ values. */
  received(list: Forward[], member: string): void {
    for (let i = 0; i < list.length; i++) {
      const m = list[i].msg;
      if (m.retain && m.topic.charCodeAt(0) === 36 && m.topic.startsWith(CLUSTER)) {
        this.held.set(m.topic, m);
        this.from.set(m.topic, member);
      }
    }
  }

  /** A member left the cluster: its values go. */
  forget(member: string): void {
    for (const [topic, n] of this.from) {
      if (n !== member) continue;
      this.from.delete(topic);
      this.held.delete(topic);
    }
  }

  private tick = (): void => {
    if (this.stopped) return;
    this.publishAll().catch((e) => this.h.log.warn("$SYS statistics not published", { error: String(e) }))
      .finally(() => {
        if (!this.stopped) this.timer = this.h.clock.setTimeout(this.tick, this.h.config.sysInterval * 1000);
      });
  };

  /** The current values, as topic (under $SYS/broker/) -> payload text. */
  async values(): Promise<Map<string, string>> {
    const h = this.h;
    const s = h.stats;
    const now = h.clock.now();
    const dt = (now - this.lastTick) / 1000;
    this.lastTick = now;
    for (const l of this.loads) l.update(s, dt);
    const g = sessionGauges(h.sessions.values());
    let retained: number | undefined;
    try {
      retained = await h.persistence.retainedCount();
    } catch {
      retained = undefined; // the store is away: that value is not refreshed this time
    }
    const v = new Map<string, string>();
    const n = (k: string, x: number) => v.set(k, String(x));
    v.set("uptime", `${Math.floor((now - this.startedAt) / 1000)} seconds`);
    n("clients/connected", s.connections);
    n("clients/active", s.connections);
    n("clients/disconnected", g.disconnected);
    n("clients/inactive", g.disconnected);
    n("clients/total", s.connections + g.disconnected);
    // Mosquitto's maximum is of the total (connected and disconnected); peaks of connected
    // clients between two publications count too
    const total = s.connections + g.disconnected;
    this.clientsMax = Math.max(this.clientsMax, total, s.connectionsMax);
    n("clients/maximum", this.clientsMax);
    n("clients/expired", s.sessionsExpired);
    n("messages/received", s.packetsIn);
    n("messages/sent", s.packetsOut);
    n("publish/messages/received", s.messagesIn);
    n("publish/messages/sent", s.messagesOut);
    n("publish/messages/dropped", queueDrops(s));
    n("publish/bytes/received", sum(s.payloadBytesInByQos));
    n("publish/bytes/sent", sum(s.payloadBytesOutByQos));
    n("bytes/received", s.bytesIn);
    n("bytes/sent", s.bytesOut);
    n("subscriptions/count", g.subscriptions);
    // like Mosquitto's, the count includes the $SYS values themselves (retained messages too)
    if (retained !== undefined) n("retained messages/count", retained + this.held.size);
    for (const l of this.loads) {
      for (let i = 0; i < 3; i++) v.set(`load/${l.name}/${WINDOWS[i][0]}`, l.avg[i].toFixed(2));
    }
    const m = h.memory;
    n("memory/held", m.held);
    n("memory/messages", m.messages);
    n("memory/output", m.output);
    n("memory/forwarding", m.forwarding);
    n("memory/limit", m.limit);
    n("memory/level", m.level);
    return v;
  }

  private async publishAll(): Promise<void> {
    const v = await this.values();
    if (this.stopped) return;
    for (const [k, text] of v) {
      const old = this.held.get(PREFIX + k);
      if (ALWAYS.has(k) || old === undefined || dec.decode(old.payload) !== text) this.local(k, text);
    }
    const cl = this.h.cluster;
    if (!cl.enabled) return;
    this.publish(`${CLUSTER}nodes`, String(cl.bus.peers().length + 1), false);
    const version = this.held.get(`${PREFIX}version`);
    if (version) v.set("version", dec.decode(version.payload));
    for (const [k, text] of v) this.publish(`${CLUSTER}${this.node}/${k}`, text, true);
  }

  /** A value of this node for its own subscribers only. */
  private local(k: string, text: string): void {
    this.publish(PREFIX + k, text, false);
  }

  private publish(topic: string, text: string, clusterWide: boolean): void {
    const msg: StoredMessage = {
      id: this.h.newMessageId(), topic, payload: enc.encode(text), qos: 0, retain: true, receivedAt: this.h.clock.now(),
      holders: 0, bytes: 0, // the shape every message has (session/memory.ts)
    };
    this.held.set(topic, msg);
    if (clusterWide) this.h.cluster.route(msg);
    else this.h.router.route(msg);
  }
}
