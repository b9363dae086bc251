/**
 * $SYS statistics (--sys-interval, manual clock): the broker's accounted memory and its
 * counters reach `$SYS/#` subscribers every interval; `#` does not match them
 * [MQTT-4.7.2-1]; 0 turns them off.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { ManualClock } from "../../src/clock.ts";
import { startBroker, type TestBroker } from "../helpers/broker.ts";
import { connectV4, connectV5, RawClient, drainPublishes as drain } from "../helpers/raw-client.ts";

const SLOW = { timeout: 30_000 };

describe("$SYS statistics", () => {
  let clock: ManualClock;
  let b: TestBroker;
  before(async () => {
    clock = new ManualClock();
    b = await startBroker({ sysInterval: 5 }, { clock });
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  it("every --sys-interval seconds: memory held (as accounted), the limit, and every counter", SLOW, async () => {
    const { client: s } = await connectV5(b.port, "sys-sub", { keepalive: 0 });
    await s.subscribe("$SYS/broker/#", { qos: 0 });
    const { client: all } = await connectV4(b.port, "sys-all", { keepalive: 0 });
    await all.subscribe("#", { qos: 0 });
    // something held: a QoS 1 message for a subscriber that has not acknowledged it
    const { client: q } = await connectV4(b.port, "sys-q", { keepalive: 0 });
    await q.subscribe("sys/held", { qos: 1 });
    await (await connectV4(b.port, "sys-pub", { keepalive: 0 })).client.publish("sys/held", Buffer.alloc(5000), { qos: 1 });
    await drain(all, 50);

    clock.advance(4_999);
    await s.expectNoPacket(100);
    clock.advance(1);
    const got = new Map((await drain(s, 300)).map((p) => [p.topic, Buffer.from(p.payload).toString()]));
    assert.equal(got.get("$SYS/broker/memory/held"), String(b.broker.memory.held));
    assert.ok(Number(got.get("$SYS/broker/memory/messages")) >= 5000);
    assert.equal(got.get("$SYS/broker/memory/limit"), String(b.broker.config.maxMemoryBytes));
    assert.equal(got.get("$SYS/broker/memory/level"), "0");
    assert.equal(got.get("$SYS/broker/stats/connections"), "4");
    for (const k of Object.keys(b.broker.stats)) assert.ok(got.has(`$SYS/broker/stats/${k}`), k);
    await all.expectNoPacket(100); // '#' does not match $SYS topics [MQTT-4.7.2-1]

    clock.advance(5_000);
    assert.ok((await drain(s, 300)).length > 0, "and again one interval later");
  });

  it("--sys-interval 0: nothing is published", SLOW, async () => {
    const c2 = new ManualClock();
    const quiet = await startBroker({ sysInterval: 0 }, { clock: c2 });
    try {
      const { client: s } = await connectV5(quiet.port, "sys-none", { keepalive: 0 });
      await s.subscribe("$SYS/#", { qos: 0 });
      c2.advance(60_000);
      await s.expectNoPacket(150);
    } finally {
      await quiet.close();
    }
  });
});
