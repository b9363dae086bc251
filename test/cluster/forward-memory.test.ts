/**
 * Forwards waiting for Redis are memory the broker holds: they count against --max-memory-bytes
 * (src/session/memory.ts, "forwarding"), so a Redis that stops answering turns into refused
 * QoS 1 publishes (5.0 0x97) and shed QoS 0 on the publishing node, not a heap that grows with
 * every publish. Two nodes in this process on a private redis-server whose writes are held
 * with CLIENT PAUSE WRITE (reads go on; leases are long enough not to lapse meanwhile).
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Redis } from "ioredis";
import { RedisPersistence } from "../../adapters/redis/redis.ts";
import { RedisBus } from "../../adapters/redis/bus.ts";
import { startBroker, type TestBroker, until } from "../helpers/broker.ts";
import { connectV5, drainPublishes, type Packet, RawClient, seqOf, seqPayload } from "../helpers/raw-client.ts";
import { freePort, RedisServer } from "../helpers/redis-server.ts";

const quiet = { info() {}, warn() {}, error() {} };
const LIMIT = 1_000_000;
const SIZE = 50_000;
const code = (p: Packet) => (p as { reasonCode?: number }).reasonCode ?? 0;

describe("cluster: forwards waiting for Redis count against --max-memory-bytes", () => {
  let redis: RedisServer | undefined;
  const nodes: Array<{ b: TestBroker; store: RedisPersistence }> = [];
  after(async () => {
    RawClient.destroyAll();
    for (const n of nodes) {
      await n.b.close();
      await n.store.close();
    }
    await redis?.kill();
  });

  async function node(id: string, maxMemoryBytes: number) {
    const store = await RedisPersistence.connect({ url: redis!.url, prefix: "fwd-mem:", logger: quiet });
    const bus = new RedisBus(store, { nodeId: `${id}#t`, leaseMs: 15_000, logger: quiet });
    const b = await startBroker({ persistence: "redis", logLevel: "warn", maxMemoryBytes }, { persistence: store, bus });
    nodes.push({ b, store });
    return b;
  }

  it("QoS 1 for another node is refused with 0x97 once held forwards pass 90 %; all is given back and delivered when Redis answers", { timeout: 30_000 }, async () => {
    redis = new RedisServer(await freePort());
    await redis.start();
    const a = await node("fa", LIMIT);
    const b = await node("fb", 0);
    const { client: sub } = await connectV5(b.port, "fm-sub");
    await sub.subscribe("fm/#", { qos: 1 });
    await until(() => a.broker.cluster.match("fm/x").nodes.length === 1, "node a to know node b's route");
    const { client: pub } = await connectV5(a.port, "fm-pub");
    const m = a.broker.memory;
    assert.equal(m.forwarding, 0);

    const admin = new Redis(redis.url);
    const acks = new Map<number, number>();
    try {
      await admin.client("PAUSE", 2500, "WRITE");
      for (let i = 1; i <= 30; i++) {
        pub.sendPacket({ cmd: "publish", topic: "fm/x", payload: Buffer.from(seqPayload(i, SIZE)), qos: 1, messageId: i, dup: false, retain: false });
      }
      // while Redis holds the appends: what passed 90 % is refused at once, the rest waits
      const deadline = Date.now() + 1000;
      for (;;) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        const p = await pub.waitForPacket("puback", () => true, left).catch(() => undefined);
        if (!p) break;
        acks.set(p.messageId!, code(p));
      }
      const refused = [...acks.values()].filter((c) => c === 0x97).length;
      assert.ok(refused > 0, `no publish refused while ${m.forwarding} bytes of forwards were held`);
      assert.equal([...acks.values()].filter((c) => c !== 0x97).length, 0, "a forward was acknowledged before Redis stored it");
      assert.ok(m.forwarding >= 0.9 * LIMIT - SIZE && m.forwarding < LIMIT + 2 * SIZE, `forwarding ${m.forwarding} bytes`);
      assert.ok(m.level >= 2, `memory level ${m.level}`);
    } finally {
      admin.disconnect();
    }

    // Redis answers again: the accepted ones are acknowledged, delivered in order, and given back
    const accepted = Array.from({ length: 30 }, (_, i) => i + 1).filter((i) => acks.get(i) !== 0x97);
    while (acks.size < 30) {
      const p = await pub.waitForPacket("puback", () => true, 10_000);
      acks.set(p.messageId!, code(p));
    }
    for (const i of accepted) assert.equal(acks.get(i), 0, `publish ${i} after Redis came back`);
    const got: number[] = [];
    while (got.length < accepted.length) {
      const batch = await drainPublishes(sub, 2000);
      if (batch.length === 0) break;
      got.push(...batch.map(seqOf));
    }
    assert.deepEqual(got, accepted);
    await until(() => m.forwarding === 0, "the forwards to be given back");
    assert.equal(m.level, 0);
  });
});
