/**
 * MQTT 5 CONNACK properties (§3.2.2.3): the broker advertises its actual capabilities and
 * limits, all configurable, and behaves as advertised — checked with non-default values.
 * Also Server Keep Alive (maxKeepalive), Assigned Client Identifier and server redirection
 * (Server Reference with 0x9C / 0x9D).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { startBroker, type TestBroker, useBroker } from "../helpers/broker.ts";
import { connectV4, connectV5, RawClient } from "../helpers/raw-client.ts";
import { ManualClock } from "../../src/clock.ts";
import { expectBrokerServes, expectDisconnect, expectLogged, rawPublish } from "./util.ts";

describe("mqtt5: CONNACK with the default configuration", () => {
  let b: TestBroker;
  useBroker((x) => (b = x));

  it("advertises every capability and limit; Maximum QoS absent means 2 (§3.2.2.3.4)", async () => {
    const { client, connack } = await connectV5(b.port, "ca-default");
    assert.equal(connack.reasonCode, 0);
    const p = connack.properties!;
    assert.equal(p.receiveMaximum, 1024);
    assert.equal(p.maximumPacketSize, 16 * 1024 * 1024);
    assert.equal(p.topicAliasMaximum, 100);
    assert.equal(p.retainAvailable, true);
    assert.equal(p.wildcardSubscriptionAvailable, true);
    assert.equal(p.subscriptionIdentifiersAvailable, true);
    assert.equal(p.sharedSubscriptionAvailable, true);
    assert.equal(p.maximumQoS, undefined);
    assert.equal(p.serverKeepAlive, undefined, "no cap configured: the client's keepalive holds [MQTT-3.2.2-22]");
    assert.equal(p.responseInformation, undefined);
    client.disconnect();
  });

  it("an empty client id gets an Assigned Client Identifier [MQTT-3.2.2-16]", async () => {
    const { client, connack } = await connectV5(b.port, "");
    const id = connack.properties?.assignedClientIdentifier;
    assert.ok(typeof id === "string" && id.length > 0);
    const { client: other, connack: c2 } = await connectV5(b.port, "");
    assert.notEqual(c2.properties?.assignedClientIdentifier, id, "a new identifier each time");
    client.disconnect();
    other.disconnect();
  });
});

describe("mqtt5: CONNACK and behaviour follow a non-default configuration", () => {
  let b: TestBroker;
  const cfg = {
    receiveMaximum: 7, maxPacketSize: 2048, topicAliasMaximum: 3, retainAvailable: false,
    wildcardSubscriptionAvailable: false, subscriptionIdentifiersAvailable: false,
    sharedSubscriptionAvailable: false, maximumQoS: 1 as const,
  };
  before(async () => {
    b = await startBroker(cfg);
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  it("CONNACK carries the configured values (§3.2.2.3)", async () => {
    const { client, connack } = await connectV5(b.port, "cn-props");
    const p = connack.properties!;
    assert.equal(p.receiveMaximum, 7);
    assert.equal(p.maximumPacketSize, 2048);
    assert.equal(p.topicAliasMaximum, 3);
    assert.equal(p.retainAvailable, false);
    assert.equal(p.wildcardSubscriptionAvailable, false);
    assert.equal(p.subscriptionIdentifiersAvailable, false);
    assert.equal(p.sharedSubscriptionAvailable, false);
    assert.equal(p.maximumQoS, 1, "[MQTT-3.2.2-9]");
    client.disconnect();
  });

  it("retainAvailable=false: a retained PUBLISH gets DISCONNECT 0x9A (§3.2.2.3.5)", async () => {
    const { client } = await connectV5(b.port, "cn-retain");
    client.send(rawPublish("r/t", "v", { retain: true }));
    await expectDisconnect(client, 0x9a);
    await expectLogged(b, "cn-retain", 0x9a);
    await expectBrokerServes(b);
  });

  it("retainAvailable=false: a retained will is refused with CONNACK 0x9A [MQTT-3.2.2-13]", async () => {
    const { client, connack } = await connectV5(b.port, "cn-will-retain", {
      will: { topic: "w/t", payload: Buffer.from("x"), qos: 0, retain: true },
    });
    assert.equal(connack.reasonCode, 0x9a);
    assert.equal(connack.sessionPresent, false, "[MQTT-3.2.2-6]");
    await client.waitClose();
  });

  it("maximumQoS=1: SUBACK grants at most 1 [MQTT-3.2.2-10] and a QoS 2 PUBLISH gets DISCONNECT 0x9B (§3.2.2.3.4)", async () => {
    const { client } = await connectV5(b.port, "cn-qos");
    const sa = await client.subscribe([{ topic: "q/a", qos: 2 }, { topic: "q/b", qos: 1 }, { topic: "q/c", qos: 0 }]);
    assert.deepEqual(sa.granted, [1, 1, 0]);
    client.send(rawPublish("q/a", "v", { qos: 2, pid: 1 }));
    await expectDisconnect(client, 0x9b);
    await expectLogged(b, "cn-qos", 0x9b);
    await expectBrokerServes(b);
  });

  it("maximumQoS=1: a QoS 2 will is refused with CONNACK 0x9B [MQTT-3.2.2-12]", async () => {
    const { client, connack } = await connectV5(b.port, "cn-will-qos", {
      will: { topic: "w/t", payload: Buffer.from("x"), qos: 2, retain: false },
    });
    assert.equal(connack.reasonCode, 0x9b);
    await client.waitClose();
  });

  it("wildcardSubscriptionAvailable=false: DISCONNECT 0xA2, no filter of the packet applied (§3.2.2.3.11)", async () => {
    const { client } = await connectV5(b.port, "cn-wild");
    assert.deepEqual((await client.subscribe("plain/t", { qos: 1 })).granted, [1]);
    client.sendPacket({ cmd: "subscribe", messageId: 5, subscriptions: [{ topic: "ok/t", qos: 1 }, { topic: "w/+", qos: 1 }] });
    await expectDisconnect(client, 0xa2);
    await expectLogged(b, "cn-wild", 0xa2);
    await expectBrokerServes(b);
  });

  it("sharedSubscriptionAvailable=false: DISCONNECT 0x9E (§3.2.2.3.13)", async () => {
    const { client } = await connectV5(b.port, "cn-shared");
    client.sendPacket({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "$share/g/t", qos: 1 }] });
    await expectDisconnect(client, 0x9e);
    await expectLogged(b, "cn-shared", 0x9e);
  });

  it("subscriptionIdentifiersAvailable=false: DISCONNECT 0xA1 (§3.2.2.3.12)", async () => {
    const { client } = await connectV5(b.port, "cn-subid");
    client.sendPacket({
      cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "s/t", qos: 1 }], properties: { subscriptionIdentifier: 4 },
    });
    await expectDisconnect(client, 0xa1);
    await expectLogged(b, "cn-subid", 0xa1);
  });

  it("topicAliasMaximum=3: alias 3 accepted, alias 4 gets DISCONNECT 0x94 [MQTT-3.3.2-12]", async () => {
    const { client } = await connectV5(b.port, "cn-alias");
    client.send(rawPublish("a/t", "v", { qos: 1, pid: 1, props: [0x23, 0, 3] }));
    await client.expectPacket("puback");
    client.send(rawPublish("a/t", "v", { qos: 1, pid: 2, props: [0x23, 0, 4] }));
    await expectDisconnect(client, 0x94);
  });

  it("maxPacketSize=2048: a larger packet gets DISCONNECT 0x95 (§3.2.2.3.6)", async () => {
    const { client } = await connectV5(b.port, "cn-size");
    client.send(rawPublish("s/t", "x".repeat(2100)));
    await expectDisconnect(client, 0x95);
    await expectLogged(b, "cn-size", 0x95);
  });

  it("3.1.1 clients, who cannot be told, get per-filter refusals instead of a DISCONNECT", async () => {
    const { client } = await connectV4(b.port, "cn-v4");
    const sa = await client.subscribe([{ topic: "w/+", qos: 1 }, { topic: "$share/g/t", qos: 1 }, { topic: "ok/t", qos: 2 }]);
    assert.deepEqual(sa.granted, [0x80, 0x80, 1]);
  });
});

describe("mqtt5: maximumQoS 0", () => {
  let b: TestBroker;
  useBroker((x) => (b = x), { maximumQoS: 0 });

  it("CONNACK says 0, SUBACK grants 0, a QoS 1 PUBLISH gets 0x9B [MQTT-3.2.2-9] [MQTT-3.2.2-10]", async () => {
    const { client, connack } = await connectV5(b.port, "q0");
    assert.equal(connack.properties?.maximumQoS, 0);
    assert.deepEqual((await client.subscribe([{ topic: "a", qos: 2 }, { topic: "b", qos: 1 }])).granted, [0, 0]);
    client.send(rawPublish("a", "v", { qos: 1, pid: 1 }));
    await expectDisconnect(client, 0x9b);
  });
});

describe("mqtt5: Server Keep Alive (maxKeepalive)", () => {
  let clock: ManualClock;
  let b: TestBroker;
  before(async () => {
    clock = new ManualClock();
    b = await startBroker({ maxKeepalive: 10 }, { clock });
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  it("a longer keepalive is capped and the cap told in CONNACK [MQTT-3.2.2-21]", async () => {
    const { client, connack } = await connectV5(b.port, "ka-long", { keepalive: 60 });
    assert.equal(connack.properties?.serverKeepAlive, 10);
    await new Promise((r) => setTimeout(r, 20));
    clock.advance(14_000);
    client.sendPacket({ cmd: "pingreq" });
    await client.expectPacket("pingresp");
    await new Promise((r) => setTimeout(r, 20));
    clock.advance(16_000); // 1.5 x the server's 10 s, not the client's 60 s [MQTT-3.1.2-22]
    await expectDisconnect(client, 0x8d);
  });

  it("keepalive 0 (none) also gets the server's value", async () => {
    const { client, connack } = await connectV5(b.port, "ka-zero", { keepalive: 0 });
    assert.equal(connack.properties?.serverKeepAlive, 10);
    client.disconnect();
  });

  it("a shorter keepalive stands: no Server Keep Alive [MQTT-3.2.2-22]", async () => {
    const { client, connack } = await connectV5(b.port, "ka-short", { keepalive: 5 });
    assert.equal(connack.properties?.serverKeepAlive, undefined);
    client.disconnect();
  });

  it("a 3.1.1 client, who cannot be told, keeps its own keepalive [MQTT-3.2.2-22]", async () => {
    const { client } = await connectV4(b.port, "ka-v4", { keepalive: 60 });
    await new Promise((r) => setTimeout(r, 20));
    clock.advance(30_000);
    client.sendPacket({ cmd: "pingreq" });
    await client.expectPacket("pingresp");
    client.disconnect();
  });
});

describe("mqtt5: server redirection (§4.11)", () => {
  it("serverReference: CONNACK 0x9C Use another server, with the Server Reference", async () => {
    const b = await startBroker({ serverReference: "other.example:1883" });
    try {
      const { client, connack } = await connectV5(b.port, "redir");
      assert.equal(connack.reasonCode, 0x9c);
      assert.equal(connack.properties?.serverReference, "other.example:1883");
      await client.waitClose();
      const { client: v4, connack: c4 } = await connectV4(b.port, "redir-v4");
      assert.equal(c4.returnCode, 3, "3.1.1: Server unavailable");
      await v4.waitClose();
    } finally {
      RawClient.destroyAll();
      await b.close();
    }
  });

  it("serverMoved: CONNACK 0x9D Server moved", async () => {
    const b = await startBroker({ serverReference: "new.example", serverMoved: true });
    try {
      const { client, connack } = await connectV5(b.port, "moved");
      assert.equal(connack.reasonCode, 0x9d);
      assert.equal(connack.properties?.serverReference, "new.example");
      await client.waitClose();
    } finally {
      RawClient.destroyAll();
      await b.close();
    }
  });
});
