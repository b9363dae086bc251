/**
 * Cluster guarantees 1, 2, 6 and 8 on three real node processes behind a real HAProxy, one
 * Redis: cross-node delivery with one node's semantics, no subscribe race, retained messages
 * cluster-wide, shared subscriptions cluster-wide. Clients reach a chosen node through its
 * HAProxy frontend (c.via[i]) or any node through the balanced one (c.lb).
 */
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { type TestCluster, useCluster } from "../helpers/cluster.ts";
import { connectV4, connectV5, drainPublishes, payloadText, RawClient } from "../helpers/raw-client.ts";

describe("cluster: delivery across nodes", () => {
  const cluster = useCluster(3);
  let c: TestCluster;
  before(() => {
    c = cluster();
  });

  it("QoS 0, 1 and 2 cross nodes in order, QoS 2 once; the granted QoS applies [MQTT-4.6.0-6]", async () => {
    const subs = [];
    for (const qos of [0, 1, 2] as const) {
      const { client } = await connectV4(c.via[1], `x-sub-${qos}`);
      await client.subscribe("x/q", { qos });
      subs.push(client);
    }
    const { client: pub } = await connectV4(c.via[0], "x-pub");
    const N = 30;
    for (let i = 0; i < N; i++) await pub.publish("x/q", `m${i}`, { qos: (i % 3) as 0 | 1 | 2 });
    for (const [qos, s] of subs.entries()) {
      const got: string[] = [];
      for (let i = 0; i < N; i++) {
        const p = await s.expectPacket("publish", 3000);
        assert.equal(p.qos, Math.min(i % 3, qos), `message ${i} to the QoS ${qos} subscriber`);
        got.push(payloadText(p));
        if (p.qos === 1) s.sendPacket({ cmd: "puback", messageId: p.messageId });
        if (p.qos === 2) {
          s.sendPacket({ cmd: "pubrec", messageId: p.messageId });
          await s.waitForPacket("pubrel", (r) => r.messageId === p.messageId);
          s.sendPacket({ cmd: "pubcomp", messageId: p.messageId });
        }
      }
      assert.deepEqual(got, Array.from({ length: N }, (_, i) => `m${i}`));
      await s.expectNoPacket(200); // nothing twice
    }
  });

  it("MQTT 5 properties, retain-as-published, no-local and subscription identifiers travel intact", async () => {
    const { client: sub } = await connectV5(c.via[2], "p-sub");
    await sub.subscribe({ topic: "p/#", qos: 1, rap: true }, { properties: { subscriptionIdentifier: 7 } });
    await sub.subscribe({ topic: "p/+", qos: 1 }, { properties: { subscriptionIdentifier: 9 } });
    // the same client id cannot be on two nodes: no-local is checked with a subscriber that is
    // also the publisher, on one node, while another node's subscriber still gets the message
    const { client: self } = await connectV5(c.via[0], "p-self");
    await self.subscribe({ topic: "p/x", qos: 1, nl: true });
    const props = {
      contentType: "text/plain", responseTopic: "p/reply", correlationData: Buffer.from([1, 2, 3]),
      userProperties: { a: "1", b: ["2", "3"] }, payloadFormatIndicator: true, messageExpiryInterval: 60,
    };
    await self.publish("p/x", "hello", { qos: 1, retain: true, properties: props });
    const p = await sub.expectPacket("publish", 3000);
    assert.equal(payloadText(p), "hello");
    assert.equal(p.retain, true, "retain-as-published");
    assert.deepEqual([...(p.properties?.subscriptionIdentifier as number[])].sort(), [7, 9]);
    assert.equal(p.properties?.contentType, "text/plain");
    assert.equal(p.properties?.responseTopic, "p/reply");
    assert.deepEqual([...Buffer.from(p.properties!.correlationData!)], [1, 2, 3]);
    assert.deepEqual({ ...p.properties?.userProperties }, { a: "1", b: ["2", "3"] });
    assert.equal(p.properties?.payloadFormatIndicator, true);
    assert.ok((p.properties?.messageExpiryInterval ?? 0) <= 60 && (p.properties?.messageExpiryInterval ?? 0) >= 58);
    sub.sendPacket({ cmd: "puback", messageId: p.messageId });
    await self.expectNoPacket(300); // [MQTT-3.8.3-3] no-local
    await self.publish("p/x", "", { qos: 1, retain: true }); // clean up the retained message
  });

  it("PUBACK 0x10 (no matching subscribers) only when no node has a match", async () => {
    const { client: pub } = await connectV5(c.via[0], "nm-pub");
    const none = await pub.publish("nm/none", "x", { qos: 1 });
    assert.equal((none as { reasonCode?: number }).reasonCode, 0x10);
    const { client: sub } = await connectV5(c.via[2], "nm-sub");
    await sub.subscribe("nm/+", { qos: 1 });
    const some = await pub.publish("nm/one", "x", { qos: 1 });
    assert.equal((some as { reasonCode?: number }).reasonCode ?? 0, 0);
    await sub.expectPacket("publish", 3000);
  });

  it("subscribe, then publish on another node right after SUBACK: never missed (no subscribe race)", async () => {
    const { client: pub1 } = await connectV4(c.via[0], "race-pub-1");
    const { client: pub2 } = await connectV4(c.via[2], "race-pub-2");
    for (let i = 0; i < 40; i++) {
      const { client: sub } = await connectV4(c.via[1], `race-sub-${i}`);
      // a filter no node had before: its route is new everywhere
      await sub.subscribe(`race/${i}/#`, { qos: 1 });
      await (i % 2 ? pub1 : pub2).publish(`race/${i}/t`, `r${i}`, { qos: 1 });
      const p = await sub.expectPacket("publish", 3000);
      assert.equal(payloadText(p), `r${i}`);
      sub.destroy();
    }
  });

  it("retained messages are set and cleared from any node, seen by wildcard subscribers everywhere", async () => {
    const { client: a } = await connectV4(c.via[0], "ret-a");
    await a.publish("ret/x/1", "one", { qos: 1, retain: true });
    await a.publish("ret/y/2", "two", { qos: 1, retain: true });
    for (const i of [1, 2]) {
      const { client: s } = await connectV4(c.via[i], `ret-s${i}`);
      await s.subscribe("ret/+/#", { qos: 1 });
      const got = (await drainPublishes(s, 500)).map((p) => [p.topic, payloadText(p), p.retain]);
      assert.deepEqual(got.sort(), [["ret/x/1", "one", true], ["ret/y/2", "two", true]]);
    }
    const { client: clr } = await connectV4(c.via[2], "ret-clear");
    await clr.publish("ret/x/1", "", { qos: 1, retain: true });
    const { client: s3 } = await connectV4(c.via[1], "ret-s3");
    await s3.subscribe("ret/#", { qos: 1 });
    const after = (await drainPublishes(s3, 500)).map((p) => p.topic);
    assert.deepEqual(after, ["ret/y/2"]);
    await clr.publish("ret/y/2", "", { qos: 1, retain: true });
  });

  it("shared subscriptions: each message reaches exactly one member, members on every node", async () => {
    const members: RawClient[] = [];
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 2; j++) {
        const { client } = await connectV5(c.via[i], `sh-${i}-${j}`);
        await client.subscribe("$share/g/sh/#", { qos: 1 });
        members.push(client);
      }
    }
    const { client: pub } = await connectV5(c.via[0], "sh-pub");
    const N = 120;
    for (let i = 0; i < N; i++) await pub.publish(`sh/${i % 5}`, `s${i}`, { qos: 1 });
    const perMember = await Promise.all(members.map((m) => drainPublishes(m, 1500)));
    const all = perMember.flat().map(payloadText);
    assert.equal(all.length, N, "every message once");
    assert.equal(new Set(all).size, N, "no message twice");
    const nodesServing = [0, 1, 2].filter((i) => perMember[2 * i].length + perMember[2 * i + 1].length > 0);
    assert.deepEqual(nodesServing, [0, 1, 2], "members on every node take part");
  });
});
