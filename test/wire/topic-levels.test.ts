/**
 * Deep topics over the wire (--max-topic-levels, default 200), on the test broker's store
 * (memory, or Redis with COLIBRI_TEST_PERSISTENCE=redis): a topic at the limit works for
 * retained lookups with '#' and '+/+/#'; one level more, and the 65,535-'/' probe that used
 * to break every later '#' lookup, are refused with each version's code (PUBLISH: 5.0 PUBACK /
 * PUBREC 0x90 or DISCONNECT 0x90 at QoS 0, 3.1.1 close; SUBSCRIBE: 0x8F / 0x80 per filter;
 * will: CONNACK 0x90 / close), and other clients never notice. Past the limit the tries
 * themselves still work: raised to 65,536 levels, a 65,536-level subscription and retained
 * message are delivered and found.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { type TestBroker, uniqueIds, useBroker } from "../helpers/broker.ts";
import { connectV4, connectV5, RawClient, connectVersion as connect, drainPublishes as drain, payloadText as text } from "../helpers/raw-client.ts";

const SLOW = { timeout: 30_000 };
/** `root` followed by enough levels to make `levels` in all. */
const depth = (root: string, levels: number) => root + "/x".repeat(levels - 1);
/** The probe from the issue: 65,535 '/' = 65,536 empty levels, 64 KB. */
const PROBE = "/".repeat(65_535);

/** Topics of the retained messages a new subscription to `filter` gets. */
async function retainedFor(port: number, id: string, filter: string, v: 4 | 5 = 5): Promise<string[]> {
  const { client } = await connect(v, port, id);
  await client.subscribe(filter, { qos: 1 });
  const got = await drain(client, 300);
  client.destroy();
  assert.ok(got.every((p) => p.retain), "only retained messages expected");
  return got.map((p) => p.topic).sort();
}

describe("topic levels: --max-topic-levels (default 200)", () => {
  let b: TestBroker;
  useBroker((x) => (b = x));
  const uid = uniqueIds();

  it("a retained message 200 levels deep is found by '#', '+/+/#' and its own topic", SLOW, async () => {
    const root = uid("deep-ok");
    const topic = depth(root, 200);
    const { client: p } = await connectV4(b.port, uid("p"));
    const ack = await p.publish(topic, "deep", { qos: 1, retain: true });
    assert.equal(ack?.cmd, "puback");
    assert.ok((await retainedFor(b.port, uid("s"), "#")).includes(topic), "'#' lookup");
    assert.ok((await retainedFor(b.port, uid("s"), "+/+/#")).includes(topic), "'+/+/#' lookup");
    assert.deepEqual(await retainedFor(b.port, uid("s"), topic, 4), [topic]);
    assert.deepEqual(await retainedFor(b.port, uid("s"), `${root}/+/#`), [topic]);
  });

  it("5.0 QoS 1 PUBLISH one level too deep: PUBACK 0x90, nothing stored, the connection goes on; '#' unaffected", SLOW, async () => {
    const root = uid("deep-q1");
    const { client: p } = await connectV5(b.port, uid("p"));
    await p.publish(`${root}/ok`, "kept", { qos: 1, retain: true });
    const before = await b.persistence.retainedCount();
    for (const topic of [depth(root, 201), PROBE]) {
      const ack = await p.publish(topic, "too deep", { qos: 1, retain: true });
      assert.equal(ack?.cmd, "puback");
      assert.equal(ack.reasonCode, 0x90, "Topic Name invalid");
    }
    assert.equal(await b.persistence.retainedCount(), before, "nothing stored");
    p.send(Uint8Array.of(0xc0, 0));
    await p.expectPacket("pingresp");
    const all = await retainedFor(b.port, uid("s"), "#");
    assert.ok(all.includes(`${root}/ok`), "a later '#' subscriber still gets the retained messages");
    assert.ok(all.every((t) => !t.startsWith(`${root}/x`)));
    assert.deepEqual(await retainedFor(b.port, uid("s"), "+/+/#"), all.filter((t) => t.split("/").length >= 2));
  });

  it("5.0 QoS 2 PUBLISH too deep: PUBREC 0x90 ends the flow, the packet id is free again", SLOW, async () => {
    const { client: p } = await connectV5(b.port, uid("p"));
    p.sendPacket({ cmd: "publish", topic: depth(uid("deep-q2"), 300), payload: "x", qos: 2, messageId: 7, retain: false, dup: false });
    const rec = await p.expectPacket("pubrec");
    assert.deepEqual([rec.messageId, rec.reasonCode], [7, 0x90]);
    // not held as a QoS 2 in progress: the same id starts a new message that is delivered
    const { client: s } = await connectV5(b.port, uid("s"));
    const t = uid("after-q2");
    await s.subscribe(t, { qos: 2 });
    p.sendPacket({ cmd: "publish", topic: t, payload: "fresh", qos: 2, messageId: 7, retain: false, dup: false });
    const ok = await p.expectPacket("pubrec");
    assert.equal(ok.reasonCode ?? 0, 0);
    assert.equal(text(await s.expectPacket("publish")), "fresh");
  });

  it("5.0 QoS 0 PUBLISH too deep: DISCONNECT 0x90; bystanders go on", SLOW, async () => {
    const t = uid("bystander");
    const { client: by } = await connectV4(b.port, uid("by"));
    await by.subscribe(t, { qos: 1 });
    const { client: p } = await connectV5(b.port, uid("p"));
    await p.publish(PROBE, "x", { qos: 0, retain: true });
    const d = await p.expectPacket("disconnect");
    assert.equal(d.reasonCode, 0x90);
    await p.waitClose();
    const { client: q } = await connectV5(b.port, uid("q"));
    await q.publish(t, "still here", { qos: 1 });
    assert.equal(text(await by.expectPacket("publish")), "still here");
  });

  it("3.1.1 PUBLISH too deep: the connection is closed without an acknowledgement", SLOW, async () => {
    for (const qos of [0, 1] as const) {
      const { client: p } = await connectV4(b.port, uid("p"));
      p.sendPacket({ cmd: "publish", topic: PROBE, payload: "x", qos, messageId: qos ? 1 : undefined, retain: true, dup: false });
      await p.waitClose();
      assert.equal(p.unread.length, 0, "no PUBACK, no other packet");
    }
  });

  for (const v of [4, 5] as const) {
    const FAIL = v === 5 ? 0x8f : 0x80;
    it(`MQTT ${v === 5 ? "5.0" : "3.1.1"} SUBSCRIBE: a too deep filter gets 0x${FAIL.toString(16)}, the others are granted`, SLOW, async () => {
      const root = uid("deep-sub");
      const { client: c } = await connect(v, b.port, uid("c"));
      const ack = await c.subscribe([
        { topic: depth(root, 201), qos: 1 },
        { topic: `${root}/#`, qos: 1 },
        { topic: PROBE, qos: 0 },
        { topic: `$share/g/${depth(root, 201)}`, qos: 1 },
        { topic: depth(root, 200), qos: 0 },
      ]);
      assert.deepEqual(ack.granted, [FAIL, 1, FAIL, FAIL, 0]);
      const { client: p } = await connectV4(b.port, uid("p"));
      await p.publish(`${root}/a`, "live", { qos: 1 });
      assert.equal(text(await c.expectPacket("publish")), "live");
    });
  }

  it("a will topic too deep: 5.0 CONNACK 0x90, 3.1.1 closed without CONNACK", SLOW, async () => {
    const will = { topic: depth(uid("deep-will"), 201), payload: "w", qos: 0 as const, retain: false };
    const r5 = await connectV5(b.port, uid("w5"), { will });
    assert.equal(r5.connack.reasonCode, 0x90);
    await r5.client.waitClose();
    const c4 = await RawClient.connect(b.port);
    c4.sendPacket({ cmd: "connect", clientId: uid("w4"), protocolVersion: 4, clean: true, keepalive: 60, will });
    await c4.waitClose();
    assert.equal(c4.unread.length, 0, "3.1.1 has no return code for it [MQTT-3.2.2-6]");
    // at the limit, accepted
    const ok = await connectV4(b.port, uid("w4ok"), { will: { ...will, topic: depth(uid("w"), 200) } });
    assert.equal(ok.connack.returnCode, 0);
    ok.client.destroy();
  });
});

describe("topic levels: the tries work far past any limit (--max-topic-levels 65536)", () => {
  let b: TestBroker;
  useBroker((x) => (b = x), { maxTopicLevels: 65_536 });
  const uid = uniqueIds();

  it("the 65,536-level probe: subscribed, published, retained and found by '#' and '+/+/#'", SLOW, async () => {
    const { client: s } = await connectV5(b.port, uid("s"));
    const ack = await s.subscribe(PROBE, { qos: 1 });
    assert.deepEqual(ack.granted, [1]);
    const { client: p } = await connectV5(b.port, uid("p"));
    const pub = await p.publish(PROBE, "deep", { qos: 1, retain: true });
    assert.equal(pub?.cmd, "puback");
    // the publisher stays connected (the recursive match used to throw and cut it off)
    const got = await s.expectPacket("publish");
    assert.equal(got.topic.length, PROBE.length);
    assert.deepEqual(await retainedFor(b.port, uid("r"), "#"), [PROBE]);
    assert.deepEqual(await retainedFor(b.port, uid("r"), "+/+/#"), [PROBE]);
    p.send(Uint8Array.of(0xc0, 0));
    await p.expectPacket("pingresp");
  });
});
