/**
 * PUBLISH over the wire, both directions, MQTT 3.1.1 and 5.0: QoS 0/1/2 acknowledgement
 * flows, packet identifiers, QoS downgrade, exactly-once for QoS 2, order per publisher,
 * binary-exact payloads (empty, all byte values, 64 KB+), redelivery on session resume.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { MemoryPersistence } from "../../src/persistence/memory.ts";
import { startBroker, type TestBroker, uniqueIds, useBroker } from "../helpers/broker.ts";
import { connectV3, connectV4, connectV5, type PacketOf, RawClient, connectVersion as connect, payloadText as text } from "../helpers/raw-client.ts";

type Version = 4 | 5;

/** A publish frame as sent by mqtt-packet (payload as Buffer). */
function pub(topic: string, payload: string | Uint8Array, qos: 0 | 1 | 2, messageId?: number, extra = {}) {
  return {
    cmd: "publish" as const,
    topic,
    payload: typeof payload === "string" ? Buffer.from(payload) : Buffer.from(payload),
    qos,
    messageId,
    dup: false,
    retain: false,
    ...extra,
  };
}


function countPublishes(c: RawClient): number {
  return c.unread.filter((f) => f.packet?.cmd === "publish").length;
}

describe("PUBLISH flows", () => {
  let b: TestBroker;
  useBroker((x) => (b = x));
  const uid = uniqueIds();

  for (const v of [4, 5] as Version[]) {
    const tag = v === 5 ? "5.0" : "3.1.1";

    describe(`MQTT ${tag}`, () => {
      it("QoS 0: no acknowledgement to the publisher; forwarded with QoS 0, DUP 0, no packet id", async () => {
        const t = uid("p0");
        const { client: sub } = await connect(v, b.port, uid("s"));
        await sub.subscribe(t, { qos: 2 });
        const { client: p } = await connect(v, b.port, uid("p"));
        p.sendPacket(pub(t, "zero", 0));
        const got = await sub.expectPacket("publish");
        // [MQTT-4.3.1-1] QoS 0 is sent with QoS=0, DUP=0
        assert.equal(got.qos, 0);
        assert.equal(got.dup, false);
        assert.equal(got.messageId, undefined);
        assert.equal(Buffer.from(got.payload).toString(), "zero");
        // [MQTT-3.3.4-1] QoS 0: the expected response is none
        await p.expectNoPacket(150);
      });

      it("QoS 1 in: PUBACK carries the PUBLISH packet id; QoS 1 out: packet id, then PUBACK ends it", async () => {
        const t = uid("p1");
        const { client: sub } = await connect(v, b.port, uid("s"));
        await sub.subscribe(t, { qos: 1 });
        const { client: p } = await connect(v, b.port, uid("p"));
        p.sendPacket(pub(t, "one", 1, 4242));
        // 3.1.1 [MQTT-4.3.2-2] / 5.0 [MQTT-4.3.2-4]: PUBACK with the packet id of the PUBLISH
        const ack = await p.expectPacket("puback");
        assert.equal(ack.messageId, 4242);
        if (v === 5) assert.ok((ack.reasonCode ?? 0) < 0x80, `PUBACK reason 0x${ack.reasonCode?.toString(16)}`);
        const got = await sub.expectPacket("publish");
        assert.equal(got.qos, 1);
        // [MQTT-2.3.1-1] a QoS > 0 PUBLISH has a non-zero packet identifier
        assert.ok(got.messageId && got.messageId > 0);
        assert.equal(got.dup, false);
        sub.sendPacket({ cmd: "puback", messageId: got.messageId });
        // acknowledged: never re-sent on this connection [MQTT-4.4.0-1]
        await sub.expectNoPacket(150);
      });

      it("QoS 2 in: PUBREC, then PUBREL -> PUBCOMP, each with the same packet id", async () => {
        const t = uid("p2in");
        const { client: sub } = await connect(v, b.port, uid("s"));
        await sub.subscribe(t, { qos: 0 });
        const { client: p } = await connect(v, b.port, uid("p"));
        p.sendPacket(pub(t, "two", 2, 77));
        // 3.1.1 [MQTT-4.3.3-2] / 5.0 [MQTT-4.3.3-8]: PUBREC with the PUBLISH's packet id
        const rec = await p.expectPacket("pubrec");
        assert.equal(rec.messageId, 77);
        p.sendPacket({ cmd: "pubrel", messageId: 77 });
        // 3.1.1 [MQTT-4.3.3-2] / 5.0 [MQTT-4.3.3-11]: PUBCOMP with the PUBREL's packet id
        const comp = await p.expectPacket("pubcomp");
        assert.equal(comp.messageId, 77);
        if (v === 5) assert.equal(comp.reasonCode ?? 0, 0);
        const got = await sub.expectPacket("publish");
        assert.equal(Buffer.from(got.payload).toString(), "two");
        assert.equal(got.qos, 0);
      });

      it("QoS 2 out: broker answers PUBREC with PUBREL (same id) and is done at PUBCOMP", async () => {
        const t = uid("p2out");
        const { client: sub } = await connect(v, b.port, uid("s"));
        await sub.subscribe(t, { qos: 2 });
        const { client: p } = await connect(v, b.port, uid("p"));
        await p.publish(t, "exactly", { qos: 2 });
        const got = await sub.expectPacket("publish");
        assert.equal(got.qos, 2);
        assert.equal(got.dup, false);
        const pid = got.messageId!;
        assert.ok(pid > 0);
        sub.sendPacket({ cmd: "pubrec", messageId: pid });
        // 3.1.1 [MQTT-4.3.3-1] / 5.0 [MQTT-4.3.3-4]: PUBREL with the PUBLISH's packet id
        const rel = await sub.expectPacket("pubrel");
        assert.equal(rel.messageId, pid);
        sub.sendPacket({ cmd: "pubcomp", messageId: pid });
        // after PUBREL the PUBLISH is never re-sent, after PUBCOMP nothing is pending
        // (5.0 [MQTT-4.3.3-6])
        await sub.expectNoPacket(150);
      });

      it("QoS 2 exactly once: a re-sent PUBLISH before PUBREL is acknowledged but not delivered again; after PUBCOMP the same id is a new message", async () => {
        const t = uid("eo");
        const { client: sub } = await connect(v, b.port, uid("s"));
        await sub.subscribe(t, { qos: 2 });
        const { client: p } = await connect(v, b.port, uid("p"));
        p.sendPacket(pub(t, "first", 2, 10));
        assert.equal((await p.expectPacket("pubrec")).messageId, 10);
        // the same PUBLISH again, DUP set, before PUBREL
        p.sendPacket(pub(t, "first", 2, 10, { dup: true }));
        // 3.1.1 [MQTT-4.3.3-2] / 5.0 [MQTT-4.3.3-10]: PUBREC again, no duplicate onward
        assert.equal((await p.expectPacket("pubrec")).messageId, 10);
        const first = await sub.expectPacket("publish");
        assert.equal(Buffer.from(first.payload).toString(), "first");
        sub.sendPacket({ cmd: "pubrec", messageId: first.messageId });
        await sub.waitForPacket("pubrel");
        sub.sendPacket({ cmd: "pubcomp", messageId: first.messageId });
        await sub.expectNoPacket(200);
        p.sendPacket({ cmd: "pubrel", messageId: 10 });
        assert.equal((await p.expectPacket("pubcomp")).messageId, 10);
        // 3.1.1 [MQTT-4.3.3-2] / 5.0 [MQTT-4.3.3-12]: after PUBCOMP the id starts a new message
        p.sendPacket(pub(t, "second", 2, 10));
        assert.equal((await p.expectPacket("pubrec")).messageId, 10);
        const second = await sub.expectPacket("publish");
        assert.equal(Buffer.from(second.payload).toString(), "second");
      });

      it("QoS 1: the same packet id after PUBACK is a new publication, delivered again", async () => {
        const t = uid("q1new");
        const { client: sub } = await connect(v, b.port, uid("s"));
        await sub.subscribe(t, { qos: 0 });
        const { client: p } = await connect(v, b.port, uid("p"));
        p.sendPacket(pub(t, "a", 1, 5));
        await p.expectPacket("puback");
        p.sendPacket(pub(t, "b", 1, 5, { dup: true }));
        await p.expectPacket("puback");
        // 3.1.1 [MQTT-4.3.2-2] / 5.0 [MQTT-4.3.2-5]
        const a = await sub.expectPacket("publish");
        const bb = await sub.expectPacket("publish");
        assert.deepEqual([Buffer.from(a.payload).toString(), Buffer.from(bb.payload).toString()], ["a", "b"]);
      });

      it("the DUP flag of an incoming PUBLISH is not propagated to subscribers", async () => {
        const t = uid("dup");
        const { client: sub } = await connect(v, b.port, uid("s"));
        await sub.subscribe(t, { qos: 1 });
        const { client: p } = await connect(v, b.port, uid("p"));
        p.sendPacket(pub(t, "d", 1, 9, { dup: true }));
        await p.expectPacket("puback");
        const got = await sub.expectPacket("publish");
        // [MQTT-3.3.1-3] DUP on the outgoing PUBLISH depends only on retransmission
        assert.equal(got.dup, false);
      });

      it("QoS is downgraded to the granted QoS, never upgraded", async () => {
        const t = uid("down");
        const subs: RawClient[] = [];
        for (const q of [0, 1, 2] as const) {
          const { client } = await connect(v, b.port, uid(`s${q}`));
          const ack = await client.subscribe(t, { qos: q });
          assert.deepEqual(ack.granted, [q]);
          subs.push(client);
        }
        const { client: p } = await connect(v, b.port, uid("p"));
        for (const pq of [0, 1, 2] as const) {
          await p.publish(t, `q${pq}`, { qos: pq });
          for (let sq = 0; sq < 3; sq++) {
            const got = await subs[sq].expectPacket("publish");
            // 3.1.1 [MQTT-3.8.4-6] / 5.0 [MQTT-3.8.4-8]: min(published QoS, granted QoS)
            assert.equal(got.qos, Math.min(pq, sq), `published QoS ${pq}, granted ${sq}`);
            if (got.qos === 1) subs[sq].sendPacket({ cmd: "puback", messageId: got.messageId });
            if (got.qos === 2) {
              subs[sq].sendPacket({ cmd: "pubrec", messageId: got.messageId });
              await subs[sq].expectPacket("pubrel");
              subs[sq].sendPacket({ cmd: "pubcomp", messageId: got.messageId });
            }
          }
        }
      });

      it("unacknowledged QoS 1/2 deliveries to one client use distinct packet ids", async () => {
        const t = uid("pids");
        const { client: sub } = await connect(v, b.port, uid("s"));
        await sub.subscribe(t, { qos: 2 });
        const { client: p } = await connect(v, b.port, uid("p"));
        for (let i = 0; i < 20; i++) p.sendPacket(pub(t, `m${i}`, (1 + (i % 2)) as 1 | 2, i + 1));
        const ids = new Set<number>();
        for (let i = 0; i < 20; i++) {
          const got = await sub.waitForPacket("publish");
          // 3.1.1 [MQTT-4.3.2-1] / [MQTT-4.3.3-1]: an unused packet id per new message
          assert.ok(got.messageId! > 0 && got.messageId! <= 65535);
          assert.ok(!ids.has(got.messageId!), `packet id ${got.messageId} reused while in flight`);
          ids.add(got.messageId!);
        }
      });

      it("order per publisher is kept for QoS 0, 1 and 2 on one topic, acks not awaited", async () => {
        const { client: sub } = await connect(v, b.port, uid("s"));
        const base = uid("order");
        await sub.subscribe(`${base}/+`, { qos: 2 });
        const { client: p } = await connect(v, b.port, uid("p"));
        const N = 150;
        for (const q of [0, 1, 2] as const) {
          for (let i = 0; i < N; i++) p.sendPacket(pub(`${base}/q${q}`, String(i), q, q ? i + 1 : undefined));
        }
        const seen: Record<string, number[]> = {};
        for (let i = 0; i < 3 * N; i++) {
          const got = await sub.waitForPacket("publish");
          (seen[got.topic] ??= []).push(Number(Buffer.from(got.payload).toString()));
          if (got.qos === 1) sub.sendPacket({ cmd: "puback", messageId: got.messageId });
          if (got.qos === 2) sub.sendPacket({ cmd: "pubrec", messageId: got.messageId });
        }
        const expected = Array.from({ length: N }, (_, i) => i);
        // 3.1.1 [MQTT-4.6.0-6] / 5.0 [MQTT-4.6.0-5]: same topic and QoS, in the order received
        for (const q of [0, 1, 2]) assert.deepEqual(seen[`${base}/q${q}`], expected, `QoS ${q} order`);
      });

      it("payloads are forwarded byte for byte: empty, every byte value, 64 KB+", async () => {
        const t = uid("bin");
        const { client: sub } = await connect(v, b.port, uid("s"));
        await sub.subscribe(t, { qos: 1 });
        const { client: p } = await connect(v, b.port, uid("p"));
        const all = Uint8Array.from({ length: 512 }, (_, i) => i % 256);
        const big = new Uint8Array(70_000 + 4567);
        for (let i = 0; i < big.length; i++) big[i] = (i * 7919 + (i >> 8)) & 255;
        const huge = new Uint8Array(300_000).fill(0xa5);
        huge[0] = 0;
        huge[huge.length - 1] = 0xff;
        const payloads = [new Uint8Array(0), all, big, huge, new Uint8Array([0, 0, 0])];
        for (const [i, pl] of payloads.entries()) await p.publish(t, pl, { qos: (i % 2) as 0 | 1 });
        for (const pl of payloads) {
          const got = await sub.expectPacket("publish", 5000);
          // [MQTT-3.3.3] the payload is application data, passed on untouched
          assert.equal(got.payload.length, pl.length);
          assert.ok(Buffer.from(got.payload).equals(Buffer.from(pl)), `payload of ${pl.length} bytes differs`);
          if (got.qos === 1) sub.sendPacket({ cmd: "puback", messageId: got.messageId });
        }
      });

      it("unacknowledged QoS 1 and 2 are re-sent on session resume with DUP=1 and the original packet id; a released QoS 2 gets PUBREL", async () => {
        const t = uid("resume");
        const id = uid("persist");
        const persist = v === 5 ? { clean: false, properties: { sessionExpiryInterval: 60 } } : { clean: false };
        const { client: s1 } = await connect(v, b.port, id, persist);
        await s1.subscribe(t, { qos: 2 });
        const { client: p } = await connect(v, b.port, uid("p"));
        await p.publish(t, "q1", { qos: 1 });
        await p.publish(t, "q2a", { qos: 2 });
        await p.publish(t, "q2b", { qos: 2 });
        const m1 = await s1.expectPacket("publish");
        const m2 = await s1.expectPacket("publish");
        const m3 = await s1.expectPacket("publish");
        // receive the third one (PUBREC) so the broker moves it to PUBREL; ack nothing else
        s1.sendPacket({ cmd: "pubrec", messageId: m3.messageId });
        assert.equal((await s1.expectPacket("pubrel")).messageId, m3.messageId);
        s1.destroy();
        await s1.waitClose();
        const { client: s2, connack } = await connect(v, b.port, id, persist);
        assert.equal(connack.sessionPresent, true);
        // [MQTT-4.4.0-1] re-send unacknowledged PUBLISH and PUBREL with their packet ids;
        // [MQTT-3.3.1-1] DUP=1 on a re-delivered PUBLISH
        const r1 = await s2.expectPacket("publish");
        const r2 = await s2.expectPacket("publish");
        assert.deepEqual([r1.messageId, r1.dup, r1.qos, Buffer.from(r1.payload).toString()], [m1.messageId, true, 1, "q1"]);
        assert.deepEqual([r2.messageId, r2.dup, r2.qos, Buffer.from(r2.payload).toString()], [m2.messageId, true, 2, "q2a"]);
        // 5.0 [MQTT-4.3.3-6]: once PUBREL was sent, the PUBLISH is not re-sent; PUBREL is
        const rel = await s2.expectPacket("pubrel");
        assert.equal(rel.messageId, m3.messageId);
        s2.sendPacket({ cmd: "puback", messageId: r1.messageId });
        s2.sendPacket({ cmd: "pubrec", messageId: r2.messageId });
        assert.equal((await s2.expectPacket("pubrel")).messageId, r2.messageId);
        s2.sendPacket({ cmd: "pubcomp", messageId: r2.messageId });
        s2.sendPacket({ cmd: "pubcomp", messageId: rel.messageId });
        await s2.expectNoPacket(150);
        s2.disconnect();
      });

      it("QoS 2 in, persistent session: a PUBLISH re-sent on a new connection before PUBREL is not delivered twice", async () => {
        const t = uid("eo-reconnect");
        const id = uid("pub-persist");
        const persist = v === 5 ? { clean: false, properties: { sessionExpiryInterval: 60 } } : { clean: false };
        const { client: sub } = await connect(v, b.port, uid("s"));
        await sub.subscribe(t, { qos: 0 });
        const { client: p1 } = await connect(v, b.port, id, persist);
        p1.sendPacket(pub(t, "once", 2, 31));
        assert.equal((await p1.expectPacket("pubrec")).messageId, 31);
        p1.destroy();
        await p1.waitClose();
        const { client: p2, connack } = await connect(v, b.port, id, persist);
        assert.equal(connack.sessionPresent, true);
        // the client did not see PUBREC (as far as it knows): it re-sends, DUP set
        p2.sendPacket(pub(t, "once", 2, 31, { dup: true }));
        assert.equal((await p2.expectPacket("pubrec")).messageId, 31);
        p2.sendPacket({ cmd: "pubrel", messageId: 31 });
        assert.equal((await p2.expectPacket("pubcomp")).messageId, 31);
        // 3.1.1 [MQTT-4.3.3-2] / 5.0 [MQTT-4.3.3-10]: one copy onward
        assert.equal(text(await sub.expectPacket("publish")), "once");
        await sub.expectNoPacket(200);
        p2.disconnect();
      });

      it("packet ids wrap after 65535 and skip an id still in flight", async () => {
        const t = uid("wrap");
        const id = uid("s");
        const { client: sub } = await connect(v, b.port, id);
        await sub.subscribe(t, { qos: 1 });
        const { client: p } = await connect(v, b.port, uid("p"));
        await p.publish(t, "held", { qos: 1 });
        const held = await sub.expectPacket("publish"); // never acknowledged
        // jump the session's id counter to the end of the range (white-box: 65k messages is slow)
        const session = b.broker.sessions.get(id) as unknown as { nextPid: number };
        assert.equal(typeof session.nextPid, "number", "test hook: Session.nextPid moved");
        session.nextPid = 65534;
        const ids: number[] = [];
        for (let i = 0; i < 4; i++) {
          await p.publish(t, `w${i}`, { qos: 1 });
          const got = await sub.expectPacket("publish");
          ids.push(got.messageId!);
          sub.sendPacket({ cmd: "puback", messageId: got.messageId });
        }
        // [MQTT-2.3.1-1] never 0; [MQTT-4.3.2-1] an unused id: the held one is skipped
        assert.ok(!ids.includes(0) && !ids.includes(held.messageId!), `ids ${ids} (held ${held.messageId})`);
        assert.deepEqual(ids.slice(0, 2), [65534, 65535]);
      });

      it("a PUBLISH whose topic contains a wildcard closes the connection", async () => {
        const { client: p } = await connect(v, b.port, uid("p"));
        p.sendPacket(pub("bad/+/topic", "x", 0));
        // [MQTT-3.3.2-2]; 3.1.1 [MQTT-4.7.1-1] / 5.0 [MQTT-4.7.0-1]: no wildcards in a Topic Name
        if (v === 5) {
          const d = await p.expectPacket("disconnect");
          assert.equal(d.reasonCode, 0x90);
        }
        await p.waitClose();
      });
    });
  }

  describe("across protocol versions", () => {
    it("3.1.1 publisher -> 5.0 subscriber and 5.0 publisher -> 3.1.1 subscriber", async () => {
      const t = uid("x");
      const { client: s4 } = await connectV4(b.port, uid("s4"));
      const { client: s5 } = await connectV5(b.port, uid("s5"));
      await s4.subscribe(t, { qos: 1 });
      await s5.subscribe(t, { qos: 1 });
      const { client: p4 } = await connectV4(b.port, uid("p4"));
      const { client: p5 } = await connectV5(b.port, uid("p5"));
      await p4.publish(t, "from4", { qos: 1 });
      await p5.publish(t, "from5", { qos: 1, properties: { userProperties: { k: "v" } } });
      for (const s of [s4, s5]) {
        const a = await s.expectPacket("publish");
        const c = await s.expectPacket("publish");
        // [MQTT-4.5.0-1] every matching session gets the message, whatever its version
        assert.deepEqual([Buffer.from(a.payload).toString(), Buffer.from(c.payload).toString()], ["from4", "from5"]);
      }
    });
  });

  describe("MQTT 3.1 (MQIsdp)", () => {
    it("a 3.1 client publishes and receives at QoS 1 and 2 like a 3.1.1 client", async () => {
      const t = uid("v3");
      const { client: s3, connack } = await connectV3(b.port, uid("s3"));
      assert.equal(connack.returnCode, 0);
      await s3.subscribe(t, { qos: 2 });
      const { client: p3 } = await connectV3(b.port, uid("p3"));
      await p3.publish(t, "old-but-gold", { qos: 2 });
      const got = await s3.expectPacket("publish");
      assert.deepEqual([text(got), got.qos], ["old-but-gold", 2]);
      s3.sendPacket({ cmd: "pubrec", messageId: got.messageId });
      assert.equal((await s3.expectPacket("pubrel")).messageId, got.messageId);
    });
  });

  describe("MQTT 5.0 specifics", () => {
    it("PUBACK / PUBREC say 0x10 No matching subscribers when nobody subscribed", async () => {
      const { client: p } = await connectV5(b.port, uid("p"));
      // MQTT 5 §3.4.2.1 / §3.5.2.1: 0x10 is a success code, the message was accepted
      const a = (await p.publish(uid("nobody"), "x", { qos: 1 })) as PacketOf<"puback">;
      assert.equal(a.reasonCode, 0x10);
      p.sendPacket(pub(uid("nobody"), "y", 2, 900));
      const r = await p.expectPacket("pubrec");
      assert.equal(r.reasonCode, 0x10);
      p.sendPacket({ cmd: "pubrel", messageId: 900 });
      assert.equal((await p.expectPacket("pubcomp")).messageId, 900);
    });

    it("PUBACK / PUBREC with a reason code >= 0x80 ends the delivery: not re-sent on resume or after a restart [MQTT-4.4.0-2]", async () => {
      const persistence = new MemoryPersistence();
      const b1 = await startBroker({}, { persistence });
      const opts = { clean: false, properties: { sessionExpiryInterval: 600 } };
      const mine: RawClient[] = [];
      try {
        const { client: s } = await connectV5(b1.port, "refuser", opts);
        const { client: p } = await connectV5(b1.port, "refuse-pub");
        mine.push(s, p);
        await s.subscribe("refuse/+", { qos: 2 });
        await p.publish("refuse/1", "no thanks", { qos: 1 });
        await p.publish("refuse/2", "no thanks either", { qos: 2 });
        const m1 = await s.expectPacket("publish");
        const m2 = await s.expectPacket("publish");
        s.sendPacket({ cmd: "puback", messageId: m1.messageId, reasonCode: 0x80 });
        s.sendPacket({ cmd: "pubrec", messageId: m2.messageId, reasonCode: 0x80 });
        // 5.0 [MQTT-4.3.3-4] PUBREL only after a PUBREC below 0x80
        await s.expectNoPacket(200);
        s.destroy();
        await s.waitClose();
        const { client: again, connack } = await connectV5(b1.port, "refuser", opts);
        mine.push(again);
        assert.equal(connack.sessionPresent, true);
        await again.expectNoPacket(200);
        again.disconnect();
        await again.waitClose();
      } finally {
        for (const c of mine) c.destroy();
        await b1.close();
      }
      // a broker restarted on the same store does not bring them back either
      const b2 = await startBroker({}, { persistence });
      try {
        const { client: s2, connack } = await connectV5(b2.port, "refuser", opts);
        mine.push(s2);
        assert.equal(connack.sessionPresent, true);
        await s2.expectNoPacket(300);
      } finally {
        for (const c of mine) c.destroy();
        await b2.close();
      }
    });

    it("application message properties reach subscribers unaltered, user properties in order", async () => {
      const t = uid("props");
      const { client: sub } = await connectV5(b.port, uid("s"));
      await sub.subscribe(t, { qos: 1 });
      const { client: p } = await connectV5(b.port, uid("p"));
      const properties = {
        payloadFormatIndicator: true,
        contentType: "text/plain; charset=utf-8",
        responseTopic: "reply/here",
        correlationData: Buffer.from([1, 2, 3, 0, 255]),
        userProperties: { z: "1", a: ["2", "3"], m: "4" },
      };
      await p.publish(t, "héllo", { qos: 1, properties });
      const got = await sub.expectPacket("publish");
      const pr = got.properties!;
      assert.equal(pr.payloadFormatIndicator, true); // [MQTT-3.3.2-4]
      assert.equal(pr.contentType, properties.contentType); // [MQTT-3.3.2-20]
      assert.equal(pr.responseTopic, properties.responseTopic); // [MQTT-3.3.2-15]
      assert.ok(Buffer.from(pr.correlationData!).equals(properties.correlationData)); // [MQTT-3.3.2-16]
      // [MQTT-3.3.2-17] all user properties, [MQTT-3.3.2-18] in their order
      assert.deepEqual(Object.entries(pr.userProperties!), Object.entries(properties.userProperties));
      assert.equal(Buffer.from(got.payload).toString(), "héllo");
    });

    it("a client-to-server topic alias is resolved for subscribers", async () => {
      const t = uid("alias");
      const { client: sub } = await connectV5(b.port, uid("s"));
      await sub.subscribe(t, { qos: 0 });
      const { client: p, connack } = await connectV5(b.port, uid("p"));
      assert.ok((connack.properties?.topicAliasMaximum ?? 0) >= 1);
      p.sendPacket(pub(t, "1", 0, undefined, { properties: { topicAlias: 1 } }));
      p.sendPacket(pub("", "2", 0, undefined, { properties: { topicAlias: 1 } }));
      // [MQTT-3.3.2-12] the server accepts aliases up to its Topic Alias Maximum
      const a = await sub.expectPacket("publish");
      const c = await sub.expectPacket("publish");
      assert.deepEqual([a.topic, c.topic], [t, t]);
      assert.equal(Buffer.from(c.payload).toString(), "2");
    });

    it("a subscriber's Maximum Packet Size is respected: a larger message is not sent to it", async () => {
      const t = uid("maxps");
      const { client: small } = await connectV5(b.port, uid("small"), { properties: { maximumPacketSize: 200 } });
      const { client: large } = await connectV5(b.port, uid("large"));
      await small.subscribe(t, { qos: 1 });
      await large.subscribe(t, { qos: 1 });
      const { client: p } = await connectV5(b.port, uid("p"));
      await p.publish(t, new Uint8Array(1000), { qos: 1 });
      await p.publish(t, "fits", { qos: 1 });
      // [MQTT-3.1.2-25] the server does not send a packet above the client's maximum
      const got = await small.expectPacket("publish");
      assert.equal(Buffer.from(got.payload).toString(), "fits");
      assert.equal((await large.expectPacket("publish")).payload.length, 1000);
      assert.equal(countPublishes(small), 0);
    });
  });
});
