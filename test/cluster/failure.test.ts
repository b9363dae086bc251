/**
 * Cluster guarantees 7, 8 (a member's node dying) and 9 on real node processes behind HAProxy:
 * a node killed with -9 has its clients' wills published once by a survivor within a bounded
 * time (its lease, 1 s here), honouring will delay; a persistent subscriber whose node dies
 * mid-stream gets every acknowledged message after reconnecting anywhere; a shared group
 * goes on with its members on the other nodes.
 */
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { type TestCluster, useCluster } from "../helpers/cluster.ts";
import { connectV4, connectV5, drainPublishes, payloadText } from "../helpers/raw-client.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("cluster: a node killed with -9", () => {
  const cluster = useCluster(3);
  let c: TestCluster;
  before(() => {
    c = cluster();
  });

  it("its clients' wills are published by a survivor within a bounded time, once, with their delay", { timeout: 30_000 }, async () => {
    const { client: watch } = await connectV5(c.via[2], "kw-watch");
    await watch.subscribe("kw/#", { qos: 1 });
    await connectV4(c.via[0], "kw-a", { will: { topic: "kw/a", payload: Buffer.from("a"), qos: 1, retain: false } });
    await connectV5(c.via[0], "kw-b", {
      properties: { sessionExpiryInterval: 60 },
      will: { topic: "kw/b", payload: Buffer.from("b"), qos: 1, retain: false, properties: { willDelayInterval: 2 } },
    });
    await connectV5(c.via[0], "kw-c", {
      will: { topic: "kw/c", payload: Buffer.from("c"), qos: 0, retain: false },
    });
    // a will delay longer than the session: it goes when the session ends (1 s) [MQTT-3.1.3-9]
    await connectV5(c.via[0], "kw-d", {
      properties: { sessionExpiryInterval: 1 },
      will: { topic: "kw/d", payload: Buffer.from("d"), qos: 1, retain: false, properties: { willDelayInterval: 30 } },
    });
    const killed = Date.now();
    await c.kill9(0);
    const got = new Map<string, number>();
    const deadline = killed + 8000;
    while (Date.now() < deadline && got.size < 4) {
      const p = await watch.waitForPacket("publish", () => true, Math.max(1, deadline - Date.now())).catch(() => undefined);
      if (!p) break;
      assert.ok(!got.has(p.topic), `will ${p.topic} published twice`);
      got.set(p.topic, Date.now() - killed);
      if (p.qos === 1) watch.sendPacket({ cmd: "puback", messageId: p.messageId });
    }
    assert.deepEqual([...got.keys()].sort(), ["kw/a", "kw/b", "kw/c", "kw/d"]);
    // lease 1 s + a check interval + adoption; delays count from the adoption
    for (const t of ["kw/a", "kw/c"]) assert.ok(got.get(t)! < 4000, `${t} after ${got.get(t)} ms`);
    assert.ok(got.get("kw/b")! >= 2000, `the delayed will came after ${got.get("kw/b")} ms`);
    assert.ok(got.get("kw/d")! >= 1000, `the session-bound will came after ${got.get("kw/d")} ms`);
    // the node comes back (same node id, a new process): no will again
    await c.startNode(0);
    await watch.expectNoPacket(1500);
    const survivors = [1, 2].map((i) => c.lines(i).join("\n"));
    assert.equal(survivors.filter((l) => /adopted a dead node's sessions .*peer="n1#/.test(l)).length, 1, "one survivor reaped it");
  });
});

describe("cluster: a persistent subscriber's node dies mid-stream", () => {
  const cluster = useCluster(3);
  let c: TestCluster;
  before(() => {
    c = cluster();
  });

  it("every message acknowledged to the publisher reaches the subscriber after it reconnects anywhere", { timeout: 30_000 }, async () => {
    const { client: sub } = await connectV4(c.via[0], "ms-sub", { clean: false });
    await sub.subscribe("ms/t", { qos: 1 });
    const { client: pub } = await connectV4(c.via[1], "ms-pub");
    const acked: string[] = [];
    const received: string[] = [];
    let killed = false;
    const reading = (async () => {
      for (;;) {
        const p = await sub.waitForPacket("publish", () => true, 5000).catch(() => undefined);
        if (!p) return;
        received.push(payloadText(p));
        sub.sendPacket({ cmd: "puback", messageId: p.messageId });
      }
    })();
    for (let i = 0; i < 300; i++) {
      if (i === 100) {
        killed = true;
        void c.kill9(0);
      }
      const ack = await pub.publish("ms/t", `m${i}`, { qos: 1, timeoutMs: 8000 }).catch(() => undefined);
      if (ack) acked.push(`m${i}`);
    }
    assert.ok(killed);
    sub.destroy();
    await reading;
    assert.ok(acked.length >= 290, `only ${acked.length} of 300 acknowledged`);
    const { client: back, connack } = await connectV4(c.lb, "ms-sub", { clean: false, timeoutMs: 8000 });
    assert.equal(connack.sessionPresent, true);
    const rest = await drainPublishes(back, 2000);
    const all = new Set([...received, ...rest.map(payloadText)]);
    const lost = acked.filter((m) => !all.has(m));
    assert.deepEqual(lost, [], "acknowledged messages lost");
    // what came after the reconnect came in publish order
    const order = rest.map((p) => Number(payloadText(p).slice(1)));
    assert.deepEqual(order, [...order].sort((a, b) => a - b));
  });
});

describe("cluster: a shared-subscription member's node dies", () => {
  const cluster = useCluster(3);
  let c: TestCluster;
  before(() => {
    c = cluster();
  });

  it("the group goes on with the members on the other nodes; nothing acknowledged is lost", { timeout: 30_000 }, async () => {
    const { client: m1 } = await connectV5(c.via[0], "sd-1");
    await m1.subscribe("$share/g/sd/#", { qos: 1 });
    const { client: m2 } = await connectV5(c.via[1], "sd-2");
    await m2.subscribe("$share/g/sd/#", { qos: 1 });
    const { client: pub } = await connectV5(c.via[2], "sd-pub");
    for (let i = 0; i < 20; i++) await pub.publish("sd/t", `a${i}`, { qos: 1 });
    const before1 = await drainPublishes(m1, 500);
    const before2 = await drainPublishes(m2, 500);
    assert.equal(before1.length + before2.length, 20);
    assert.ok(before1.length > 0 && before2.length > 0, "both members took part");
    await c.kill9(0);
    const acked: string[] = [];
    for (let i = 0; i < 40; i++) {
      const ack = await pub.publish("sd/t", `b${i}`, { qos: 1, timeoutMs: 8000 }).catch(() => undefined);
      if (ack) acked.push(`b${i}`);
      await sleep(20);
    }
    const got = (await drainPublishes(m2, 4000)).map(payloadText);
    assert.equal(new Set(got).size, got.length, "no message twice");
    assert.deepEqual(acked.filter((m) => !got.includes(m)), [], "acknowledged messages lost");
  });
});
