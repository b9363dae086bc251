/**
 * Cluster guarantee 3, interest routing, measured on the bus's own counters with three nodes in
 * this process (each its own broker, listener and Redis connections, one Redis, one prefix): a
 * node receives only messages matching a subscription it holds; local deliveries never touch
 * Redis; what one node sends another within a tick is one batch; a node that starts later has
 * the whole route table at once.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { RedisPersistence } from "../../adapters/redis/redis.ts";
import { RedisBus } from "../../adapters/redis/bus.ts";
import { startBroker, type TestBroker, until } from "../helpers/broker.ts";
import { connectV4, drainPublishes, RawClient } from "../helpers/raw-client.ts";

const URL = "redis://127.0.0.1:6379";
const PREFIX = `colibri-test:routing:${Math.random().toString(36).slice(2)}:`;
const quiet = { info() {}, warn() {}, error() {} };

async function node(id: string): Promise<{ b: TestBroker; bus: RedisBus; store: RedisPersistence }> {
  const store = await RedisPersistence.connect({ url: URL, prefix: PREFIX, logger: quiet });
  const bus = new RedisBus(store, { nodeId: `${id}#t`, url: URL, prefix: PREFIX, leaseMs: 1000, logger: quiet });
  const b = await startBroker({ persistence: "redis", logLevel: "warn" }, { persistence: store, bus });
  return { b, bus, store };
}

describe("cluster: interest routing", () => {
  const nodes: Array<Awaited<ReturnType<typeof node>>> = [];
  before(async () => {
    nodes.push(await node("ra"), await node("rb"));
  });
  after(async () => {
    RawClient.destroyAll();
    for (const n of nodes) {
      await n.b.close();
      await n.store.close();
    }
    const r = new Redis(URL);
    const keys = await r.keys(`${PREFIX}*`);
    if (keys.length) await r.del(...keys);
    r.disconnect();
  });

  it("a node gets only what matches its subscriptions; local deliveries stay local; one batch per tick", async () => {
    const [a, b] = nodes;
    const { client: subA } = await connectV4(a.b.port, "ir-a");
    await subA.subscribe("ir/a/#", { qos: 1 });
    const { client: subB } = await connectV4(b.b.port, "ir-b");
    await subB.subscribe("ir/b/#", { qos: 1 });
    const { client: pub } = await connectV4(a.b.port, "ir-pub");
    const sentBefore = { ...a.bus.stats };
    const gotBefore = { ...b.bus.stats };

    // local only: nothing leaves node a
    for (let i = 0; i < 50; i++) pub.publish("ir/a/x", `l${i}`, { qos: 0 });
    assert.equal((await drainPublishes(subA, 500)).length, 50);
    assert.equal(a.bus.stats.messagesSent, sentBefore.messagesSent, "a local delivery went through the bus");
    // no subscriber anywhere: nothing leaves node a either
    await pub.publish("ir/none", "n", { qos: 1 });
    assert.equal(a.bus.stats.messagesSent, sentBefore.messagesSent);

    // for node b: 100 messages published in one write arrive in one or two batches
    const frames = [];
    for (let i = 0; i < 100; i++) frames.push(pub.sendPacket({ cmd: "publish", topic: "ir/b/x", payload: Buffer.from(`r${i}`), qos: 0, dup: false, retain: false }));
    const got = await drainPublishes(subB, 1000);
    assert.equal(got.length, 100);
    assert.equal(a.bus.stats.messagesSent - sentBefore.messagesSent, 100);
    assert.equal(b.bus.stats.messagesReceived - gotBefore.messagesReceived, 100);
    assert.ok(a.bus.stats.batchesSent - sentBefore.batchesSent <= 3, `${a.bus.stats.batchesSent - sentBefore.batchesSent} batches for 100 messages`);
    // and node b got nothing for node a's topics
    assert.equal(b.bus.stats.messagesReceived - gotBefore.messagesReceived, 100);
  });

  it("a node started later has the whole route table before it takes clients", async () => {
    const c = await node("rc");
    nodes.push(c);
    const m = c.b.broker.cluster.match("ir/b/anything");
    assert.deepEqual(m.nodes, [nodes[1].bus.nodeId]);
    assert.deepEqual(c.b.broker.cluster.match("ir/a/x").nodes, [nodes[0].bus.nodeId]);
    await until(() => nodes[0].b.broker.cluster.remote.nodes().length >= 1, "a to know the others");
  });
});
