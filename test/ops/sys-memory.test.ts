/**
 * $SYS/broker/memory/* (Colibri's own $SYS topics, next to Mosquitto's in sys.test.ts): the
 * bytes the broker accounts for messages (session/memory.ts), its limit and its pressure
 * level, refreshed every --sys-interval (manual clock) and given at once on subscribe.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { ManualClock } from "../../src/clock.ts";
import { startBroker, type TestBroker } from "../helpers/broker.ts";
import { connectV4, connectV5, RawClient, drainPublishes as drain } from "../helpers/raw-client.ts";

const SLOW = { timeout: 30_000 };

describe("$SYS/broker/memory", () => {
  let clock: ManualClock;
  let b: TestBroker;
  before(async () => {
    clock = new ManualClock();
    b = await startBroker({ sysInterval: 5, maxMemoryBytes: 64 * 1024 * 1024 }, { clock });
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  it("every --sys-interval seconds: memory held (as accounted), the limit and the level", SLOW, async () => {
    const { client: s } = await connectV5(b.port, "sys-sub", { keepalive: 0 });
    await s.subscribe("$SYS/broker/memory/#", { qos: 0 });
    const first = new Map((await drain(s, 300)).map((p) => [p.topic, Buffer.from(p.payload).toString()]));
    assert.equal(first.get("$SYS/broker/memory/held"), "0");
    assert.equal(first.get("$SYS/broker/memory/limit"), String(64 * 1024 * 1024));
    // something held: a QoS 1 message for a subscriber that has not acknowledged it
    const { client: q } = await connectV4(b.port, "sys-q", { keepalive: 0 });
    await q.subscribe("sys/held", { qos: 1 });
    await (await connectV4(b.port, "sys-pub", { keepalive: 0 })).client.publish("sys/held", Buffer.alloc(5000), { qos: 1 });

    clock.advance(4_999);
    await s.expectNoPacket(100);
    clock.advance(1);
    const got = new Map((await drain(s, 300)).map((p) => [p.topic, Buffer.from(p.payload).toString()]));
    assert.equal(got.get("$SYS/broker/memory/held"), String(b.broker.memory.held));
    assert.ok(Number(got.get("$SYS/broker/memory/messages")) >= 5000);
    assert.equal(got.get("$SYS/broker/memory/limit"), undefined, "unchanged: not sent again");
    assert.ok(got.has("$SYS/broker/memory/output"), "the figures are sent every interval, changed or not");
    assert.equal(got.get("$SYS/broker/memory/level"), undefined, "unchanged (0): not sent again");

    // the subscriber acknowledges: nothing held any more, and the next interval says so
    await drain(q, 200);
    clock.advance(5_000);
    const after = new Map((await drain(s, 300)).map((p) => [p.topic, Buffer.from(p.payload).toString()]));
    assert.equal(after.get("$SYS/broker/memory/messages"), "0");
  });
});
