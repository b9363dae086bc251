/**
 * MQTT 5 Maximum Packet Size, both directions: the broker's limit advertised in CONNACK and
 * enforced (a larger packet: DISCONNECT 0x95), and the client's limit never exceeded by
 * anything the broker sends — a message too large for one client is dropped for that client
 * only, and optional properties give way before a packet would grow past the limit.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { startBroker, type TestBroker } from "../helpers/broker.ts";
import { connectV5, RawClient } from "../helpers/raw-client.ts";
import { expectBrokerServes, expectDisconnect, expectLogged, rawPublish, text } from "./util.ts";

describe("mqtt5: maximum packet size", () => {
  let b: TestBroker;
  let pub: RawClient;
  before(async () => {
    b = await startBroker({ maxPacketSize: 1024 });
    pub = (await connectV5(b.port, "ps-pub", { keepalive: 0 })).client;
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  describe("the broker's limit", () => {
    it("is advertised in CONNACK (§3.2.2.3.6)", async () => {
      const { client, connack } = await connectV5(b.port, "ps-connack");
      assert.equal(connack.properties?.maximumPacketSize, 1024);
      client.disconnect();
    });

    it("a packet of exactly the limit is accepted", async () => {
      const { client } = await connectV5(b.port, "ps-exact");
      const probe = rawPublish("ps/exact", "", { qos: 1, pid: 1 });
      const fill = 1024 - probe.length - 1; // one more byte of remaining length past 127
      const bytes = rawPublish("ps/exact", "y".repeat(fill), { qos: 1, pid: 1 });
      assert.equal(bytes.length, 1024);
      client.send(bytes);
      assert.equal((await client.expectPacket("puback")).messageId, 1);
      client.disconnect();
    });

    it("one byte more: DISCONNECT 0x95, the broker carries on [MQTT-3.2.2-15]", async () => {
      const { client } = await connectV5(b.port, "ps-over");
      client.send(rawPublish("ps/over", "z".repeat(1100), { qos: 1, pid: 1 }));
      await expectDisconnect(client, 0x95);
      await expectLogged(b, "ps-over", 0x95);
      await expectBrokerServes(b);
    });
  });

  describe("the client's limit", () => {
    it("a message larger than a client's limit is not sent to it; others get it [MQTT-3.1.2-24] [MQTT-3.1.2-25]", async () => {
      const { client: small } = await connectV5(b.port, "ps-small", { keepalive: 0, properties: { maximumPacketSize: 100 } });
      const { client: big } = await connectV5(b.port, "ps-big", { keepalive: 0 });
      for (const c of [small, big]) await c.subscribe("ps/fan", { qos: 1 });
      await pub.publish("ps/fan", "x".repeat(200), { qos: 1 });
      await pub.publish("ps/fan", "fits", { qos: 1 });
      const large = await big.expectPacket("publish");
      assert.equal(large.payload.length, 200);
      big.sendPacket({ cmd: "puback", messageId: large.messageId });
      const f = await small.nextFrame();
      assert.ok(f.bytes.length <= 100);
      assert.equal(f.packet?.cmd, "publish");
      assert.equal(text(f.packet as never), "fits");
    });

    it("a dropped QoS 1 message counts as delivered: it holds no Receive Maximum slot (§3.1.2.11.4)", async () => {
      const { client } = await connectV5(b.port, "ps-slot", {
        keepalive: 0, properties: { maximumPacketSize: 100, receiveMaximum: 1, sessionExpiryInterval: 60 },
      });
      await client.subscribe("ps/slot", { qos: 1 });
      await pub.publish("ps/slot", "x".repeat(300), { qos: 1 });
      await pub.publish("ps/slot", "next", { qos: 1 });
      const p = await client.expectPacket("publish");
      assert.equal(text(p), "next");
      client.sendPacket({ cmd: "puback", messageId: p.messageId });
      await client.expectNoPacket(100);
      client.sendPacket({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
    });

    it("retained messages on subscribe obey the limit too", async () => {
      await pub.publish("ps/ret/big", "x".repeat(300), { qos: 1, retain: true });
      await pub.publish("ps/ret/small", "s", { qos: 1, retain: true });
      const { client } = await connectV5(b.port, "ps-ret", { keepalive: 0, properties: { maximumPacketSize: 100 } });
      await client.subscribe("ps/ret/+", { qos: 1 });
      const p = await client.expectPacket("publish");
      assert.equal(p.topic, "ps/ret/small");
      await client.expectNoPacket(100);
      for (const t of ["ps/ret/big", "ps/ret/small"]) await pub.publish(t, "", { qos: 1, retain: true });
    });

    it("a DISCONNECT loses its Reason String rather than exceed the limit [MQTT-3.14.2-3]", async () => {
      const { client } = await connectV5(b.port, "ps-disc", { properties: { maximumPacketSize: 20 } });
      client.send(rawPublish("bad/+", "x"));
      const f = await client.nextFrame();
      assert.equal(f.packet?.cmd, "disconnect");
      assert.ok(f.bytes.length <= 20, `DISCONNECT of ${f.bytes.length} bytes`);
      assert.equal((f.packet as { reasonCode?: number }).reasonCode, 0x90);
      await client.waitClose();
    });

    it("an ack loses its Reason String rather than exceed the limit [MQTT-3.4.2-2]", async () => {
      const { client } = await connectV5(b.port, "ps-ack", { keepalive: 0, properties: { maximumPacketSize: 20 } });
      client.send(rawPublish("ps/ack", Uint8Array.of(0xff, 0xfe), { qos: 1, pid: 3, props: [0x01, 1] }));
      const f = await client.nextFrame();
      assert.equal(f.packet?.cmd, "puback");
      assert.equal((f.packet as { reasonCode?: number }).reasonCode, 0x99);
      assert.ok(f.bytes.length <= 20, `PUBACK of ${f.bytes.length} bytes`);
    });

    it("a CONNACK keeps within the limit, leaving out what its absence says anyway [MQTT-3.2.2-19] [MQTT-3.2.2-20]", async () => {
      const { client, connack } = await connectV5(b.port, "ps-connack-small", { properties: { maximumPacketSize: 20 } });
      assert.equal(connack.reasonCode, 0);
      assert.equal(connack.properties?.retainAvailable, undefined, "absent means available");
      assert.equal(connack.properties?.maximumPacketSize, 1024, "the limits stay");
      assert.equal(connack.properties?.receiveMaximum, 1024);
      client.disconnect();
    });
  });
});
