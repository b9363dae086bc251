/**
 * /metrics: the node's state in the Prometheus text format (exposition.ts). Counters come
 * from Stats (bumped on the hot path), gauges from one pass over the sessions (snapshot.ts),
 * the store's round trips from StoreProbe, the event loop from LoopLag; nothing here runs on
 * the message path. Every family is always present (with 0), so dashboards and `colibri top`
 * need not guess; cluster and Redis families only where there is a cluster or a Redis.
 */
import process from "node:process";
import type { Broker } from "../broker.ts";
import { VERSION } from "../version.ts";
import { Exposition, type Sample } from "./exposition.ts";
import type { Health } from "./health.ts";
import type { LoopLag } from "./loop-lag.ts";
import { sessionGauges } from "./snapshot.ts";
import type { StoreProbe } from "./store-probe.ts";

export interface MetricsSource {
  readonly broker: Broker;
  readonly health: Health;
  readonly lag: LoopLag;
  readonly probe?: StoreProbe;
  readonly runtime: string;
  /** Epoch ms the process started serving. */
  readonly startedAt: number;
}

const byQos = (a: number[]): Sample[] => [[{ qos: "0" }, a[0]], [{ qos: "1" }, a[1]], [{ qos: "2" }, a[2]]];

export async function renderMetrics(m: MetricsSource): Promise<string> {
  const b = m.broker;
  const s = b.stats;
  const g = sessionGauges(b.sessions.values());
  const e = new Exposition();
  const ready = m.health.readiness();
  e.gauge("colibri_info", "Colibri build and node (value 1)", [[{
    version: VERSION, runtime: m.runtime, node: b.config.nodeId, persistence: b.persistence.name.split(" ")[0],
  }, 1]]);
  e.gauge("process_start_time_seconds", "Start time of the process since the Unix epoch, seconds", m.startedAt / 1000);
  e.gauge("colibri_ready", "1 when the node takes new clients (see /readyz)", ready.ready ? 1 : 0);
  e.gauge("colibri_draining", "1 while the node is draining or stopping", m.health.phase === "draining" || m.health.phase === "stopping" ? 1 : 0);

  e.gauge("colibri_connections", "Clients connected now (CONNECT accepted)", s.connections);
  e.gauge("colibri_connections_max", "Most clients connected at once since start", s.connectionsMax);
  e.counter("colibri_connections_total", "CONNECTs accepted since start", s.connectionsTotal);
  e.gauge("colibri_sockets", "Network connections open now, connected or not yet", b.clients.size);
  e.counter("colibri_sockets_total", "Network connections accepted since start", s.sockets);
  e.gauge("colibri_sessions", "Sessions held by this node, by state", [[{ state: "connected" }, g.connected], [{ state: "disconnected" }, g.disconnected]]);
  e.counter("colibri_sessions_expired_total", "Persistent sessions ended by their expiry interval", s.sessionsExpired);
  e.gauge("colibri_subscriptions", "Subscriptions of the sessions held by this node", g.subscriptions);
  let retained: number | undefined;
  try {
    retained = await b.persistence.retainedCount();
  } catch {
    retained = undefined; // the store is away: the family is left out of this scrape
  }
  if (retained !== undefined) e.gauge("colibri_retained_messages", "Retained messages in the store (cluster-wide on Redis)", retained);

  e.counter("colibri_messages_received_total", "PUBLISH packets received from clients, by QoS", byQos(s.publishesInByQos));
  e.counter("colibri_messages_sent_total", "PUBLISH packets sent to clients, by QoS", byQos(s.publishesOutByQos));
  e.counter("colibri_payload_received_bytes_total", "Payload bytes of PUBLISH packets received, by QoS", byQos(s.payloadBytesInByQos));
  e.counter("colibri_payload_sent_bytes_total", "Payload bytes of PUBLISH packets sent, by QoS", byQos(s.payloadBytesOutByQos));
  e.counter("colibri_received_bytes_total", "Bytes read from client connections", s.bytesIn);
  e.counter("colibri_sent_bytes_total", "Bytes written to client connections", s.bytesOut);
  e.counter("colibri_packets_received_total", "MQTT packets of every type received", s.packetsIn);
  e.counter("colibri_packets_sent_total", "MQTT packets of every type sent", s.packetsOut);
  e.counter("colibri_messages_dropped_total", "Messages not delivered, by reason", [
    [{ reason: "queue_full" }, s.droppedQueueFull],
    [{ reason: "slow_consumer" }, s.droppedQos0SlowConsumer],
    [{ reason: "too_large" }, s.droppedTooLarge],
    [{ reason: "expired" }, s.droppedExpired],
    [{ reason: "not_authorized" }, s.droppedNotAuthorized],
    [{ reason: "memory_shed" }, s.shedQos0],
  ]);
  e.counter("colibri_publishes_refused_total", "QoS 1/2 publishes refused past 90 % of --max-memory-bytes (0x97)", s.refusedPublishes);
  e.counter("colibri_connections_refused_total", "Connections refused past --max-memory-bytes (0x89)", s.refusedConnections);
  e.counter("colibri_auth_failures_total", "Logins refused: bad user name or password, anonymous not allowed, failed SCRAM", s.authFailures);
  e.counter("colibri_acl_denied_total", "Publishes, subscriptions and wills refused by the ACL or because of a $-topic", s.aclDenied);
  e.counter("colibri_limit_refusals_total", "Connections refused by --max-connections, --max-connections-per-address or --max-connect-rate", s.limitRefusals);
  e.counter("colibri_publishes_throttled_total", "PUBLISH packets held back by --max-publish-rate", s.throttledPublishes);
  e.counter("colibri_protocol_errors_total", "Connections closed for a protocol error or malformed packet", s.protocolErrors);
  e.gauge("colibri_queued_messages", "QoS 1/2 messages queued behind the sessions' inflight windows", g.queued);
  e.gauge("colibri_queue_depth_max", "The longest session queue", g.queueMax);
  e.gauge("colibri_inflight_messages", "QoS 1/2 messages sent and not acknowledged yet", g.inflight);

  const store = b.persistence;
  if (store.connected !== undefined) {
    e.gauge("colibri_redis_connected", "1 while the connection to Redis is up", store.connected ? 1 : 0);
    if (m.probe) e.histogram("colibri_redis_roundtrip_seconds", "Round trip of a PING queued behind the broker's commands", m.probe.rtt);
    e.counter("colibri_redis_errors_total", "Failed Redis operations: probes, and writes of session state", [
      [{ kind: "probe" }, m.probe?.errors ?? 0],
      [{ kind: "write" }, s.persistenceErrors],
    ]);
  }
  const cl = b.cluster;
  if (cl.enabled) {
    const bs = cl.bus.stats;
    e.gauge("colibri_cluster_nodes", "Live nodes in the cluster, this one included", cl.bus.peers().length + 1);
    e.counter("colibri_cluster_forwarded_messages_total", "Messages forwarded between nodes (interest routing)", [
      [{ direction: "sent" }, bs.messagesSent], [{ direction: "received" }, bs.messagesReceived],
    ]);
    e.counter("colibri_cluster_forwarded_batches_total", "Inbox appends carrying forwarded messages", [
      [{ direction: "sent" }, bs.batchesSent], [{ direction: "received" }, bs.batchesReceived],
    ]);
  }
  const mem = b.memory;
  e.gauge("colibri_memory_held_bytes", "Bytes the broker holds for messages, output buffers and forwards to other nodes, by its own accounting", [
    [{ kind: "messages" }, mem.messages], [{ kind: "output" }, mem.output], [{ kind: "forwarding" }, mem.forwarding],
  ]);
  e.gauge("colibri_memory_limit_bytes", "--max-memory-bytes (0: no limit)", mem.limit);
  e.gauge("colibri_memory_level", "0 normal, 1 shedding QoS 0, 2 refusing QoS 1/2, 3 refusing connections", mem.level);
  e.histogram("colibri_event_loop_lag_seconds", "How late a timer ran: time the event loop was busy", m.lag.histogram);
  e.gauge("colibri_event_loop_lag_max_seconds", "Largest event-loop lag of the last 10 to 20 seconds", m.lag.recentMax);
  const pm = process.memoryUsage();
  e.gauge("process_resident_memory_bytes", "Resident set size of the process", pm.rss);
  e.gauge("colibri_heap_used_bytes", "JavaScript heap in use", pm.heapUsed);
  return e.toString();
}
