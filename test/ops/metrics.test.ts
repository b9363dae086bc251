/**
 * The HTTP endpoint (src/ops/http.ts on Bun.serve / Deno.serve) scraped with fetch: /metrics
 * parses strictly as the Prometheus text format and its counters follow real MQTT traffic
 * exactly; /healthz, /readyz through starting, running and draining; POST /drain; errors.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import net from "node:net";
import { startBroker, type TestBroker, until } from "../helpers/broker.ts";
import { connectV4, connectV5, drainPublishes, RawClient } from "../helpers/raw-client.ts";
import { startOps, type TestOps } from "../helpers/ops.ts";
import { type Family, parseExposition, valueOf } from "../helpers/prometheus.ts";
import { isLoopback, opsHandler } from "../../src/ops/http.ts";

const SLOW = { timeout: 30_000 };

/** One request written as given; the whole answer (the server closes an HTTP/1.0 connection). */
function rawHttp(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect(port, "127.0.0.1", () => s.write(request));
    s.on("data", (d: Buffer) => chunks.push(d));
    s.on("error", reject);
    s.on("close", () => resolve(Buffer.concat(chunks).toString()));
    setTimeout(() => s.destroy(), 3000);
  });
}

describe("/metrics", () => {
  let b: TestBroker;
  let o: TestOps;
  before(async () => {
    b = await startBroker({ maxQueuedMessages: 3 });
    o = await startOps(b);
  });
  after(async () => {
    RawClient.destroyAll();
    await o.close();
    await b.close();
  });

  it("every family has HELP and TYPE, counters end in _total, histograms are well formed", SLOW, async () => {
    const m = await o.scrape();
    for (
      const name of [
        "colibri_info", "colibri_ready", "colibri_connections", "colibri_connections_total", "colibri_sessions",
        "colibri_subscriptions", "colibri_retained_messages", "colibri_messages_received_total",
        "colibri_messages_sent_total", "colibri_payload_received_bytes_total", "colibri_received_bytes_total",
        "colibri_sent_bytes_total", "colibri_messages_dropped_total", "colibri_queued_messages",
        "colibri_queue_depth_max", "colibri_inflight_messages", "colibri_event_loop_lag_seconds",
        "process_resident_memory_bytes", "colibri_heap_used_bytes",
      ]
    ) assert.ok(m.has(name), `no ${name} family`);
    assert.equal(m.get("colibri_event_loop_lag_seconds")!.type, "histogram");
    assert.equal(m.get("colibri_messages_received_total")!.type, "counter");
    const info = m.get("colibri_info")!.samples[0];
    assert.equal(info.labels.version, "0.1.0");
    assert.equal(info.labels.node, b.broker.config.nodeId);
    assert.ok(valueOf(m, "process_resident_memory_bytes") > 1_000_000);
  });

  it("counters and gauges follow the traffic exactly", SLOW, async () => {
    const m0 = await o.scrape();
    const d = (m: Map<string, Family>, name: string, labels: Record<string, string> = {}) =>
      valueOf(m, name, labels) - valueOf(m0, name, labels);
    // a subscriber that does not acknowledge QoS 1: its window holds the messages in flight
    const { client: sub } = await connectV5(b.port, "m-sub", { keepalive: 0, properties: { receiveMaximum: 2 } });
    await sub.subscribe("m/t", { qos: 1 });
    // a persistent session offline with a bounded queue (3): the 4th and 5th are dropped
    const { client: off } = await connectV4(b.port, "m-off", { keepalive: 0, clean: false });
    await off.subscribe("m/t", { qos: 1 });
    off.disconnect();
    await off.waitClose();
    const { client: pub } = await connectV5(b.port, "m-pub", { keepalive: 0 });
    for (let i = 0; i < 5; i++) await pub.publish("m/t", "0123456789", { qos: 1 });
    await pub.publish("m/t", "abc", { qos: 0 });
    await pub.publish("m/r", "r", { qos: 2, retain: true });
    await until(() => b.broker.stats.droppedQueueFull === 2, "two queue-full drops");

    const m = await o.scrape();
    assert.equal(d(m, "colibri_messages_received_total", { qos: "0" }), 1);
    assert.equal(d(m, "colibri_messages_received_total", { qos: "1" }), 5);
    assert.equal(d(m, "colibri_messages_received_total", { qos: "2" }), 1);
    assert.equal(d(m, "colibri_payload_received_bytes_total", { qos: "1" }), 50);
    assert.equal(d(m, "colibri_payload_received_bytes_total", { qos: "2" }), 1);
    // the QoS 1 subscriber got 2 (its receive maximum), the QoS 0 one went out too
    assert.equal(d(m, "colibri_messages_sent_total", { qos: "1" }), 2);
    assert.equal(d(m, "colibri_messages_sent_total", { qos: "0" }), 1);
    assert.equal(valueOf(m, "colibri_inflight_messages"), 2);
    // queued: 3 behind m-sub's window and 3 for the offline session (its 4th and 5th dropped)
    assert.equal(valueOf(m, "colibri_queued_messages"), 6);
    assert.equal(valueOf(m, "colibri_queue_depth_max"), 3);
    assert.equal(d(m, "colibri_messages_dropped_total", { reason: "queue_full" }), 2);
    assert.equal(valueOf(m, "colibri_connections"), 2);
    assert.equal(d(m, "colibri_connections_total"), 3);
    assert.equal(valueOf(m, "colibri_sessions", { state: "connected" }), 2);
    assert.equal(valueOf(m, "colibri_sessions", { state: "disconnected" }), 1);
    assert.equal(valueOf(m, "colibri_subscriptions"), 2);
    assert.equal(valueOf(m, "colibri_retained_messages"), 1);
    assert.equal(valueOf(m, "colibri_received_bytes_total"), b.broker.stats.bytesIn);
    assert.ok(d(m, "colibri_sent_bytes_total") > 0 && d(m, "colibri_packets_received_total") >= 3 + 2 + 7 + 1);
    // the subscriber acknowledges everything: inflight empties, the queue drains into the window
    for (const p of await drainPublishes(sub, 300)) void p;
    const later = await o.scrape();
    assert.equal(valueOf(later, "colibri_inflight_messages") + valueOf(later, "colibri_queued_messages"), 3, "only the offline queue is left");
    assert.ok(valueOf(later, "colibri_event_loop_lag_seconds_count") >= valueOf(m0, "colibri_event_loop_lag_seconds_count"));
  });

  it("the event-loop lag histogram counts samples and sees a blocked loop", SLOW, async () => {
    const before = await o.scrape();
    await new Promise((r) => setTimeout(r, 600));
    const t = Date.now();
    // longer than the probe's 500 ms period: the probe is due while the loop is blocked, and
    // runs at least 300 ms late
    while (Date.now() - t < 800) { /* block the loop */ }
    await new Promise((r) => setTimeout(r, 700));
    const m = await o.scrape();
    assert.ok(valueOf(m, "colibri_event_loop_lag_seconds_count") >= valueOf(before, "colibri_event_loop_lag_seconds_count") + 2);
    assert.ok(valueOf(m, "colibri_event_loop_lag_max_seconds") >= 0.29, `max lag ${valueOf(m, "colibri_event_loop_lag_max_seconds")}`);
    assert.ok(valueOf(m, "colibri_event_loop_lag_seconds_bucket", { le: "0.1" }) < valueOf(m, "colibri_event_loop_lag_seconds_count"));
  });
});

describe("/healthz, /readyz, POST /drain", () => {
  it("ready only once started; draining: not ready, listener closed, clients sent away with 0x8B, no will", SLOW, async () => {
    const b = await startBroker({ drainRate: 2 });
    const o = await startOps(b, { start: false });
    try {
      assert.equal((await fetch(`${o.url}/healthz`)).status, 200);
      const starting = await fetch(`${o.url}/readyz`);
      assert.equal(starting.status, 503);
      assert.equal(await starting.text(), "not ready: starting\n");
      o.ops.start();
      const ready = await fetch(`${o.url}/readyz`);
      assert.equal(ready.status, 200);
      assert.equal(await ready.text(), "ready\n");
      // what a load balancer's health check sends: HTTP/1.0, no Host header
      const raw = await rawHttp(o.http.port, "GET /readyz HTTP/1.0\r\n\r\n");
      assert.match(raw, /^HTTP\/1\.[01] 200 /);
      assert.match(raw, /\r\n\r\nready\n$/);
      assert.equal(valueOf(await o.scrape(), "colibri_ready"), 1);

      const { client: watch } = await connectV4(b.port, "d-watch", { keepalive: 0 });
      await watch.subscribe("d/will", { qos: 0 });
      const clients = [];
      for (let i = 0; i < 4; i++) {
        clients.push((await connectV5(b.port, `d-${i}`, { keepalive: 0, will: { topic: "d/will", payload: Buffer.from("x"), qos: 0, retain: false } })).client);
      }
      const wrong = await fetch(`${o.url}/drain`);
      assert.equal(wrong.status, 405);
      assert.equal(wrong.headers.get("allow"), "POST");
      await wrong.text();
      const t0 = Date.now();
      const r = await fetch(`${o.url}/drain`, { method: "POST" });
      assert.equal(r.status, 202);
      assert.deepEqual(await r.json(), { draining: true, clients: 5 });
      const nr = await fetch(`${o.url}/readyz`);
      assert.equal(nr.status, 503);
      assert.equal(await nr.text(), "not ready: draining\n");
      await assert.rejects(RawClient.connect(b.port, "127.0.0.1", 1000), "the listener no longer accepts");
      // 2 per second: the five clients leave over about two seconds, not at once
      for (const c of clients) {
        const d = await c.waitForPacket("disconnect", () => true, 5000);
        assert.equal(d.reasonCode, 0x8b);
      }
      await watch.waitClose(5000);
      assert.ok(Date.now() - t0 >= 1500, `all sent away within ${Date.now() - t0} ms`);
      assert.equal(b.logs.filter((l) => l.includes("publishing will")).length, 0);
      assert.ok(b.logs.some((l) => l.includes("drained: every client sent away")), b.logs.join("\n"));
      const m = await o.scrape();
      assert.equal(valueOf(m, "colibri_draining"), 1);
      assert.equal(valueOf(m, "colibri_ready"), 0);
      assert.equal(valueOf(m, "colibri_connections"), 0);
    } finally {
      RawClient.destroyAll();
      await o.close();
      await b.close();
    }
  });

  it("drain with --drain-server-reference: MQTT 5 clients get 0x9C and the reference", SLOW, async () => {
    const b = await startBroker({ drainRate: 0, drainServerReference: "other.example:1883" });
    const o = await startOps(b);
    try {
      const { client: c } = await connectV5(b.port, "ref-1", { keepalive: 0 });
      assert.equal((await fetch(`${o.url}/drain`, { method: "POST" })).status, 202);
      const d = await c.waitForPacket("disconnect", () => true, 3000);
      assert.equal(d.reasonCode, 0x9c);
      assert.equal(d.properties?.serverReference, "other.example:1883");
    } finally {
      RawClient.destroyAll();
      await o.close();
      await b.close();
    }
  });

  it("unknown paths 404, wrong methods 405, drain only from loopback addresses", async () => {
    const h = opsHandler({ metrics: async () => "", readiness: () => ({ ready: true, reason: "" }), drain: () => 7 });
    assert.equal((await h({ method: "GET", path: "/nope" })).status, 404);
    assert.equal((await h({ method: "POST", path: "/metrics" })).status, 405);
    assert.equal((await h({ method: "POST", path: "/drain", remote: "10.1.2.3" })).status, 403);
    assert.equal((await h({ method: "POST", path: "/drain", remote: undefined })).status, 403);
    assert.equal((await h({ method: "POST", path: "/drain", remote: "::ffff:127.0.0.1" })).status, 202);
    for (const a of ["127.0.0.1", "127.5.6.7", "::1", "::ffff:127.0.0.1"]) assert.ok(isLoopback(a), a);
    for (const a of ["10.0.0.1", "::ffff:10.0.0.1", "128.0.0.1", "::2", "localhost"]) assert.ok(!isLoopback(a), a);
  });

  it("the parser rejects what Prometheus would", () => {
    const ok = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\\\"q\"} 1\n";
    assert.equal(valueOf(parseExposition(ok), "a_total", { k: 'v"q' }), 1);
    const bad = [
      "a 1\n", // no TYPE
      "# HELP a x\n# TYPE a counter\na 1\n", // counter without _total
      "# HELP a x\n# TYPE a gauge\na{k=v} 1\n", // unquoted
      "# HELP a x\n# TYPE a gauge\na{k=\"v\"} one\n", // not a number
      "# HELP a x\n# TYPE a gauge\na 1\na 2\n", // series twice
      "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
      "# HELP a x\n# TYPE a gauge\na 1", // no final newline
    ];
    for (const t of bad) assert.throws(() => parseExposition(t), Error, JSON.stringify(t));
  });
});
