/**
 * MQTT 5 Subscription Identifiers (§3.8.2.1.2, §3.3.4): stored with each subscription, sent with
 * every message the subscription causes — one PUBLISH carrying every matching identifier when
 * a client's subscriptions overlap — kept across a session resume, refused from clients in
 * PUBLISH, and refused altogether when the broker is configured without them.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { startBroker, type TestBroker, useBroker } from "../helpers/broker.ts";
import { connectV5, type PacketOf, RawClient } from "../helpers/raw-client.ts";
import { expectBrokerServes, expectDisconnect, expectLogged, prop, rawPublish, rawSubscribe, text } from "./util.ts";

const ids = (p: PacketOf<"publish">): number[] => {
  const v = p.properties?.subscriptionIdentifier as number | number[] | undefined;
  return v === undefined ? [] : Array.isArray(v) ? [...v].sort((a, b) => a - b) : [v];
};

describe("mqtt5: subscription identifiers", () => {
  let b: TestBroker;
  let pub: RawClient;
  before(async () => {
    b = await startBroker();
    pub = (await connectV5(b.port, "sid-pub", { keepalive: 0 })).client;
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  it("CONNACK says Subscription Identifiers Available (§3.2.2.3.12)", async () => {
    const { client, connack } = await connectV5(b.port, "sid-connack");
    assert.equal(connack.properties?.subscriptionIdentifiersAvailable, true);
    client.disconnect();
  });

  it("a message carries the identifier of the subscription that caused it [MQTT-3.3.4-3]", async () => {
    const { client } = await connectV5(b.port, "sid-one", { keepalive: 0 });
    await client.subscribe("one/+", { qos: 1, properties: { subscriptionIdentifier: 7 } });
    await pub.publish("one/x", "v", { qos: 1 });
    const p = await client.expectPacket("publish");
    assert.deepEqual(ids(p), [7]);
  });

  it("overlapping subscriptions: one PUBLISH, highest QoS, every matching identifier [MQTT-3.3.4-2] [MQTT-3.3.4-4]", async () => {
    const { client } = await connectV5(b.port, "sid-overlap", { keepalive: 0 });
    await client.subscribe("ov/+", { qos: 0, properties: { subscriptionIdentifier: 1 } });
    await client.subscribe("ov/#", { qos: 2, properties: { subscriptionIdentifier: 2 } });
    await client.subscribe("ov/x", { qos: 1 }); // no identifier
    await client.subscribe("other/#", { qos: 1, properties: { subscriptionIdentifier: 3 } });
    await pub.publish("ov/x", "once", { qos: 2 });
    const p = await client.expectPacket("publish");
    assert.equal(p.qos, 2);
    assert.deepEqual(ids(p), [1, 2]);
    client.sendPacket({ cmd: "pubrec", messageId: p.messageId });
    await client.expectPacket("pubrel");
    client.sendPacket({ cmd: "pubcomp", messageId: p.messageId });
    await client.expectNoPacket(150);
  });

  it("one copy with or without identifiers: the choice does not depend on them [MQTT-3.3.4-2] [MQTT-3.3.4-4]", async () => {
    // the same three overlapping subscriptions, with no identifier, all with one, some with one
    const arrangements: Array<[string, Array<number | undefined>]> = [
      ["none", [undefined, undefined, undefined]],
      ["all", [31, 32, 33]],
      ["some", [undefined, 42, undefined]],
    ];
    const clients: RawClient[] = [];
    for (const [name, sids] of arrangements) {
      const { client } = await connectV5(b.port, `sid-choice-${name}`, { keepalive: 0 });
      const filters = ["choice/+", "choice/#", "choice/x"];
      for (let i = 0; i < filters.length; i++) {
        const properties = sids[i] === undefined ? undefined : { subscriptionIdentifier: sids[i] };
        await client.subscribe(filters[i], { qos: i as 0 | 1 | 2, properties });
      }
      clients.push(client);
    }
    await pub.publish("choice/x", "once", { qos: 2 });
    for (let k = 0; k < clients.length; k++) {
      const c = clients[k];
      const p = await c.expectPacket("publish");
      assert.equal(p.qos, 2, "the highest QoS of the matching subscriptions");
      assert.deepEqual(ids(p), (arrangements[k][1].filter((x) => x !== undefined) as number[]));
      c.sendPacket({ cmd: "pubrec", messageId: p.messageId });
      await c.expectPacket("pubrel");
      c.sendPacket({ cmd: "pubcomp", messageId: p.messageId });
      await c.expectNoPacket(150); // one copy, not one per subscription
    }
  });

  it("the same identifier on two matching subscriptions comes twice (§3.3.4)", async () => {
    const { client } = await connectV5(b.port, "sid-same", { keepalive: 0 });
    await client.subscribe("same/+", { properties: { subscriptionIdentifier: 5 } });
    await client.subscribe("same/#", { properties: { subscriptionIdentifier: 5 } });
    await pub.publish("same/t", "v");
    assert.deepEqual(ids(await client.expectPacket("publish")), [5, 5]);
  });

  it("the largest identifier, 268,435,455, goes through as a four-byte integer", async () => {
    const { client } = await connectV5(b.port, "sid-max", { keepalive: 0 });
    await client.subscribe("max/t", { properties: { subscriptionIdentifier: 268_435_455 } });
    await pub.publish("max/t", "v");
    assert.deepEqual(ids(await client.expectPacket("publish")), [268_435_455]);
  });

  it("retained messages sent on subscribe carry the identifier", async () => {
    await pub.publish("sidret/t", "kept", { qos: 1, retain: true });
    const { client } = await connectV5(b.port, "sid-ret", { keepalive: 0 });
    client.sendPacket({
      cmd: "subscribe", messageId: 3, subscriptions: [{ topic: "sidret/#", qos: 1 }], properties: { subscriptionIdentifier: 99 },
    });
    await client.expectPacket("suback");
    const p = await client.expectPacket("publish");
    assert.equal(p.retain, true);
    assert.deepEqual(ids(p), [99]);
    await pub.publish("sidret/t", "", { qos: 1, retain: true });
  });

  it("a SUBSCRIBE without an identifier replaces the subscription and drops its identifier (§3.8.4)", async () => {
    const { client } = await connectV5(b.port, "sid-replace", { keepalive: 0 });
    await client.subscribe("rep/t", { properties: { subscriptionIdentifier: 11 } });
    await client.subscribe("rep/t");
    await pub.publish("rep/t", "v");
    assert.deepEqual(ids(await client.expectPacket("publish")), []);
  });

  it("identifiers are kept with the session: queued messages and later ones carry them after a resume", async () => {
    const opts = { keepalive: 0, clean: false, properties: { sessionExpiryInterval: 60 } };
    const { client } = await connectV5(b.port, "sid-resume", opts);
    await client.subscribe("res/+", { qos: 1, properties: { subscriptionIdentifier: 21 } });
    await client.subscribe("res/#", { qos: 1, properties: { subscriptionIdentifier: 22 } });
    client.disconnect();
    await client.waitClose();
    await pub.publish("res/a", "offline", { qos: 1 });
    const { client: back, connack } = await connectV5(b.port, "sid-resume", opts);
    assert.equal(connack.sessionPresent, true);
    const q = await back.expectPacket("publish");
    assert.equal(text(q), "offline");
    assert.deepEqual(ids(q), [21, 22]);
    back.sendPacket({ cmd: "puback", messageId: q.messageId });
    await pub.publish("res/b", "online", { qos: 1 });
    const p = await back.expectPacket("publish");
    assert.deepEqual(ids(p), [21, 22]);
    back.sendPacket({ cmd: "puback", messageId: p.messageId });
    back.sendPacket({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
  });

  it("a client's PUBLISH carrying a Subscription Identifier: DISCONNECT 0x82 [MQTT-3.3.4-6]", async () => {
    const { client } = await connectV5(b.port, "sid-in-publish");
    client.send(rawPublish("x/y", "z", { props: prop.subscriptionId(4) }));
    await expectDisconnect(client, 0x82);
    await expectLogged(b, "sid-in-publish", 0x82);
    await expectBrokerServes(b);
  });

  it("Subscription Identifier 0 in SUBSCRIBE: DISCONNECT 0x82 (§3.8.2.1.2)", async () => {
    const { client } = await connectV5(b.port, "sid-zero");
    client.send(rawSubscribe(1, [["z/t", 1]], prop.subscriptionId(0)));
    await expectDisconnect(client, 0x82);
    await expectLogged(b, "sid-zero", 0x82);
  });

  it("two Subscription Identifiers in one SUBSCRIBE: DISCONNECT 0x82 (§3.8.2.1.2)", async () => {
    const { client } = await connectV5(b.port, "sid-two");
    client.send(rawSubscribe(1, [["z/t", 1]], [...prop.subscriptionId(1), ...prop.subscriptionId(2)]));
    await expectDisconnect(client, 0x82);
  });
});

describe("mqtt5: subscription identifiers not available", () => {
  let b: TestBroker;
  useBroker((x) => (b = x), { subscriptionIdentifiersAvailable: false });

  it("CONNACK says 0 and a SUBSCRIBE with one gets DISCONNECT 0xA1 (§3.2.2.3.12)", async () => {
    const { client, connack } = await connectV5(b.port, "sid-off");
    assert.equal(connack.properties?.subscriptionIdentifiersAvailable, false);
    await client.subscribe("fine/t"); // without one: fine
    client.send(rawSubscribe(2, [["x/t", 1]], prop.subscriptionId(3)));
    await expectDisconnect(client, 0xa1);
    await expectLogged(b, "sid-off", 0xa1);
    await expectBrokerServes(b);
  });
});
