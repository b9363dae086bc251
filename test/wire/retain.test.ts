/**
 * Retained messages over the wire, MQTT 3.1.1 and 5.0: set, replace, clear, the RETAIN flag on
 * delivery, wildcard lookups, MQTT 5 Retain Handling and Retain As Published, and message
 * expiry (with a manual clock, so nothing sleeps).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { ManualClock } from "../../src/clock.ts";
import { brokerPublish, startBroker, type TestBroker, uniqueIds, useBroker } from "../helpers/broker.ts";
import { connectV4, connectV5, RawClient, connectVersion as connect, payloadText as text, drainPublishes as drain } from "../helpers/raw-client.ts";

/** Real sockets and processes: more than bun test's 5 s default on a loaded machine. */
const SLOW = { timeout: 30_000 };

type Version = 4 | 5;


describe("retained messages", () => {
  let b: TestBroker;
  useBroker((x) => (b = x));
  const uid = uniqueIds();

  for (const v of [4, 5] as Version[]) {
    const tag = v === 5 ? "5.0" : "3.1.1";
    const R = v === 5
      ? { store: "[MQTT-3.3.1-5]", onSub: "[MQTT-3.3.1-9]", clear: "[MQTT-3.3.1-6]", notStored: "[MQTT-3.3.1-7]", keep: "[MQTT-3.3.1-8]", live: "[MQTT-3.3.1-12]" }
      : { store: "[MQTT-3.3.1-5]", onSub: "[MQTT-3.3.1-6]/[MQTT-3.3.1-8]", clear: "[MQTT-3.3.1-10]", notStored: "[MQTT-3.3.1-11]", keep: "[MQTT-3.3.1-12]", live: "[MQTT-3.3.1-9]" };

    describe(`MQTT ${tag}`, () => {
      it(`a retained message is stored and sent to a new subscriber with RETAIN=1 ${R.store} ${R.onSub}`, async () => {
        const t = uid("set");
        const { client: p } = await connect(v, b.port, uid("p"));
        await p.publish(t, "state-1", { qos: 1, retain: true });
        const { client: s } = await connect(v, b.port, uid("s"));
        await s.subscribe(t, { qos: 2 });
        const got = await s.expectPacket("publish");
        assert.equal(text(got), "state-1");
        assert.equal(got.retain, true);
        // the stored QoS (1) is kept, capped by the granted QoS (2)
        assert.equal(got.qos, 1);
        s.sendPacket({ cmd: "puback", messageId: got.messageId });
      });

      it("a new retained message on the topic replaces the old one", async () => {
        const t = uid("replace");
        const { client: p } = await connect(v, b.port, uid("p"));
        await p.publish(t, "old", { qos: 1, retain: true });
        await p.publish(t, "new", { qos: 0, retain: true });
        await p.publish(t, "live-only", { qos: 1, retain: false });
        const { client: s } = await connect(v, b.port, uid("s"));
        await s.subscribe(t, { qos: 1 });
        // [MQTT-3.3.1-5] replaces; 3.1.1 [MQTT-3.3.1-7] a QoS 0 retained replaces too;
        // ${R.keep} RETAIN=0 neither stores nor replaces
        const got = await drain(s);
        assert.deepEqual(got.map((m) => [text(m), m.retain, m.qos]), [["new", true, 0]]);
      });

      it(`an empty retained payload clears the topic and is forwarded as a normal message ${R.clear} ${R.notStored}`, async () => {
        const t = uid("clear");
        const { client: p } = await connect(v, b.port, uid("p"));
        await p.publish(t, "there", { qos: 1, retain: true });
        const before = await b.persistence.retainedCount();
        const { client: live } = await connect(v, b.port, uid("live"));
        await live.subscribe(t, { qos: 1 });
        assert.equal(text(await live.expectPacket("publish")), "there");
        await p.publish(t, new Uint8Array(0), { qos: 1, retain: true });
        const fwd = await live.expectPacket("publish");
        assert.equal(fwd.payload.length, 0);
        // existing subscribers get it "as normal": RETAIN=0 on live forwarding
        assert.equal(fwd.retain, false);
        assert.equal(await b.persistence.retainedCount(), before - 1);
        const { client: late } = await connect(v, b.port, uid("late"));
        await late.subscribe(t, { qos: 1 });
        await late.expectNoPacket(200);
      });

      it(`a message published with RETAIN=1 reaches existing subscribers with RETAIN=0 ${R.live}`, async () => {
        const t = uid("live");
        const { client: s } = await connect(v, b.port, uid("s"));
        await s.subscribe(t, { qos: 1 });
        const { client: p } = await connect(v, b.port, uid("p"));
        await p.publish(t, "now", { qos: 1, retain: true });
        const got = await s.expectPacket("publish");
        assert.equal(got.retain, false);
        s.sendPacket({ cmd: "puback", messageId: got.messageId });
      });

      it("a wildcard subscription gets every matching retained message, '$' topics excepted", async () => {
        const base = uid("wild");
        const { client: p } = await connect(v, b.port, uid("p"));
        const topics = [`${base}`, `${base}/a`, `${base}/a/b`, `${base}/c`, `${base}/c/d/e`, `x/${base}`, `x/${base}/a`];
        for (const t of topics) await p.publish(t, t, { qos: 1, retain: true });
        await brokerPublish(b, `$app/${base}`, "sys", { qos: 1, retain: true }); // clients may not publish to $-topics
        const got = async (filter: string) => {
          const { client: s } = await connect(v, b.port, uid("s"));
          await s.subscribe(filter, { qos: 1 });
          const msgs = await drain(s);
          s.disconnect();
          assert.ok(msgs.every((m) => m.retain), `RETAIN=1 on every message sent for a new subscription`);
          return msgs.map((m) => m.topic).sort();
        };
        // 3.1.1 [MQTT-4.7.1-2] / 5.0 [MQTT-4.7.1-1]: '#' includes the parent level
        assert.deepEqual(await got(`${base}/#`), [base, `${base}/a`, `${base}/a/b`, `${base}/c`, `${base}/c/d/e`].sort());
        assert.deepEqual(await got(`${base}/+`), [`${base}/a`, `${base}/c`].sort());
        assert.deepEqual(await got(`+/${base}`), [`x/${base}`]);
        // [MQTT-4.7.2-1] '#' and '+' at the start do not match '$' topics; '$app/#' does
        assert.ok(!(await got("#")).includes(`$app/${base}`));
        assert.deepEqual(await got(`$app/${base}/#`), [`$app/${base}`]);
      });

      it("re-subscribing to the same filter sends the retained messages again", async () => {
        const t = uid("again");
        const { client: p } = await connect(v, b.port, uid("p"));
        await p.publish(t, "r", { qos: 0, retain: true });
        const { client: s } = await connect(v, b.port, uid("s"));
        await s.subscribe(t, { qos: 0 });
        assert.equal((await drain(s)).length, 1);
        await s.subscribe(t, { qos: 0 });
        // 3.1.1 [MQTT-3.8.4-3] / 5.0 [MQTT-3.8.4-4] (Retain Handling 0): re-sent
        const again = await drain(s);
        assert.deepEqual(again.map((m) => [text(m), m.retain]), [["r", true]]);
      });

      it("retained QoS 2 is delivered at the granted QoS and completes its flow", async () => {
        const t = uid("q2");
        const { client: p } = await connect(v, b.port, uid("p"));
        await p.publish(t, "two", { qos: 2, retain: true });
        const { client: s1 } = await connect(v, b.port, uid("s1"));
        await s1.subscribe(t, { qos: 1 });
        // 3.1.1 [MQTT-3.8.4-6] / 5.0 [MQTT-3.8.4-8]
        assert.equal((await s1.expectPacket("publish")).qos, 1);
        const { client: s2 } = await connect(v, b.port, uid("s2"));
        await s2.subscribe(t, { qos: 2 });
        const m = await s2.expectPacket("publish");
        assert.deepEqual([m.qos, m.retain], [2, true]);
        s2.sendPacket({ cmd: "pubrec", messageId: m.messageId });
        assert.equal((await s2.expectPacket("pubrel")).messageId, m.messageId);
        s2.sendPacket({ cmd: "pubcomp", messageId: m.messageId });
      });
    });
  }

  describe("MQTT 5.0 subscription options", () => {
    it("Retain Handling 0 sends retained messages on every subscribe [MQTT-3.3.1-9]", async () => {
      const t = uid("rh0");
      const { client: p } = await connectV5(b.port, uid("p"));
      await p.publish(t, "r", { qos: 0, retain: true });
      const { client: s } = await connectV5(b.port, uid("s"));
      await s.subscribe({ topic: t, qos: 0, rh: 0 });
      assert.equal((await drain(s)).length, 1);
      await s.subscribe({ topic: t, qos: 0, rh: 0 });
      assert.equal((await drain(s)).length, 1);
    });

    it("Retain Handling 1 sends them only when the subscription is new [MQTT-3.3.1-10]", async () => {
      const t = uid("rh1");
      const { client: p } = await connectV5(b.port, uid("p"));
      await p.publish(t, "r", { qos: 0, retain: true });
      const { client: s } = await connectV5(b.port, uid("s"));
      await s.subscribe({ topic: t, qos: 0, rh: 1 });
      assert.deepEqual((await drain(s)).map(text), ["r"]);
      await s.subscribe({ topic: t, qos: 1, rh: 1 });
      assert.equal((await drain(s)).length, 0);
    });

    it("Retain Handling 2 never sends them at subscribe time [MQTT-3.3.1-11]", async () => {
      const t = uid("rh2");
      const { client: p } = await connectV5(b.port, uid("p"));
      await p.publish(t, "r", { qos: 0, retain: true });
      const { client: s } = await connectV5(b.port, uid("s"));
      await s.subscribe({ topic: t, qos: 0, rh: 2 });
      assert.equal((await drain(s)).length, 0);
      // but live messages flow
      await p.publish(t, "live", { qos: 0, retain: true });
      assert.deepEqual((await drain(s)).map(text), ["live"]);
    });

    it("Retain As Published 1 keeps the RETAIN flag on live forwarding [MQTT-3.3.1-13]; 0 clears it [MQTT-3.3.1-12]", async () => {
      const t = uid("rap");
      const { client: s1 } = await connectV5(b.port, uid("rap1"));
      await s1.subscribe({ topic: t, qos: 1, rap: true });
      const { client: s0 } = await connectV5(b.port, uid("rap0"));
      await s0.subscribe({ topic: t, qos: 1, rap: false });
      const { client: p } = await connectV5(b.port, uid("p"));
      await p.publish(t, "r", { qos: 1, retain: true });
      await p.publish(t, "n", { qos: 1, retain: false });
      assert.deepEqual((await drain(s1)).map((m) => [text(m), m.retain]), [["r", true], ["n", false]]);
      assert.deepEqual((await drain(s0)).map((m) => [text(m), m.retain]), [["r", false], ["n", false]]);
      // retained messages sent because of a new subscription carry RETAIN=1 whatever RAP says
      const { client: s2 } = await connectV5(b.port, uid("rap0b"));
      await s2.subscribe({ topic: t, qos: 1, rap: false });
      assert.deepEqual((await drain(s2)).map((m) => [text(m), m.retain]), [["r", true]]);
    });

    it("retained messages keep their properties and carry the new subscription's identifier", async () => {
      const t = uid("rprops");
      const { client: p } = await connectV5(b.port, uid("p"));
      await p.publish(t, "{}", {
        qos: 1,
        retain: true,
        properties: { contentType: "application/json", userProperties: { a: "1", b: "2" } },
      });
      const { client: s } = await connectV5(b.port, uid("s"));
      await s.subscribe({ topic: t, qos: 1 }, { properties: { subscriptionIdentifier: 99 } });
      const got = await s.expectPacket("publish");
      assert.equal(got.properties?.contentType, "application/json"); // [MQTT-3.3.2-20]
      assert.deepEqual({ ...got.properties?.userProperties }, { a: "1", b: "2" }); // [MQTT-3.3.2-17]
      assert.equal(got.properties?.subscriptionIdentifier, 99); // [MQTT-3.3.4-3]
      // the same stored message to a 3.1.1 subscriber: plain, no properties on the wire
      const { client: s4 } = await connectV4(b.port, uid("s4"));
      await s4.subscribe(t, { qos: 1 });
      const g4 = await s4.expectPacket("publish");
      assert.deepEqual([text(g4), g4.retain], ["{}", true]);
    });

    it("a shared subscription gets no retained messages at subscribe time", async () => {
      const t = uid("shared");
      const { client: p } = await connectV5(b.port, uid("p"));
      await p.publish(t, "r", { qos: 0, retain: true });
      const { client: s } = await connectV5(b.port, uid("s"));
      await s.subscribe({ topic: `$share/g/${t}`, qos: 0 });
      // MQTT 5 §3.8.4 / §4.8.2: no retained messages for a shared subscription
      assert.equal((await drain(s)).length, 0);
    });
  });

  describe("many retained messages at once", () => {
    it("a wildcard matching more retained QoS 0 bytes than maxOutputBuffer: a reading subscriber gets every one, none dropped", SLOW, async () => {
      const small = await startBroker({ maxOutputBuffer: 64 * 1024 });
      const mine: RawClient[] = [];
      try {
        const { client: p } = await connectV4(small.port, "bulk-pub");
        mine.push(p);
        const N = 200;
        for (let i = 0; i < N; i++) p.publish(`bulk/${i}`, Buffer.alloc(8 * 1024, i & 255), { qos: 0, retain: true });
        await p.publish("bulk-sync", "x", { qos: 1 }); // everything before it has been processed
        assert.equal(await small.persistence.retainedCount(), N);
        // one subscriber that never reads: it must not hold up anyone else
        const { client: stuck } = await connectV4(small.port, "bulk-stuck");
        mine.push(stuck);
        stuck.socket.pause();
        stuck.sendPacket({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "bulk/#", qos: 0 }] });
        for (const v of [4, 5] as Version[]) {
          const { client: s } = await connect(v, small.port, `bulk-sub-${v}`);
          mine.push(s);
          await s.subscribe("bulk/#", { qos: 0 });
          const seen = new Set<string>();
          for (let i = 0; i < N; i++) {
            const m = await s.expectPacket("publish", 5000);
            assert.equal(m.retain, true);
            assert.equal(m.payload.length, 8 * 1024);
            seen.add(m.topic);
          }
          // 3.1.1 [MQTT-3.3.1-6] / 5.0 [MQTT-3.3.1-9]: every matching retained message is sent
          assert.equal(seen.size, N);
        }
        stuck.destroy();
        await stuck.waitClose();
      } finally {
        for (const c of mine) c.destroy();
        await small.close();
      }
    });
  });

  describe("MQTT 5.0 message expiry (manual clock)", () => {
    let clock: ManualClock;
    let eb: TestBroker;
    before(async () => {
      clock = new ManualClock();
      eb = await startBroker({}, { clock });
    });
    after(async () => {
      await eb.close();
    });

    it("a retained message is forwarded with its remaining lifetime, and not at all once expired [MQTT-3.3.2-5] [MQTT-3.3.2-6]", async () => {
      const t = uid("exp");
      const { client: p } = await connectV5(eb.port, uid("p"));
      await p.publish(t, "short", { qos: 1, retain: true, properties: { messageExpiryInterval: 10 } });
      await p.publish(`${t}/long`, "long", { qos: 1, retain: true, properties: { messageExpiryInterval: 1000 } });
      clock.advance(4_000);
      const { client: s } = await connectV5(eb.port, uid("s"));
      await s.subscribe(`${t}/#`, { qos: 1 });
      const first = await drain(s);
      const byText = Object.fromEntries(first.map((m) => [text(m), m.properties?.messageExpiryInterval]));
      // [MQTT-3.3.2-6] received value minus the time waited in the server
      assert.deepEqual(byText, { short: 6, long: 996 });
      clock.advance(6_001);
      const { client: s2 } = await connectV5(eb.port, uid("s2"));
      await s2.subscribe(`${t}/#`, { qos: 1 });
      // [MQTT-3.3.2-5] expired: not delivered; the unexpired one still is
      assert.deepEqual((await drain(s2)).map(text), ["long"]);
      // a 3.1.1 subscriber sees the same set, without the property
      const { client: s4 } = await connectV4(eb.port, uid("s4"));
      await s4.subscribe(`${t}/#`, { qos: 1 });
      assert.deepEqual((await drain(s4)).map(text), ["long"]);
    });

    it("a message queued for an offline session expires there [MQTT-3.3.2-5]; a live one carries its remaining interval", async () => {
      const t = uid("qexp");
      const id = uid("offline");
      const opts = { clean: false, properties: { sessionExpiryInterval: 3600 } };
      const { client: s1 } = await connectV5(eb.port, id, opts);
      await s1.subscribe(t, { qos: 1 });
      s1.disconnect();
      await s1.waitClose();
      const { client: p } = await connectV5(eb.port, uid("p"));
      await p.publish(t, "dies", { qos: 1, properties: { messageExpiryInterval: 5 } });
      await p.publish(t, "lives", { qos: 1, properties: { messageExpiryInterval: 60 } });
      clock.advance(20_000);
      const { client: s2, connack } = await connectV5(eb.port, id, { ...opts, clean: false });
      assert.equal(connack.sessionPresent, true);
      const got = await drain(s2);
      assert.deepEqual(got.map((m) => [text(m), m.properties?.messageExpiryInterval]), [["lives", 40]]);
      s2.disconnect();
    });
  });
});

describe("retained: a live update during a slow retained lookup", () => {
  it("the subscriber ends with the newer value: the stale stored one is not sent after the live one", async () => {
    const { MemoryPersistence } = await import("../../src/persistence/memory.ts");
    const store = new MemoryPersistence();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const realMatch = store.matchRetained.bind(store);
    let slow = false;
    // the lookup reads the store at once (old value) but answers only when released
    store.matchRetained = async (filter: string) => {
      const result = await realMatch(filter);
      if (slow) await gate;
      return result;
    };
    const b = await startBroker({}, { persistence: store });
    try {
      const { client: pub } = await connectV4(b.port, "rl-pub");
      await pub.publish("rl/t", "old", { qos: 1, retain: true });
      slow = true;
      const { client: sub } = await connectV4(b.port, "rl-sub");
      sub.sendPacket({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "rl/#", qos: 1 }] });
      await sub.expectPacket("suback");
      await pub.publish("rl/t", "new", { qos: 1, retain: true });
      const live = await sub.expectPacket("publish");
      assert.equal(Buffer.from(live.payload).toString(), "new");
      sub.sendPacket({ cmd: "puback", messageId: live.messageId });
      release();
      await sub.expectNoPacket(200);
    } finally {
      release();
      RawClient.destroyAll();
      await b.close();
    }
  });
});
