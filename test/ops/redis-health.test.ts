/**
 * In Redis mode: /metrics carries the Redis round-trip histogram (PINGs queued behind the
 * broker's own commands), its errors and the cluster bus counters; /readyz says 503 while the
 * node is cut off from Redis and 200 again once it is back. A private redis-server plays the
 * outage (kill, restart on the same port).
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { freePort, RedisServer } from "../helpers/redis-server.ts";
import { startBroker, type TestBroker, until } from "../helpers/broker.ts";
import { startOps, type TestOps } from "../helpers/ops.ts";
import { valueOf } from "../helpers/prometheus.ts";
import { RedisPersistence } from "../../adapters/redis/redis.ts";
import { RedisBus } from "../../adapters/redis/bus.ts";
import { RawClient } from "../helpers/raw-client.ts";

const quiet = { info() {}, warn() {}, error() {} };


describe("Redis health in /metrics and /readyz", () => {
  let redis: RedisServer | undefined;
  let b: TestBroker | undefined;
  let o: TestOps | undefined;
  after(async () => {
    RawClient.destroyAll();
    await o?.close();
    await b?.close();
    await redis?.kill();
  });

  it("round trips measured, outage: not ready and errors counted, back: ready", { timeout: 60_000 }, async () => {
    redis = new RedisServer(await freePort());
    await redis.start();
    const prefix = "ops-health:";
    const persistence = await RedisPersistence.connect({ url: redis.url, prefix, logger: quiet });
    const bus = new RedisBus(persistence, { nodeId: "h1#0001", url: redis.url, prefix, leaseMs: 1000, logger: quiet });
    b = await startBroker({ nodeId: "h1" }, { persistence, bus });
    o = await startOps(b, { probeEveryMs: 50 });
    const ready = () => fetch(`${o!.url}/readyz`).then(async (r) => (await r.text(), r.status === 200));

    assert.equal(await ready(), true);
    await until(async () => valueOf(await o!.scrape(), "colibri_redis_roundtrip_seconds_count") >= 5, "five PINGs", 5000, 50);
    const m = await o.scrape();
    assert.equal(m.get("colibri_redis_roundtrip_seconds")!.type, "histogram");
    assert.equal(valueOf(m, "colibri_redis_connected"), 1);
    assert.equal(valueOf(m, "colibri_redis_errors_total", { kind: "probe" }), 0);
    assert.ok(valueOf(m, "colibri_redis_roundtrip_seconds_sum") / valueOf(m, "colibri_redis_roundtrip_seconds_count") < 0.5);
    assert.equal(valueOf(m, "colibri_cluster_nodes"), 1);
    assert.equal(valueOf(m, "colibri_cluster_forwarded_messages_total", { direction: "sent" }), 0);

    await redis.kill();
    await until(async () => !(await ready()), "/readyz 503 without Redis", 5000, 50);
    const r = await fetch(`${o.url}/readyz`);
    assert.equal(r.status, 503);
    assert.equal(await r.text(), "not ready: store unreachable\n");
    assert.equal((await fetch(`${o.url}/healthz`)).status, 200, "alive all the same");
    await until(async () => valueOf(await o!.scrape(), "colibri_redis_errors_total", { kind: "probe" }) >= 2, "failed probes counted", 5000, 50);
    const down = await o.scrape();
    assert.equal(valueOf(down, "colibri_redis_connected"), 0);
    assert.equal(down.has("colibri_retained_messages"), false, "a count the store cannot give is left out, not made up");

    await redis.start();
    await until(ready, "/readyz 200 once Redis is back", 15_000, 50);
    assert.equal(valueOf(await o.scrape(), "colibri_redis_connected"), 1);
  });
});
