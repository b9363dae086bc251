/**
 * [MQTT-3.2.0-1] The CONNACK is the first packet a client gets, even when a message is routed
 * to its session while the session is being stored. Redis's CLIENT PAUSE WRITE holds the
 * store's write for a while (reads go on), so a resumed persistent session sits between
 * "taken" and "stored" long enough for a QoS 0 publish (which touches no store) to arrive.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { freePort, RedisServer } from "../helpers/redis-server.ts";
import { startBroker, type TestBroker } from "../helpers/broker.ts";
import { RedisPersistence } from "../../adapters/redis/redis.ts";
import { connectV4, connectV5, payloadText, RawClient } from "../helpers/raw-client.ts";

describe("CONNACK first while the session is being stored", () => {
  let redis: RedisServer | undefined;
  let b: TestBroker | undefined;
  let persistence: RedisPersistence | undefined;
  after(async () => {
    RawClient.destroyAll();
    await b?.close();
    await persistence?.close();
    await redis?.kill();
  });

  it("a message routed meanwhile follows the CONNACK [MQTT-3.2.0-1]", { timeout: 30_000 }, async () => {
    redis = new RedisServer(await freePort());
    await redis.start();
    // a broker on Redis without the cluster bus: a resumed session held here needs no Redis
    // read, so the only command the CONNECT waits for is the session's write
    const quiet = { info() {}, warn() {}, error() {} };
    persistence = await RedisPersistence.connect({ url: redis.url, prefix: "connack-first:", logger: quiet });
    b = await startBroker({}, { persistence });

    const { client: first } = await connectV4(b.port, "cf-sub", { clean: false });
    first.sendPacket({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "cf/t", qos: 0 }] });
    await first.expectPacket("suback");
    first.sendPacket({ cmd: "disconnect" });
    await first.waitClose();
    const { client: pub } = await connectV5(b.port, "cf-pub");

    const admin = new Redis(redis.url);
    try {
      await admin.client("PAUSE", 1500, "WRITE");
      // the CONNECT reads the stored session, then waits for its write; the publish goes meanwhile
      const resumed = connectV4(b.port, "cf-sub", { clean: false, timeoutMs: 10_000 });
      await new Promise((r) => setTimeout(r, 500));
      pub.sendPacket({ cmd: "publish", topic: "cf/t", payload: Buffer.from("meanwhile"), qos: 0, dup: false, retain: false });
      // connectV4 fails when the first packet is not a CONNACK
      const { client: sub, connack } = await resumed;
      assert.equal(connack.sessionPresent, true);
      const p = await sub.expectPacket("publish", 5000);
      assert.equal(payloadText(p), "meanwhile");
    } finally {
      admin.disconnect();
    }
  });
});
