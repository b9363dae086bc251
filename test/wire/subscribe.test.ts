/**
 * SUBSCRIBE / UNSUBSCRIBE over the wire, MQTT 3.1.1 and 5.0: per-filter return codes,
 * wildcard matching, the `$` rule, overlapping subscriptions, re-subscribe, unsubscribe,
 * no-local and subscription identifiers.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { brokerPublish, startBroker, type TestBroker, uniqueIds, useBroker } from "../helpers/broker.ts";
import { connectV4, connectV5, type PacketOf, RawClient, connectVersion as connect, payloadText as text, drainPublishes as drain } from "../helpers/raw-client.ts";

type Version = 4 | 5;


describe("SUBSCRIBE and UNSUBSCRIBE", () => {
  let b: TestBroker;
  useBroker((x) => (b = x));
  const uid = uniqueIds();

  for (const v of [4, 5] as Version[]) {
    const tag = v === 5 ? "5.0" : "3.1.1";
    const FAIL = v === 5 ? 0x8f : 0x80;

    describe(`MQTT ${tag}`, () => {
      it(`one SUBSCRIBE mixing valid and invalid filters: a code per filter, in order (invalid = 0x${FAIL.toString(16)})`, async () => {
        const base = uid("mix");
        const { client: c } = await connect(v, b.port, uid("c"));
        const filters: Array<[string, 0 | 1 | 2, number]> = [
          [`${base}/a`, 1, 1],
          [`${base}/#/x`, 1, FAIL], // '#' not last: 3.1.1 [MQTT-4.7.1-2] / 5.0 [MQTT-4.7.1-1]
          [`${base}/a+`, 2, FAIL], // '+' not a whole level: 3.1.1 [MQTT-4.7.1-3] / 5.0 [MQTT-4.7.1-2]
          [`${base}/+/c`, 2, 2],
          [`${base}#`, 0, FAIL], // '#' not a whole level
          [`${base}/#`, 0, 0],
          ["", 1, FAIL], // empty filter [MQTT-4.7.3-1]
          [`+/${base}/+`, 1, 1],
        ];
        c.sendPacket({
          cmd: "subscribe",
          messageId: 321,
          subscriptions: filters.map(([topic, qos]) => ({ topic, qos })),
        });
        const ack = await c.expectPacket("suback");
        // [MQTT-3.8.4-2] same packet id
        assert.equal(ack.messageId, 321);
        // 3.1.1 [MQTT-3.8.4-5] / 5.0 [MQTT-3.8.4-6]: one code per filter; [MQTT-3.9.3-1] in order;
        // [MQTT-3.9.3-2] only the allowed codes
        assert.deepEqual(ack.granted, filters.map(([, , code]) => code));
        // the connection stays usable and the valid filters work [MQTT-3.8.4-4] / [MQTT-3.8.4-5]
        const { client: p } = await connect(v, b.port, uid("p"));
        await p.publish(`${base}/a`, "1", { qos: 1 });
        await p.publish(`${base}/b/c`, "2", { qos: 1 });
        const got = await drain(c);
        assert.deepEqual(got.map(text).sort(), ["1", "2"]);
        // one message per matching subscription set, at the highest granted QoS (1 for "1": a and #; 2->1 for "2")
        assert.deepEqual(got.map((g) => g.qos), [1, 1]);
      });

      it("'+' matches exactly one level, including an empty one, never the parent", async () => {
        const base = uid("plus");
        const { client: c } = await connect(v, b.port, uid("c"));
        await c.subscribe([{ topic: `${base}/+/c`, qos: 0 }, { topic: `${base}/x/+`, qos: 0 }]);
        const { client: p } = await connect(v, b.port, uid("p"));
        for (const t of [`${base}/b/c`, `${base}//c`, `${base}/b/d/c`, `${base}/c`, `${base}/x`, `${base}/x/`, `${base}/x/y/z`]) {
          await p.publish(t, t, { qos: 1 });
        }
        // 3.1.1 [MQTT-4.7.1-3] / 5.0 [MQTT-4.7.1-2]: one whole level; "sport/+" does not match "sport" but matches "sport/"
        assert.deepEqual((await drain(c)).map((m) => m.topic), [`${base}/b/c`, `${base}//c`, `${base}/x/`]);
      });

      it("empty levels count: '/x' matches '+/+' and '/+' but not '+'", async () => {
        const leaf = uid("lead");
        const { client: c } = await connect(v, b.port, uid("c"));
        await c.subscribe([{ topic: "+/+", qos: 0 }, { topic: "/+", qos: 1 }, { topic: "+", qos: 2 }]);
        const { client: p } = await connect(v, b.port, uid("p"));
        await p.publish(`/${leaf}`, "x", { qos: 2 });
        const got = (await drain(c)).filter((m) => m.topic === `/${leaf}`);
        // §4.7.1.3 (non-normative example); one copy at QoS 1: "+" (QoS 2) does not match
        assert.deepEqual(got.map((m) => m.qos), [1]);
        c.disconnect();
      });

      it("'#' matches the parent level and every level below ('a/#' matches 'a')", async () => {
        const base = uid("hash");
        const { client: c } = await connect(v, b.port, uid("c"));
        await c.subscribe(`${base}/a/#`, { qos: 0 });
        const { client: p } = await connect(v, b.port, uid("p"));
        for (const t of [`${base}/a`, `${base}/a/b`, `${base}/a/b/c/d`, `${base}/a/`, `${base}/ab`, `${base}/b/a`]) {
          await p.publish(t, "x", { qos: 1 });
        }
        // 3.1.1 [MQTT-4.7.1-2] / 5.0 [MQTT-4.7.1-1]: '#' represents the parent and any number of child levels
        assert.deepEqual((await drain(c)).map((m) => m.topic), [`${base}/a`, `${base}/a/b`, `${base}/a/b/c/d`, `${base}/a/`]);
      });

      it("topics starting with '$' are not matched by filters starting with '#' or '+', only by '$app/...'", async () => {
        // any '$' topic (clients may not publish to $SYS itself: test/ops/sys.test.ts)
        const { client: all } = await connect(v, b.port, uid("all"));
        const { client: plus } = await connect(v, b.port, uid("plus"));
        const { client: sys } = await connect(v, b.port, uid("sys"));
        const { client: sysPlus } = await connect(v, b.port, uid("sysplus"));
        await all.subscribe("#", { qos: 0 });
        await plus.subscribe("+/x", { qos: 0 });
        await sys.subscribe("$app/#", { qos: 0 });
        await sysPlus.subscribe("$app/+", { qos: 0 });
        const { client: p } = await connect(v, b.port, uid("p"));
        const mark = uid("mark");
        await brokerPublish(b, "$app/x", mark, { qos: 1 }); // the broker's own: clients may not publish to $-topics
        await p.publish("plain/x", mark, { qos: 1 });
        const mine = (c: RawClient) => drain(c).then((ms) => ms.filter((m) => text(m) === mark).map((m) => m.topic));
        // [MQTT-4.7.2-1]
        assert.deepEqual(await mine(all), ["plain/x"]);
        assert.deepEqual(await mine(plus), ["plain/x"]);
        assert.deepEqual(await mine(sys), ["$app/x"]);
        assert.deepEqual(await mine(sysPlus), ["$app/x"]);
        for (const c of [all, plus, sys, sysPlus]) c.disconnect();
      });

      it("topic matching is case sensitive and does no normalisation", async () => {
        const base = uid("case");
        const { client: c } = await connect(v, b.port, uid("c"));
        await c.subscribe(`${base}/Accounts/é`, { qos: 0 });
        const { client: p } = await connect(v, b.port, uid("p"));
        await p.publish(`${base}/ACCOUNTS/é`, "no", { qos: 1 });
        await p.publish(`${base}/Accounts/e\u0301`, "no", { qos: 1 }); // decomposed é: a different topic
        await p.publish(`${base}/Accounts/é`, "yes", { qos: 1 });
        // [MQTT-4.7.3-4] no normalisation; every level compared character for character
        assert.deepEqual((await drain(c)).map(text), ["yes"]);
      });

      it("re-subscribing to an identical filter replaces the subscription (QoS changes, one copy)", async () => {
        const t = uid("resub");
        const { client: c } = await connect(v, b.port, uid("c"));
        assert.deepEqual((await c.subscribe(t, { qos: 2 })).granted, [2]);
        assert.deepEqual((await c.subscribe(t, { qos: 0 })).granted, [0]);
        const { client: p } = await connect(v, b.port, uid("p"));
        await p.publish(t, "x", { qos: 2 });
        const got = await drain(c);
        // 3.1.1 [MQTT-3.8.4-3] / 5.0 [MQTT-3.8.4-3]: replaced, not added
        assert.equal(got.length, 1);
        assert.equal(got[0].qos, 0);
      });

      it("UNSUBSCRIBE stops delivery; UNSUBACK carries the packet id, also when nothing matched", async () => {
        const base = uid("unsub");
        const { client: c } = await connect(v, b.port, uid("c"));
        await c.subscribe([{ topic: `${base}/#`, qos: 1 }, { topic: `${base}/+`, qos: 1 }]);
        const { client: p } = await connect(v, b.port, uid("p"));
        c.sendPacket({ cmd: "unsubscribe", messageId: 555, unsubscriptions: [`${base}/+`, `${base}/nothing`] });
        const ua = await c.expectPacket("unsuback");
        // [MQTT-3.10.4-4] UNSUBACK with the same packet id; [MQTT-3.10.4-5] even for no match
        assert.equal(ua.messageId, 555);
        if (v === 5) {
          // 5.0 [MQTT-3.11.3-1] a code per filter, in order; 0x11 No subscription existed
          assert.deepEqual(ua.granted, [0x00, 0x11]);
        }
        // [MQTT-3.10.4-1] compared character by character: "x/+" did not remove "x/#"
        await p.publish(`${base}/a`, "still", { qos: 1 });
        assert.deepEqual((await drain(c)).map(text), ["still"]);
        c.sendPacket({ cmd: "unsubscribe", messageId: 556, unsubscriptions: [`${base}/#`] });
        assert.equal((await c.expectPacket("unsuback")).messageId, 556);
        await p.publish(`${base}/a`, "gone", { qos: 1 });
        // [MQTT-3.10.4-2] no new messages for a deleted subscription
        await c.expectNoPacket(200);
      });

      it("after UNSUBSCRIBE a QoS 2 delivery already started is still completed", async () => {
        const t = uid("unsub-q2");
        const { client: c } = await connect(v, b.port, uid("c"));
        await c.subscribe(t, { qos: 2 });
        const { client: p } = await connect(v, b.port, uid("p"));
        await p.publish(t, "started", { qos: 2 });
        const m = await c.expectPacket("publish");
        c.sendPacket({ cmd: "unsubscribe", messageId: 77, unsubscriptions: [t] });
        await c.expectPacket("unsuback");
        c.sendPacket({ cmd: "pubrec", messageId: m.messageId });
        // [MQTT-3.10.4-3] the QoS 2 flow that was started goes on to PUBREL
        assert.equal((await c.expectPacket("pubrel")).messageId, m.messageId);
        c.sendPacket({ cmd: "pubcomp", messageId: m.messageId });
        await p.publish(t, "after", { qos: 2 });
        await c.expectNoPacket(150);
      });

      it("a granted QoS above the server's maximum QoS is lowered in SUBACK", async () => {
        const low = await startBroker({ maximumQoS: 1 });
        try {
          const { client: c } = await connect(v, low.port, uid("c"));
          const ack = await c.subscribe([{ topic: "q/a", qos: 2 }, { topic: "q/b", qos: 0 }]);
          // 3.1.1 [MQTT-3.8.4-5] / 5.0 [MQTT-3.8.4-7]: the code shows the maximum QoS granted
          assert.deepEqual(ack.granted, [1, 0]);
          c.destroy();
        } finally {
          await low.close();
        }
      });

      it("a SUBSCRIBE with no filters is a protocol violation that closes the connection", async () => {
        const { client: c } = await connect(v, b.port, uid("c"));
        // SUBSCRIBE, packet id 1, (5.0: empty properties), no payload
        c.send(v === 5 ? new Uint8Array([0x82, 0x03, 0x00, 0x01, 0x00]) : new Uint8Array([0x82, 0x02, 0x00, 0x01]));
        // 3.1.1 [MQTT-3.8.3-3] / 5.0 [MQTT-3.8.3-2]
        await c.waitClose();
      });
    });
  }

  describe("MQTT 3.1.1 overlapping subscriptions", () => {
    it("a message matching several subscriptions is delivered once, at the highest granted QoS", async () => {
      const base = uid("ov4");
      const { client: c } = await connectV4(b.port, uid("c"));
      await c.subscribe([{ topic: `${base}/#`, qos: 0 }, { topic: `${base}/+`, qos: 2 }, { topic: `${base}/x`, qos: 1 }]);
      const { client: p } = await connectV4(b.port, uid("p"));
      await p.publish(`${base}/x`, "q2", { qos: 2 });
      await p.publish(`${base}/x`, "q1", { qos: 1 });
      const got = await drain(c, 300);
      // [MQTT-3.3.5-1] the maximum QoS of all matching subscriptions (and min with the publish)
      assert.deepEqual(got.map((m) => [text(m), m.qos]), [["q2", 2], ["q1", 1]]);
    });
  });

  describe("MQTT 5.0 subscription options and identifiers", () => {
    it("overlapping subscriptions: one PUBLISH at the highest QoS carrying every matching subscription identifier", async () => {
      const base = uid("ov5");
      const { client: c } = await connectV5(b.port, uid("c"));
      await c.subscribe({ topic: `${base}/#`, qos: 0 }, { properties: { subscriptionIdentifier: 11 } });
      await c.subscribe({ topic: `${base}/+`, qos: 1 }, { properties: { subscriptionIdentifier: 22 } });
      await c.subscribe({ topic: `${base}/x`, qos: 2 }); // no identifier
      const { client: p } = await connectV5(b.port, uid("p"));
      await p.publish(`${base}/x`, "all", { qos: 2 });
      await p.publish(`${base}/y`, "two", { qos: 2 });
      const got = await drain(c, 300);
      assert.equal(got.length, 2);
      // [MQTT-3.3.4-2] highest QoS; [MQTT-3.3.4-3]/[MQTT-3.3.4-4] all identifiers, any order
      const ids = (m: PacketOf<"publish">) => [m.properties?.subscriptionIdentifier ?? []].flat().sort((a, z) => a - z);
      assert.deepEqual([text(got[0]), got[0].qos, ids(got[0])], ["all", 2, [11, 22]]);
      assert.deepEqual([text(got[1]), got[1].qos, ids(got[1])], ["two", 1, [11, 22]]);
    });

    it("re-subscribing without an identifier drops the old identifier", async () => {
      const t = uid("sid");
      const { client: c } = await connectV5(b.port, uid("c"));
      await c.subscribe({ topic: t, qos: 0 }, { properties: { subscriptionIdentifier: 7 } });
      const { client: p } = await connectV5(b.port, uid("p"));
      await p.publish(t, "a", { qos: 1 });
      assert.equal((await c.expectPacket("publish")).properties?.subscriptionIdentifier, 7);
      await c.subscribe({ topic: t, qos: 0 });
      await p.publish(t, "b", { qos: 1 });
      // MQTT 5 §3.8.4: identifiers are removed when the same filter is subscribed without one
      assert.equal((await c.expectPacket("publish")).properties?.subscriptionIdentifier, undefined);
    });

    it("no local: a client's own messages are not sent back to it on that subscription", async () => {
      const t = uid("nl");
      const { client: c } = await connectV5(b.port, uid("self"));
      await c.subscribe({ topic: t, qos: 1, nl: true });
      const { client: other } = await connectV5(b.port, uid("other"));
      await other.subscribe({ topic: t, qos: 1, nl: true });
      await c.publish(t, "mine", { qos: 1 });
      await other.publish(t, "theirs", { qos: 1 });
      // [MQTT-3.8.3-3]
      assert.deepEqual((await drain(c)).map(text), ["theirs"]);
      assert.deepEqual((await drain(other)).map(text), ["mine"]);
    });

    it("no local on one of two overlapping subscriptions: the other still delivers own messages", async () => {
      const base = uid("nl2");
      const { client: c } = await connectV5(b.port, uid("self"));
      await c.subscribe([{ topic: `${base}/x`, qos: 2, nl: true }, { topic: `${base}/#`, qos: 0 }]);
      await c.publish(`${base}/x`, "own", { qos: 2 });
      const got = await drain(c);
      // [MQTT-3.8.3-3] applies per subscription: only the '#' one (QoS 0) matches
      assert.deepEqual(got.map((m) => [text(m), m.qos]), [["own", 0]]);
    });

    it("no local on a shared subscription is a protocol error", async () => {
      const { client: c } = await connectV5(b.port, uid("c"));
      c.sendPacket({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "$share/g/nl", qos: 0, nl: true }] });
      // [MQTT-3.8.3-4]
      const d = await c.expectPacket("disconnect");
      assert.equal(d.reasonCode, 0x82);
      await c.waitClose();
    });

    it("3.1.1: wildcard filters are refused per filter (0x80) when wildcard subscriptions are off", async () => {
      const nw = await startBroker({ wildcardSubscriptionAvailable: false });
      try {
        const { client: c } = await connectV4(nw.port, uid("c"));
        const ack = await c.subscribe([{ topic: "w/+", qos: 1 }, { topic: "w/x", qos: 1 }, { topic: "#", qos: 0 }]);
        // 3.1.1 [MQTT-3.8.3-2]: a server without wildcard support rejects such filters
        assert.deepEqual(ack.granted, [0x80, 1, 0x80]);
        c.destroy();
      } finally {
        await nw.close();
      }
    });
  });
});
