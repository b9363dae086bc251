/**
 * Cluster guarantees 4, 5 and 11 on real node processes behind HAProxy: one client id, one
 * connection cluster-wide (takeover with DISCONNECT 0x8E, the session moves with its queue and
 * in-flight messages; simultaneous CONNECTs leave one connected); persistent sessions resume on
 * any node with what was published on any node meanwhile; SIGTERM leaves the cluster cleanly.
 */
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { type TestCluster, useCluster } from "../helpers/cluster.ts";
import { connectV4, connectV5, drainPublishes, payloadText, RawClient } from "../helpers/raw-client.ts";

async function publishAll(pub: RawClient, topic: string, payloads: string[], qos: 1 | 2 = 1) {
  for (const p of payloads) await pub.publish(topic, p, { qos });
}

describe("cluster: sessions across nodes", () => {
  const cluster = useCluster(3);
  let c: TestCluster;
  before(() => {
    c = cluster();
  });

  it("CONNECT on node B with an id connected on node A: A's connection gets DISCONNECT 0x8E within a second [MQTT-3.1.4-3]", async () => {
    const { client: a } = await connectV5(c.via[0], "to-1", { clean: false, properties: { sessionExpiryInterval: 300 } });
    await a.subscribe("to/t", { qos: 1 });
    const t0 = Date.now();
    const { client: b, connack } = await connectV5(c.via[1], "to-1", { clean: false, properties: { sessionExpiryInterval: 300 } });
    const d = await a.expectPacket("disconnect", 1000);
    assert.equal(d.reasonCode, 0x8e);
    await a.waitClose(1000);
    assert.ok(Date.now() - t0 < 1000, `takeover took ${Date.now() - t0} ms`);
    assert.equal(connack.sessionPresent, true, "the session moved with its subscription");
    const { client: pub } = await connectV5(c.via[2], "to-pub");
    await pub.publish("to/t", "after", { qos: 1 });
    assert.equal(payloadText(await b.expectPacket("publish", 3000)), "after");
  });

  it("the session moves with its queued and in-flight messages, in order, in-flight with DUP [MQTT-4.4.0-1]", async () => {
    const { client: a } = await connectV4(c.via[0], "mv-1", { clean: false });
    await a.subscribe("mv/t", { qos: 1 });
    const { client: pub } = await connectV4(c.via[2], "mv-pub");
    await publishAll(pub, "mv/t", ["m1", "m2"]);
    // received on A and never acknowledged: in flight when the session moves
    const first = await a.expectPacket("publish", 3000);
    const second = await a.expectPacket("publish", 3000);
    assert.deepEqual([payloadText(first), payloadText(second)], ["m1", "m2"]);
    a.destroy();
    await new Promise((r) => setTimeout(r, 100));
    await publishAll(pub, "mv/t", ["m3", "m4"]); // queued while offline, on node A
    const { client: b, connack } = await connectV4(c.via[1], "mv-1", { clean: false });
    assert.equal(connack.sessionPresent, true);
    const got = [];
    for (let i = 0; i < 4; i++) {
      const p = await b.expectPacket("publish", 3000);
      got.push([payloadText(p), p.dup]);
      b.sendPacket({ cmd: "puback", messageId: p.messageId });
    }
    assert.deepEqual(got, [["m1", true], ["m2", true], ["m3", false], ["m4", false]]);
    await b.expectNoPacket(300);
  });

  it("persistent sessions resume on any node with QoS 1/2 published on every node while offline, each publisher's in order", async () => {
    const { client: s } = await connectV5(c.via[0], "rs-1", { clean: false, properties: { sessionExpiryInterval: 600 } });
    await s.subscribe("rs/#", { qos: 2 });
    s.disconnect();
    await s.waitClose();
    const pubs = [];
    for (let i = 0; i < 3; i++) pubs.push((await connectV5(c.via[i], `rs-pub-${i}`)).client);
    const sent: string[] = [];
    for (let k = 0; k < 12; k++) {
      const payload = `o${k}`;
      sent.push(payload);
      await pubs[k % 3].publish(`rs/${k % 3}`, payload, { qos: (1 + (k % 2)) as 1 | 2 });
    }
    for (const target of [2, 1]) {
      const { client: back, connack } = await connectV5(c.lb, "rs-1", { clean: false, properties: { sessionExpiryInterval: 600 } });
      assert.equal(connack.sessionPresent, true);
      if (target === 2) {
        const got = (await drainPublishes(back, 1500)).map(payloadText);
        assert.deepEqual([...got].sort(), [...sent].sort(), "every message once");
        // each publisher's messages in its order [MQTT-4.6.0-6] (publishers on different nodes
        // are not ordered against each other)
        for (let i = 0; i < 3; i++) {
          const mine = sent.filter((_m, k) => k % 3 === i);
          assert.deepEqual(got.filter((m) => mine.includes(m)), mine, `publisher ${i}'s order`);
        }
        // QoS 2 flows complete so nothing remains
        for (;;) {
          const rel = await back.waitForPacket("pubrel", () => true, 300).catch(() => undefined);
          if (!rel) break;
          back.sendPacket({ cmd: "pubcomp", messageId: rel.messageId });
        }
      } else {
        await back.expectNoPacket(300);
      }
      back.disconnect();
      await back.waitClose();
    }
  });

  it("two CONNECTs with one id at once on two nodes leave exactly one connected", async () => {
    for (let round = 0; round < 5; round++) {
      const id = `dup-${round}`;
      const [x, y] = await Promise.all([
        connectV4(c.via[0], id, { clean: round % 2 === 0 }),
        connectV4(c.via[1], id, { clean: round % 2 === 0 }),
      ]);
      assert.equal(x.connack.returnCode, 0);
      assert.equal(y.connack.returnCode, 0);
      await new Promise((r) => setTimeout(r, 300));
      const open = [x.client, y.client].filter((cl) => !cl.closed);
      assert.equal(open.length, 1, `round ${round}: ${open.length} connections open`);
      // the one left works
      open[0].sendPacket({ cmd: "pingreq" });
      await open[0].expectPacket("pingresp");
      open[0].destroy();
    }
  });
});

describe("cluster: a node leaves with SIGTERM", () => {
  const cluster = useCluster(3);
  let c: TestCluster;
  before(() => {
    c = cluster();
  });

  it("its persistent sessions resume elsewhere at once with their queue, its routes go, no wills", async () => {
    const { client: watch } = await connectV4(c.via[2], "lv-watch");
    await watch.subscribe("lv/will/#", { qos: 1 });
    const { client: s } = await connectV5(c.via[0], "lv-1", {
      clean: false, properties: { sessionExpiryInterval: 600 },
      will: { topic: "lv/will/1", payload: Buffer.from("gone"), qos: 1, retain: false },
    });
    await s.subscribe("lv/t", { qos: 1 });
    const { client: pub } = await connectV4(c.via[1], "lv-pub");
    await c.stop(0);
    // MQTT 5: told the server is shutting down (0x8B)
    const d = await s.expectPacket("disconnect", 1000);
    assert.equal(d.reasonCode, 0x8b);
    // published right after the node left: queued for the session by the node that took it
    const t0 = Date.now();
    await pub.publish("lv/t", "after-leave", { qos: 1 });
    const { client: back, connack } = await connectV5(c.via[1], "lv-1", { clean: false, properties: { sessionExpiryInterval: 600 } });
    assert.equal(connack.sessionPresent, true);
    assert.ok(Date.now() - t0 < 1500, `resumed ${Date.now() - t0} ms after the node left`);
    assert.equal(payloadText(await back.expectPacket("publish", 3000)), "after-leave");
    await watch.expectNoPacket(500); // a planned shutdown publishes no will
    // its routes and its ownerships are gone from the store, its node entry too
    const left = await c.keys("*n1#*");
    assert.deepEqual(left, [], "keys of the node that left");
  });
});
