/**
 * MQTT 5 shared subscriptions `$share/{ShareName}/{filter}` (§4.8.2): one member per group per
 * message, every group and every plain subscriber its own copy, QoS 0/1/2 with the member's
 * granted QoS, no retained messages on subscribe, no-local refused, and what happens to the
 * messages of a member that leaves or stops acknowledging (the choice documented in
 * src/routing/shared.ts).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { startBroker, type TestBroker, useBroker } from "../helpers/broker.ts";
import { connectV4, connectV5, type PacketOf, RawClient } from "../helpers/raw-client.ts";
import { ManualClock } from "../../src/clock.ts";
import { ack, collect, expectBrokerServes, expectDisconnect, expectLogged, text } from "./util.ts";

describe("mqtt5: shared subscriptions", () => {
  let b: TestBroker;
  let pub: RawClient;
  before(async () => {
    b = await startBroker();
    pub = (await connectV5(b.port, "sh-pub", { keepalive: 0 })).client;
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  const member = async (id: string, filter: string, qos: 0 | 1 | 2 = 1, opts: Record<string, unknown> = {}) => {
    const { client } = await connectV5(b.port, id, { keepalive: 0, ...opts });
    const sa = await client.subscribe({ topic: filter, qos });
    assert.deepEqual(sa.granted, [qos]);
    return client;
  };

  it("CONNACK says Shared Subscription Available (§3.2.2.3.13)", async () => {
    const { client, connack } = await connectV5(b.port, "sh-connack");
    assert.equal(connack.properties?.sharedSubscriptionAvailable, true);
    client.disconnect();
  });

  it("a malformed share name is refused per filter with 0x8F [MQTT-4.8.2-1] [MQTT-4.8.2-2]", async () => {
    const { client } = await connectV5(b.port, "sh-bad-names");
    const sa = await client.subscribe([
      { topic: "$share//x", qos: 1 },
      { topic: "$share/g", qos: 1 },
      { topic: "$share/g+/x", qos: 1 },
      { topic: "$share/g#/x", qos: 1 },
      { topic: "$share/ok/x", qos: 1 },
    ]);
    assert.deepEqual(sa.granted, [0x8f, 0x8f, 0x8f, 0x8f, 1]);
    client.disconnect();
  });

  it("each message goes to exactly one member of the group, spread over the members", async () => {
    const a = await member("sh-rr-a", "$share/rr/rr/t");
    const c = await member("sh-rr-b", "$share/rr/rr/t");
    for (let i = 0; i < 10; i++) await pub.publish("rr/t", `m${i}`, { qos: 1 });
    const got: string[] = [];
    const take = async (cl: RawClient, into: string[]) => {
      for (;;) {
        const p = await cl.waitForPacket("publish", undefined, 300).catch(() => undefined);
        if (!p) return;
        into.push(text(p));
        await ack(cl, p);
      }
    };
    const ga: string[] = [], gb: string[] = [];
    await Promise.all([take(a, ga), take(c, gb)]);
    got.push(...ga, ...gb);
    assert.deepEqual([...got].sort(), Array.from({ length: 10 }, (_, i) => `m${i}`).sort(), "each message once");
    assert.ok(ga.length > 0 && gb.length > 0, `both members got work: ${ga.length} / ${gb.length}`);
    // per member, in publish order
    assert.deepEqual(ga, [...ga].sort((x, y) => +x.slice(1) - +y.slice(1)));
  });

  it("every group and every plain subscriber gets its own copy (§4.8.2)", async () => {
    const g1 = await member("sh-groups-1", "$share/one/grp/+");
    const g2 = await member("sh-groups-2", "$share/two/grp/#");
    const plain = await member("sh-groups-plain", "grp/x");
    await pub.publish("grp/x", "hello", { qos: 1 });
    for (const cl of [g1, g2, plain]) {
      const p = await cl.waitForPacket("publish");
      assert.equal(p.topic, "grp/x");
      assert.equal(text(p), "hello");
      await ack(cl, p);
      await cl.expectNoPacket(100);
    }
  });

  it("a client with a shared and a plain subscription may get two copies (§4.8.2)", async () => {
    const cl = await member("sh-both", "$share/both/both/t");
    await cl.subscribe({ topic: "both/t", qos: 1 });
    await pub.publish("both/t", "x", { qos: 1 });
    const two = await collect(cl, 2);
    assert.deepEqual(two.map(text), ["x", "x"]);
  });

  it("QoS 0, 1 and 2 flow, at the member's granted QoS [MQTT-4.8.2-3]", async () => {
    const q0 = await member("sh-q0", "$share/q0/q/t", 0);
    const q1 = await member("sh-q1", "$share/q1/q/t", 1);
    const q2 = await member("sh-q2", "$share/q2/q/t", 2);
    await pub.publish("q/t", "two", { qos: 2 });
    assert.equal((await q0.waitForPacket("publish")).qos, 0);
    const p1 = await q1.waitForPacket("publish");
    assert.equal(p1.qos, 1);
    await ack(q1, p1);
    const p2 = await q2.waitForPacket("publish");
    assert.equal(p2.qos, 2);
    await ack(q2, p2);
    await pub.publish("q/t", "zero", { qos: 0 });
    for (const cl of [q0, q1, q2]) assert.equal((await cl.waitForPacket("publish")).qos, 0);
  });

  it("no retained message is sent on a shared subscribe; a plain one gets it (§4.8.2)", async () => {
    await pub.publish("ret/sh", "kept", { qos: 1, retain: true });
    const s = await member("sh-ret", "$share/r/ret/sh");
    await s.expectNoPacket(200);
    const plain = await member("sh-ret-plain", "ret/sh");
    const p = await plain.waitForPacket("publish");
    assert.equal(p.retain, true);
    await pub.publish("ret/sh", "", { qos: 1, retain: true });
  });

  it("the member's own subscription identifier comes with the message (§3.3.4)", async () => {
    const { client: a } = await connectV5(b.port, "sh-subid", { keepalive: 0 });
    await a.subscribe({ topic: "$share/sid/sid/t", qos: 1 }, { properties: { subscriptionIdentifier: 42 } });
    await pub.publish("sid/t", "x", { qos: 1 });
    const p = await a.waitForPacket("publish");
    assert.equal(p.properties?.subscriptionIdentifier, 42);
    await ack(a, p);
  });

  it("a second SUBSCRIBE changes the member's options, not its share of messages (§4.8.2)", async () => {
    const a = await member("sh-resub-a", "$share/resub/resub/t", 1);
    const c = await member("sh-resub-b", "$share/resub/resub/t", 1);
    await a.subscribe({ topic: "$share/resub/resub/t", qos: 0 });
    for (let i = 0; i < 4; i++) await pub.publish("resub/t", `m${i}`, { qos: 1 });
    const ga = await collect(a, 2);
    const gb = await collect(c, 2);
    assert.ok(ga.every((p) => p.qos === 0), "a's new granted QoS");
    assert.ok(gb.every((p) => p.qos === 1));
    await a.expectNoPacket(100);
  });

  it("UNSUBSCRIBE leaves the group; the remaining member gets everything", async () => {
    const a = await member("sh-unsub-a", "$share/uns/uns/t");
    const c = await member("sh-unsub-b", "$share/uns/uns/t");
    a.sendPacket({ cmd: "unsubscribe", messageId: 9, unsubscriptions: ["$share/uns/uns/t"] });
    assert.deepEqual((await a.expectPacket("unsuback")).granted, [0]);
    for (let i = 0; i < 3; i++) await pub.publish("uns/t", `m${i}`, { qos: 1 });
    assert.deepEqual((await collect(c, 3)).map(text), ["m0", "m1", "m2"]);
    await a.expectNoPacket(100);
  });

  it("no-local on a shared subscription is a protocol error: DISCONNECT 0x82 [MQTT-3.8.3-4]", async () => {
    const { client } = await connectV5(b.port, "sh-nolocal");
    client.sendPacket({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "$share/nl/x", qos: 1, nl: true }] });
    await expectDisconnect(client, 0x82);
    await expectLogged(b, "sh-nolocal", 0x82);
    await expectBrokerServes(b);
  });

  it("3.1.1 clients can be members too", async () => {
    const { client: v4 } = await connectV4(b.port, "sh-v4", { keepalive: 0 });
    await v4.subscribe({ topic: "$share/v4/v4/t", qos: 1 });
    await pub.publish("v4/t", "old", { qos: 1 });
    assert.equal(text(await v4.waitForPacket("publish")), "old");
  });

  describe("a member that leaves or stops acknowledging does not strand messages", () => {
    it("QoS 1 in flight to a member whose session ends with its connection goes to another member", async () => {
      const a = await member("sh-end-a", "$share/end/end/t");
      await pub.publish("end/t", "m1", { qos: 1 });
      const first = await a.waitForPacket("publish"); // not acknowledged
      assert.equal(text(first), "m1");
      const c = await member("sh-end-b", "$share/end/end/t");
      a.destroy(); // Session Expiry 0: the session ends now
      const p = await c.waitForPacket("publish");
      assert.equal(text(p), "m1");
      assert.equal(p.qos, 1);
      assert.equal(p.dup, false, "a first delivery to this member");
      await ack(c, p);
    });

    it("QoS 1 in flight to a persistent member waits in its session and comes back with DUP", async () => {
      const a = await member("sh-keep-a", "$share/keep/keep/t", 1, { properties: { sessionExpiryInterval: 300 } });
      await pub.publish("keep/t", "m1", { qos: 1 });
      const first = await a.waitForPacket("publish");
      const c = await member("sh-keep-b", "$share/keep/keep/t");
      a.destroy();
      await c.expectNoPacket(300);
      const { client: back, connack } = await connectV5(b.port, "sh-keep-a", {
        keepalive: 0, clean: false, properties: { sessionExpiryInterval: 300 },
      });
      assert.equal(connack.sessionPresent, true);
      const again = await back.waitForPacket("publish");
      assert.equal(text(again), "m1");
      assert.equal(again.dup, true);
      assert.equal(again.messageId, first.messageId);
      await ack(back, again);
      back.sendPacket({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
    });

    it("QoS 2 in flight to a member whose session ends is not sent to anyone else [MQTT-4.8.2-5]", async () => {
      const a = await member("sh-q2end-a", "$share/q2end/q2end/t", 2);
      await pub.publish("q2end/t", "once", { qos: 2 });
      await a.waitForPacket("publish"); // no PUBREC
      const c = await member("sh-q2end-b", "$share/q2end/q2end/t", 2);
      a.destroy();
      await c.expectNoPacket(300);
    });

    it("QoS 2 in flight is completed with the same member when it reconnects [MQTT-4.8.2-4]", async () => {
      const opts = { properties: { sessionExpiryInterval: 300 } };
      const a = await member("sh-q2back-a", "$share/q2back/q2back/t", 2, opts);
      await pub.publish("q2back/t", "exactly", { qos: 2 });
      const first = await a.waitForPacket("publish");
      const c = await member("sh-q2back-b", "$share/q2back/q2back/t", 2);
      a.destroy();
      await c.expectNoPacket(200);
      const { client: back } = await connectV5(b.port, "sh-q2back-a", { keepalive: 0, clean: false, ...opts });
      const again = await back.waitForPacket("publish");
      assert.equal(again.messageId, first.messageId);
      assert.equal(again.dup, true);
      await ack(back, again);
      await c.expectNoPacket(100);
    });

    it("messages queued behind a member's window go to another member when it disconnects", async () => {
      // A can hold one unacknowledged message; m2 and m3 wait in its session
      const a = await member("sh-q-a", "$share/qd/qd/t", 1, { properties: { receiveMaximum: 1, sessionExpiryInterval: 300 } });
      for (const m of ["m1", "m2", "m3"]) await pub.publish("qd/t", m, { qos: 1 });
      assert.equal(text(await a.waitForPacket("publish")), "m1");
      await a.expectNoPacket(100);
      const c = await member("sh-q-b", "$share/qd/qd/t");
      a.destroy();
      // m2, m3 were never sent to A: B gets them now, in order; m1 stays with A's session
      assert.deepEqual((await collect(c, 2)).map(text), ["m2", "m3"]);
      await c.expectNoPacket(100);
    });

    it("a member that stops acknowledging is passed over while another has room", async () => {
      const a = await member("sh-slow-a", "$share/slow/slow/t", 1, { properties: { receiveMaximum: 1 } });
      const c = await member("sh-slow-b", "$share/slow/slow/t");
      for (let i = 0; i < 6; i++) await pub.publish("slow/t", `m${i}`, { qos: 1 });
      const stuck = await a.waitForPacket("publish"); // never acknowledged
      const rest = await collect(c, 5);
      assert.equal(new Set([text(stuck), ...rest.map(text)]).size, 6);
      await a.expectNoPacket(100);
    });

    it("a PUBACK with a failure code discards the message: no other member gets it [MQTT-4.8.2-6]", async () => {
      const a = await member("sh-nack-a", "$share/nack/nack/t");
      await pub.publish("nack/t", "rejected", { qos: 1 });
      const p = await a.waitForPacket("publish");
      a.sendPacket({ cmd: "puback", messageId: p.messageId, reasonCode: 0x80 });
      const c = await member("sh-nack-b", "$share/nack/nack/t");
      await new Promise((r) => setTimeout(r, 50));
      a.destroy();
      await c.expectNoPacket(300);
    });

    it("QoS 0 goes only to connected members", async () => {
      const a = await member("sh-q0on-a", "$share/q0on/q0on/t", 0, { properties: { sessionExpiryInterval: 300 } });
      const c = await member("sh-q0on-b", "$share/q0on/q0on/t", 0);
      a.destroy();
      await new Promise((r) => setTimeout(r, 50));
      for (let i = 0; i < 4; i++) await pub.publish("q0on/t", `m${i}`);
      assert.deepEqual((await collect(c, 4)).map(text), ["m0", "m1", "m2", "m3"]);
    });
  });
});

describe("mqtt5: shared subscriptions and session expiry (manual clock)", () => {
  let clock: ManualClock;
  let b: TestBroker;
  before(async () => {
    clock = new ManualClock();
    b = await startBroker({}, { clock });
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  it("QoS 1 held by a persistent member goes to another member when that session expires (§4.8.2)", async () => {
    const { client: a } = await connectV5(b.port, "shx-a", { keepalive: 0, properties: { sessionExpiryInterval: 10 } });
    await a.subscribe({ topic: "$share/x/x/t", qos: 1 });
    const { client: pub } = await connectV5(b.port, "shx-pub", { keepalive: 0 });
    await pub.publish("x/t", "held", { qos: 1 });
    await a.waitForPacket("publish");
    const { client: c } = await connectV5(b.port, "shx-b", { keepalive: 0 });
    await c.subscribe({ topic: "$share/x/x/t", qos: 1 });
    a.destroy();
    await c.expectNoPacket(200);
    clock.advance(9_000);
    await c.expectNoPacket(100);
    clock.advance(2_000);
    const p: PacketOf<"publish"> = await c.waitForPacket("publish");
    assert.equal(text(p), "held");
    await ack(c, p);
  });
});

describe("mqtt5: shared subscriptions not available", () => {
  let b: TestBroker;
  useBroker((x) => (b = x), { sharedSubscriptionAvailable: false });

  it("CONNACK says 0 and a shared SUBSCRIBE gets DISCONNECT 0x9E (§3.2.2.3.13)", async () => {
    const { client, connack } = await connectV5(b.port, "shoff");
    assert.equal(connack.properties?.sharedSubscriptionAvailable, false);
    client.sendPacket({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "plain/t", qos: 1 }, { topic: "$share/g/t", qos: 1 }] });
    await expectDisconnect(client, 0x9e);
    await expectLogged(b, "shoff", 0x9e);
    await expectBrokerServes(b);
  });

  it("a 3.1.1 client (never told) gets a per-filter refusal 0x80 instead", async () => {
    const { client } = await connectV4(b.port, "shoff-v4");
    const sa = await client.subscribe([{ topic: "$share/g/t", qos: 1 }, { topic: "ok/t", qos: 1 }]);
    assert.deepEqual(sa.granted, [0x80, 1]);
  });
});
