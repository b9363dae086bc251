/**
 * MQTT 5 Session Expiry Interval (§3.1.2.11.2, §3.14.2.2.2) and Message Expiry Interval
 * (§3.3.2.3.3): a session outlives its connection for the interval set on CONNECT or changed on
 * DISCONNECT (not from 0: protocol error 0x82), and a message lives only as long as its expiry
 * in an offline queue and in the retained store, forwarded with the time it has left.
 * Time is a manual clock.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { startBroker, type TestBroker, until } from "../helpers/broker.ts";
import { connectV5, RawClient } from "../helpers/raw-client.ts";
import { ManualClock } from "../../src/clock.ts";
import { expectBrokerServes, expectDisconnect, expectLogged, text } from "./util.ts";

describe("mqtt5: session expiry", () => {
  let clock: ManualClock;
  let b: TestBroker;
  let pub: RawClient;
  before(async () => {
    clock = new ManualClock();
    b = await startBroker({ maxSessionExpiry: 3600 }, { clock });
    pub = (await connectV5(b.port, "se-pub", { keepalive: 0 })).client;
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  const connect = (id: string, expiry: number | undefined, clean = false, extra: Record<string, unknown> = {}) =>
    connectV5(b.port, id, {
      keepalive: 0, clean, ...extra,
      properties: expiry === undefined ? undefined : { sessionExpiryInterval: expiry },
    });

  /** Connect with a QoS 1 subscription on `topic`, then go away. */
  async function offline(id: string, expiry: number, topic: string, how: "disconnect" | "destroy" = "disconnect") {
    const { client } = await connect(id, expiry, true);
    await client.subscribe(topic, { qos: 1 });
    if (how === "disconnect") client.disconnect();
    else client.destroy();
    await client.waitClose();
    await new Promise((r) => setTimeout(r, 20));
  }

  describe("Session Expiry Interval", () => {
    it("the session and its queued messages survive within the interval [MQTT-3.1.2-23]", async () => {
      await offline("se-keep", 10, "se/keep");
      await pub.publish("se/keep", "queued", { qos: 1 });
      clock.advance(9_000);
      const { client, connack } = await connect("se-keep", 10);
      assert.equal(connack.sessionPresent, true);
      const p = await client.expectPacket("publish");
      assert.equal(text(p), "queued");
      client.sendPacket({ cmd: "puback", messageId: p.messageId });
      client.disconnect(); // expiry 10 again from now
    });

    it("after the interval the session is gone [MQTT-4.1.0-2]", async () => {
      await offline("se-gone", 10, "se/gone", "destroy");
      await pub.publish("se/gone", "lost", { qos: 1 });
      clock.advance(10_001);
      const { client, connack } = await connect("se-gone", 10);
      assert.equal(connack.sessionPresent, false);
      await client.expectNoPacket(100);
      client.disconnect();
    });

    it("0 or absent: the session ends with the connection", async () => {
      for (const expiry of [0, undefined]) {
        const id = `se-none-${expiry}`;
        const { client } = await connect(id, expiry, true);
        await client.subscribe("se/none", { qos: 1 });
        client.disconnect();
        await client.waitClose();
        const { client: back, connack } = await connect(id, 60);
        assert.equal(connack.sessionPresent, false);
        back.disconnect();
      }
    });

    it("a requested interval above maxSessionExpiry is capped, and the cap said in CONNACK (§3.2.2.3.2)", async () => {
      const { client, connack } = await connect("se-cap", 0xffffffff, true);
      assert.equal(connack.properties?.sessionExpiryInterval, 3600, "the server's value, in CONNACK (§3.2.2.3.2)");
      client.disconnect();
      await client.waitClose();
      clock.advance(3_599_000);
      const { client: back, connack: c2 } = await connect("se-cap", 3600);
      assert.equal(c2.sessionPresent, true);
      assert.equal(c2.properties?.sessionExpiryInterval, undefined, "not capped: not sent");
      back.disconnect();
    });

    it("DISCONNECT may shorten it: 0 ends the session now (§3.14.2.2.2)", async () => {
      const { client } = await connect("se-short", 600, true);
      await client.subscribe("se/short", { qos: 1 });
      client.sendPacket({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
      await client.waitClose();
      const { client: back, connack } = await connect("se-short", 600);
      assert.equal(connack.sessionPresent, false);
      back.disconnect();
    });

    it("DISCONNECT may lengthen it (§3.14.2.2.2)", async () => {
      const { client } = await connect("se-long", 5, true);
      client.sendPacket({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 100 } });
      await client.waitClose();
      await new Promise((r) => setTimeout(r, 20));
      clock.advance(50_000);
      const { client: back, connack } = await connect("se-long", 5);
      assert.equal(connack.sessionPresent, true);
      back.disconnect();
    });

    it("from 0 on CONNECT to non-zero on DISCONNECT: DISCONNECT 0x82, will published, no session (§3.14.2.2.2)", async () => {
      const { client: watcher } = await connect("se-watch", 0, true);
      await watcher.subscribe("se/will", { qos: 0 });
      const { client } = await connect("se-from0", 0, true, {
        will: { topic: "se/will", payload: Buffer.from("not a valid DISCONNECT"), qos: 0, retain: false },
      });
      client.sendPacket({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 30 } });
      const d = await expectDisconnect(client, 0x82);
      // [MQTT-3.14.2-2] the server never sends Session Expiry Interval on DISCONNECT
      assert.equal(d.properties?.sessionExpiryInterval, undefined);
      await expectLogged(b, "se-from0", 0x82);
      assert.equal(text(await watcher.expectPacket("publish")), "not a valid DISCONNECT");
      const { client: back, connack } = await connect("se-from0", 30);
      assert.equal(connack.sessionPresent, false);
      back.disconnect();
      await expectBrokerServes(b);
    });
  });

  describe("Message Expiry Interval", () => {
    it("a queued message whose lifetime passes is not delivered [MQTT-3.3.2-5]", async () => {
      await offline("me-drop", 600, "me/drop");
      await pub.publish("me/drop", "short", { qos: 1, properties: { messageExpiryInterval: 5 } });
      await pub.publish("me/drop", "long", { qos: 1, properties: { messageExpiryInterval: 500 } });
      clock.advance(6_000);
      const { client } = await connect("me-drop", 600);
      const p = await client.expectPacket("publish");
      assert.equal(text(p), "long");
      client.sendPacket({ cmd: "puback", messageId: p.messageId });
      await client.expectNoPacket(100);
      client.sendPacket({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
    });

    it("a delivered message carries the time it has left [MQTT-3.3.2-6]", async () => {
      await offline("me-left", 600, "me/left");
      await pub.publish("me/left", "v", { qos: 1, properties: { messageExpiryInterval: 60 } });
      clock.advance(20_000);
      const { client } = await connect("me-left", 600);
      const p = await client.expectPacket("publish");
      assert.equal(p.properties?.messageExpiryInterval, 40);
      client.sendPacket({ cmd: "puback", messageId: p.messageId });
      client.sendPacket({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
    });

    it("live delivery forwards the interval; subscribers at the same moment share it", async () => {
      const subs = await Promise.all([1, 2, 3].map((i) => connect(`me-live-${i}`, 0, true)));
      for (const { client } of subs) await client.subscribe("me/live");
      await pub.publish("me/live", "v", { properties: { messageExpiryInterval: 30 } });
      for (const { client } of subs) assert.equal((await client.expectPacket("publish")).properties?.messageExpiryInterval, 30);
    });

    it("an expired retained message is not sent on subscribe; a live one with its time left (§3.3.1.3)", async () => {
      await pub.publish("me/ret/a", "short", { qos: 1, retain: true, properties: { messageExpiryInterval: 5 } });
      await pub.publish("me/ret/b", "long", { qos: 1, retain: true, properties: { messageExpiryInterval: 100 } });
      clock.advance(10_000);
      const { client } = await connect("me-ret", 0, true);
      await client.subscribe("me/ret/+");
      const p = await client.expectPacket("publish");
      assert.equal(p.topic, "me/ret/b");
      assert.equal(p.properties?.messageExpiryInterval, 90);
      await client.expectNoPacket(100);
      assert.equal(await b.persistence.retainedCount(), 1, "the expired one is gone from the store");
      await pub.publish("me/ret/b", "", { qos: 1, retain: true });
    });

    it("an expired message frees its place in a full offline queue", async () => {
      const small = await startBroker({ maxQueuedMessages: 2 }, { clock });
      try {
        const { client: p2 } = await connectV5(small.port, "mq-pub", { keepalive: 0 });
        const { client: s } = await connectV5(small.port, "mq-sub", { keepalive: 0, properties: { sessionExpiryInterval: 600 } });
        await s.subscribe("mq/t", { qos: 1 });
        s.disconnect();
        await s.waitClose();
        // the broker has processed the DISCONNECT (it may wait behind the SUBSCRIBE's store writes)
        await until(() => small.broker.sessions.get("mq-sub")?.client === undefined, "mq-sub offline");
        await p2.publish("mq/t", "soon gone", { qos: 1, properties: { messageExpiryInterval: 1 } });
        await p2.publish("mq/t", "stays", { qos: 1 });
        clock.advance(2_000);
        await p2.publish("mq/t", "fits", { qos: 1 });
        const { client: back } = await connectV5(small.port, "mq-sub", { keepalive: 0, clean: false, properties: { sessionExpiryInterval: 600 } });
        const a = await back.expectPacket("publish");
        back.sendPacket({ cmd: "puback", messageId: a.messageId });
        const c = await back.expectPacket("publish");
        back.sendPacket({ cmd: "puback", messageId: c.messageId });
        assert.deepEqual([text(a), text(c)], ["stays", "fits"]);
      } finally {
        await small.close();
      }
    });
  });
});

describe("mqtt5: a session that never expires", () => {
  it("0xFFFFFFFF: still there 40 days later (§3.1.2.11.2)", async () => {
    const clock = new ManualClock();
    const b = await startBroker({}, { clock });
    try {
      const opts = { keepalive: 0, properties: { sessionExpiryInterval: 0xffffffff } };
      const { client, connack } = await connectV5(b.port, "se-forever", opts);
      assert.equal(connack.properties?.sessionExpiryInterval, undefined, "accepted as asked");
      client.destroy();
      await client.waitClose();
      await new Promise((r) => setTimeout(r, 20));
      clock.advance(40 * 24 * 3600 * 1000);
      const { client: back, connack: c2 } = await connectV5(b.port, "se-forever", { ...opts, clean: false });
      assert.equal(c2.sessionPresent, true);
      back.disconnect();
    } finally {
      RawClient.destroyAll();
      await b.close();
    }
  });
});
