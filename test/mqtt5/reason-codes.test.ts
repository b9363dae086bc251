/**
 * MQTT 5 reason codes for bad input (§2.4, §4.13): every protocol error gets the reason code the
 * spec gives, on a DISCONNECT (or CONNACK, or the ack where the spec puts it there), plus a log
 * line naming the client and why; the connection is closed and the rest of the broker carries
 * on. Each case sends one bad packet from a fresh client, then a bystander does a full QoS 1
 * round trip.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { type TestBroker, useBroker } from "../helpers/broker.ts";
import { connectV5, RawClient } from "../helpers/raw-client.ts";
import {
  expectBrokerServes,
  expectDisconnect,
  expectLogged,
  prop,
  rawPublish,
  rawSubscribe,
  varInt,
} from "./util.ts";

interface Case {
  rule: string;
  what: string;
  code: number;
  /** Bytes sent after CONNACK (a function: some need the client). */
  send: (c: RawClient) => Promise<void> | void;
}

const packet = (type: number, body: number[]) => Uint8Array.from([type, ...varInt(body.length), ...body]);

const cases: Case[] = [
  { rule: "[MQTT-3.3.1-4]", what: "PUBLISH with QoS 3", code: 0x81, send: (c) => c.send(Uint8Array.of(0x36, 5, 0, 1, 0x61, 0, 1)) },
  { rule: "[MQTT-1.5.4-1]", what: "topic name that is not UTF-8", code: 0x81, send: (c) => c.send(Uint8Array.of(0x30, 5, 0, 2, 0xc3, 0x28, 0)) },
  { rule: "[MQTT-1.5.4-2]", what: "topic name with U+0000", code: 0x81, send: (c) => c.send(Uint8Array.of(0x30, 6, 0, 3, 0x61, 0, 0x62, 0)) },
  { rule: "[MQTT-2.2.1-3]", what: "QoS 1 PUBLISH with packet identifier 0", code: 0x81, send: (c) => c.send(rawPublish("a/b", "x", { qos: 1, pid: 0 })) },
  { rule: "§2.2.2.2", what: "a property not allowed in PUBLISH (Session Expiry Interval)", code: 0x81, send: (c) => c.send(rawPublish("a/b", "x", { props: [0x11, 0, 0, 0, 1] })) },
  { rule: "§3.3.2.3.9", what: "Content Type twice", code: 0x82, send: (c) => c.send(rawPublish("a/b", "x", { props: [...prop.contentType("a"), ...prop.contentType("b")] })) },
  { rule: "[MQTT-3.3.2-2]", what: "topic name with a wildcard", code: 0x90, send: (c) => c.send(rawPublish("a/#", "x")) },
  { rule: "§3.3.2.1", what: "empty topic name, no Topic Alias", code: 0x82, send: (c) => c.send(rawPublish("", "x")) },
  { rule: "[MQTT-3.3.2-8]", what: "Topic Alias 0", code: 0x94, send: (c) => c.send(rawPublish("a/b", "x", { props: prop.topicAlias(0) })) },
  { rule: "[MQTT-3.3.2-9]", what: "Topic Alias above the maximum", code: 0x94, send: (c) => c.send(rawPublish("a/b", "x", { props: prop.topicAlias(101) })) },
  { rule: "[MQTT-3.3.2-7] §3.3.4", what: "Topic Alias in range but never set", code: 0x82, send: (c) => c.send(rawPublish("", "x", { props: prop.topicAlias(9) })) },
  { rule: "[MQTT-3.3.2-14]", what: "Response Topic with a wildcard", code: 0x82, send: (c) => c.send(rawPublish("a/b", "x", { props: prop.responseTopic("r/#") })) },
  { rule: "[MQTT-3.3.4-6]", what: "Subscription Identifier in PUBLISH", code: 0x82, send: (c) => c.send(rawPublish("a/b", "x", { props: prop.subscriptionId(1) })) },
  { rule: "§3.3.2.3.2", what: "QoS 0 payload announced as UTF-8 but not", code: 0x99, send: (c) => c.send(rawPublish("a/b", Uint8Array.of(0xff), { props: prop.payloadFormat(1) })) },
  { rule: "[MQTT-3.3.4-7]", what: "Receive Maximum exceeded (QoS 2, none released)", code: 0x93, send: async (c) => {
    for (let pid = 1; pid <= 5; pid++) c.send(rawPublish("rm/t", "x", { qos: 2, pid }));
  } },
  { rule: "[MQTT-3.2.2-15]", what: "packet above the Maximum Packet Size", code: 0x95, send: (c) => c.send(rawPublish("a/b", "x".repeat(5000))) },
  { rule: "[MQTT-3.1.0-2]", what: "a second CONNECT", code: 0x82, send: (c) => {
    c.sendPacket({ cmd: "connect", clientId: "again", protocolVersion: 5, clean: true, keepalive: 0 });
  } },
  { rule: "[MQTT-4.12.0-7]", what: "AUTH without an Authentication Method", code: 0x82, send: (c) => c.send(packet(0xf0, [0x18, 0])) },
  { rule: "[MQTT-3.8.3-2]", what: "SUBSCRIBE with no topic filter", code: 0x82, send: (c) => c.send(rawSubscribe(1, [])) },
  { rule: "[MQTT-3.8.3-4]", what: "no-local on a shared subscription", code: 0x82, send: (c) => c.send(rawSubscribe(1, [["$share/g/t", 0x05]])) },
  { rule: "[MQTT-3.8.3-5]", what: "reserved bits set in the subscription options", code: 0x81, send: (c) => c.send(rawSubscribe(1, [["t", 0xc1]])) },
  { rule: "§3.8.3.1", what: "Retain Handling 3", code: 0x82, send: (c) => c.send(rawSubscribe(1, [["t", 0x31]])) },
  { rule: "§3.8.2.1.2", what: "Subscription Identifier 0", code: 0x82, send: (c) => c.send(rawSubscribe(1, [["t", 1]], prop.subscriptionId(0))) },
  { rule: "§3.14.2.2.2", what: "DISCONNECT setting a session expiry after CONNECT had 0", code: 0x82, send: (c) => {
    c.sendPacket({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 10 } });
  } },
];

describe("mqtt5: reason codes for bad input", () => {
  let b: TestBroker;
  useBroker((x) => (b = x), { receiveMaximum: 4, maxPacketSize: 4096 });

  cases.forEach((k, i) => {
    it(`${k.what}: DISCONNECT 0x${k.code.toString(16)} ${k.rule}`, async () => {
      const id = `rc-${i}`;
      const { client } = await connectV5(b.port, id);
      await k.send(client);
      await expectDisconnect(client, k.code);
      await expectLogged(b, id, k.code);
      await expectBrokerServes(b);
    });
  });

  describe("refusals in CONNACK (then close) [MQTT-3.2.2-7]", () => {
    const connectWith = async (id: string, properties: Record<string, unknown>) => {
      const { client, connack } = await connectV5(b.port, id, { properties });
      await client.waitClose();
      return connack;
    };

    it("Receive Maximum 0: 0x82 (§3.1.2.11.3)", async () => {
      const connack = await connectWith("rc-c-rm0", { receiveMaximum: 0 });
      assert.equal(connack.reasonCode, 0x82);
      assert.equal(connack.sessionPresent, false);
      await expectLogged(b, "rc-c-rm0", 0x82);
    });

    it("Maximum Packet Size 0: 0x82 (§3.1.2.11.4)", async () => {
      const connack = await connectWith("rc-c-mps0", { maximumPacketSize: 0 });
      assert.equal(connack.reasonCode, 0x82);
    });

    it("an Authentication Method we do not offer: 0x8C [MQTT-4.12.0-1]", async () => {
      const connack = await connectWith("rc-c-auth", { authenticationMethod: "SCRAM-SHA-1" });
      assert.equal(connack.reasonCode, 0x8c);
      await expectBrokerServes(b);
    });
  });

  describe("codes on acknowledgements (the connection stays)", () => {
    it("PUBACK / PUBREC 0x99 for a QoS 1/2 payload that is not the UTF-8 it claims (§3.3.2.3.2)", async () => {
      const { client } = await connectV5(b.port, "rc-a-99");
      client.send(rawPublish("a/b", Uint8Array.of(0xff), { qos: 1, pid: 1, props: prop.payloadFormat(1) }));
      assert.equal((await client.expectPacket("puback")).reasonCode, 0x99);
      client.send(rawPublish("a/b", Uint8Array.of(0xff), { qos: 2, pid: 2, props: prop.payloadFormat(1) }));
      assert.equal((await client.expectPacket("pubrec")).reasonCode, 0x99);
      await expectLogged(b, "rc-a-99", 0x99);
      client.sendPacket({ cmd: "pingreq" });
      await client.expectPacket("pingresp");
    });

    it("PUBACK 0x10 when nobody subscribes (§3.4.2.1)", async () => {
      const { client } = await connectV5(b.port, "rc-a-10");
      const ack = (await client.publish("nobody/here", "x", { qos: 1 })) as { cmd: string; reasonCode?: number };
      assert.equal(ack.cmd, "puback");
      assert.equal(ack.reasonCode, 0x10);
    });

    it("SUBACK 0x8F for an invalid filter, the others granted [MQTT-3.8.4-6]", async () => {
      const { client } = await connectV5(b.port, "rc-a-8f");
      const sa = await client.subscribe([{ topic: "a/#/b", qos: 1 }, { topic: "ok/+", qos: 2 }, { topic: "x+/y", qos: 0 }]);
      assert.deepEqual(sa.granted, [0x8f, 2, 0x8f]);
    });

    it("UNSUBACK 0x11 for a filter with no subscription (§3.11.3)", async () => {
      const { client } = await connectV5(b.port, "rc-a-11");
      await client.subscribe("have/t");
      client.sendPacket({ cmd: "unsubscribe", messageId: 4, unsubscriptions: ["have/t", "never/t"] });
      assert.deepEqual((await client.expectPacket("unsuback")).granted, [0x00, 0x11]);
    });

    it("PUBCOMP 0x92 for a PUBREL of an unknown packet id (§3.7.2.1)", async () => {
      const { client } = await connectV5(b.port, "rc-a-92");
      client.sendPacket({ cmd: "pubrel", messageId: 77 });
      const pc = await client.expectPacket("pubcomp");
      assert.equal(pc.messageId, 77);
      assert.equal(pc.reasonCode, 0x92);
    });
  });
});
