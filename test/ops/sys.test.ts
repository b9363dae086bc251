/**
 * $SYS topics (src/ops/sys.ts) on one broker with a manual clock: Mosquitto's names and
 * meanings, published every --sys-interval seconds as retained messages (the current values
 * at once on subscribe, then only what changed), `#` does not match them [MQTT-4.7.2-1],
 * 0 turns them off, and clients may not publish there.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { ManualClock } from "../../src/clock.ts";
import { startBroker, type TestBroker } from "../helpers/broker.ts";
import { connectV4, connectV5, drainPublishes, type PacketOf, RawClient } from "../helpers/raw-client.ts";

const SLOW = { timeout: 30_000 };
const values = (ps: PacketOf<"publish">[]) => new Map(ps.map((p) => [p.topic, Buffer.from(p.payload).toString()]));

describe("$SYS topics", () => {
  let clock: ManualClock;
  let b: TestBroker;
  before(async () => {
    clock = new ManualClock();
    b = await startBroker({ sysInterval: 10 }, { clock });
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  it("current values on subscribe (retained), then every interval what changed; counts follow the traffic", SLOW, async () => {
    const { client: s } = await connectV5(b.port, "sys-observer", { keepalive: 0 });
    await s.subscribe("$SYS/#", { qos: 0 });
    const first = await drainPublishes(s, 300);
    assert.ok(first.length > 30, `only ${first.length} retained $SYS values`);
    assert.ok(first.every((p) => p.retain), "values sent on subscribe carry RETAIN=1 [MQTT-3.3.1-8]");
    const v0 = values(first);
    assert.equal(v0.get("$SYS/broker/version"), "colibri version 0.1.0");
    assert.equal(v0.get("$SYS/broker/uptime"), "0 seconds");
    for (const t of ["load/messages/received/1min", "load/bytes/sent/15min", "load/sockets/5min", "load/connections/1min"]) {
      assert.equal(v0.get(`$SYS/broker/${t}`), "0.00", t);
    }

    // traffic: a 3.1.1 subscriber, a publisher sending 3 QoS 1 and 2 QoS 0 (one retained)
    const { client: sub } = await connectV4(b.port, "sys-sub", { keepalive: 0 });
    await sub.subscribe("sys/t/#", { qos: 1 });
    const { client: pub } = await connectV5(b.port, "sys-pub", { keepalive: 0 });
    for (let i = 0; i < 3; i++) await pub.publish("sys/t/a", "12345", { qos: 1 });
    await pub.publish("sys/t/r", "abc", { qos: 0, retain: true });
    await pub.publish("sys/t/b", "x", { qos: 0 });
    assert.equal((await drainPublishes(sub, 200)).length, 5);
    const { client: all } = await connectV4(b.port, "sys-hash", { keepalive: 0 });
    await all.subscribe("#", { qos: 0 });
    assert.deepEqual((await drainPublishes(all, 100)).map((p) => p.topic), ["sys/t/r"]);

    clock.advance(10_000);
    const next = await drainPublishes(s, 300);
    assert.ok(next.every((p) => !p.retain), "live updates go out with RETAIN=0");
    const v = values(next);
    assert.equal(v.get("$SYS/broker/uptime"), "10 seconds");
    assert.equal(v.get("$SYS/broker/clients/connected"), "4");
    assert.equal(v.get("$SYS/broker/clients/maximum"), "4");
    assert.equal(v.get("$SYS/broker/clients/total"), "4");
    assert.equal(v.get("$SYS/broker/subscriptions/count"), "3");
    // the retained message, and the $SYS values (retained too, as Mosquitto counts them)
    const sysHeld = [...v0.keys()].length + (b.broker.cluster.enabled ? 0 : 0);
    assert.ok(Number(v.get("$SYS/broker/retained messages/count")) >= 1 + sysHeld);
    assert.equal(Number(v.get("$SYS/broker/retained messages/count")), 1 + b.broker.sys.match("$SYS/#").length);
    assert.equal(v.get("$SYS/broker/publish/messages/received"), "5");
    assert.equal(v.get("$SYS/broker/publish/bytes/received"), String(3 * 5 + 3 + 1));
    // packets in: 4 CONNECT, 3 SUBSCRIBE, 5 PUBLISH, 3 PUBACK from the 3.1.1 subscriber
    assert.equal(v.get("$SYS/broker/messages/received"), String(4 + 3 + 5 + 3));
    assert.equal(v.get("$SYS/broker/clients/disconnected"), undefined, "unchanged (0): not sent again");
    assert.equal(v.get("$SYS/broker/version"), undefined, "static: sent once");
    assert.equal(b.broker.stats.bytesIn, Number(v.get("$SYS/broker/bytes/received")));
    // 1-minute load after one 10 s interval with 4 CONNECTs: 24/min averaged in for 10 s of 60
    const expected = (n: number, window: number) => (n * 6 * (1 - Math.exp(-10 / window))).toFixed(2);
    assert.equal(v.get("$SYS/broker/load/connections/1min"), expected(4, 60));
    assert.equal(v.get("$SYS/broker/load/connections/15min"), expected(4, 900));
    assert.equal(v.get("$SYS/broker/load/publish/received/5min"), expected(5, 300));
    await all.expectNoPacket(100); // '#' does not match $SYS topics [MQTT-4.7.2-1]

    // a persistent session whose client left is "disconnected" (and still in the total)
    const { client: p2 } = await connectV4(b.port, "sys-persistent", { keepalive: 0, clean: false });
    p2.disconnect();
    await p2.waitClose();
    clock.advance(10_000);
    const v2 = values(await drainPublishes(s, 300));
    assert.equal(v2.get("$SYS/broker/clients/disconnected"), "1");
    assert.equal(v2.get("$SYS/broker/clients/inactive"), "1");
    assert.equal(v2.get("$SYS/broker/clients/total"), "5");
    assert.equal(v2.get("$SYS/broker/clients/maximum"), "5");
  });

  it("clients may not publish to $SYS: MQTT 5 0x87, 3.1.1 acknowledged, nothing delivered or retained", SLOW, async () => {
    const { client: s } = await connectV5(b.port, "sys-watch2", { keepalive: 0 });
    await s.subscribe("$SYS/broker/fake/#", { qos: 1 });
    const { client: p5 } = await connectV5(b.port, "sys-fake5", { keepalive: 0 });
    const ack5 = await p5.publish("$SYS/broker/fake/x", "spoof", { qos: 1, retain: true });
    assert.equal((ack5 as PacketOf<"puback">).reasonCode, 0x87);
    const rec5 = await p5.publish("$SYS/broker/fake/y", "spoof", { qos: 2 });
    assert.equal((rec5 as PacketOf<"pubrec">).reasonCode, 0x87);
    await p5.publish("$SYS", "spoof", { qos: 0 });
    const { client: p4 } = await connectV4(b.port, "sys-fake4", { keepalive: 0 });
    const ack4 = await p4.publish("$SYS/broker/fake/z", "spoof", { qos: 1, retain: true });
    assert.equal(ack4?.cmd, "puback");
    await p4.publish("$SYS/broker/fake/q2", "spoof", { qos: 2 });
    await s.expectNoPacket(200);
    assert.equal(await b.persistence.retainedCount(), 1, "only the retained message of the first test");
    const { client: late } = await connectV5(b.port, "sys-late", { keepalive: 0 });
    await late.subscribe("$SYS/broker/fake/#", { qos: 0 });
    await late.expectNoPacket(200);
    // no `$`-topic is the clients' (issue 11): $SYSTEM/x is refused as well
    const { client: other } = await connectV5(b.port, "sys-other", { keepalive: 0 });
    await other.subscribe("$SYSTEM/x", { qos: 1 });
    const no = await p5.publish("$SYSTEM/x", "not either", { qos: 1 });
    assert.equal((no as PacketOf<"puback">).reasonCode, 0x87);
    assert.equal((await drainPublishes(other, 200)).length, 0);
    assert.equal(b.broker.stats.droppedNotAuthorized, 6);
  });

  it("--sys-interval 0: nothing is published, nothing held", SLOW, async () => {
    const c2 = new ManualClock();
    const quiet = await startBroker({ sysInterval: 0 }, { clock: c2 });
    try {
      const { client: s } = await connectV5(quiet.port, "sys-none", { keepalive: 0 });
      await s.subscribe("$SYS/#", { qos: 0 });
      c2.advance(60_000);
      await s.expectNoPacket(200);
    } finally {
      await quiet.close();
    }
  });
});
