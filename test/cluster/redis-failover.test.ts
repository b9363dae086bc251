/**
 * Redis itself fails or moves data under a running Colibri cluster, mid-stream: the Sentinel
 * master killed with -9 (a replica takes over), a Redis Cluster shard master killed with -9
 * (its replica takes over), a Redis Cluster slot moved to another master (MOVED/ASK). The nodes
 * run with --redis-wait-replicas 1: a QoS 1 publisher is acknowledged only once a replica has
 * the message, so a failover loses nothing acknowledged. Meanwhile the nodes keep going, withhold
 * the acknowledgements they cannot make safe, take nobody for dead, and follow the new master.
 *
 * The stream: a persistent QoS 1 subscriber on node 1, a publisher on node 2 (its messages go
 * through node 1's inbox); the publisher reconnects when the broker closes it (no ack possible).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { startCluster, type TestCluster } from "../helpers/cluster.ts";
import { redisEnv, type RedisEnv, stopRedisAfterFile } from "../helpers/redis-env.ts";
import { connectV4, drainPublishes, payloadText, RawClient } from "../helpers/raw-client.ts";
import type { Server } from "../../scripts/redis-topology.ts";
import { GROUPS, Keys, slotOf } from "../../adapters/redis/keys.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const N = 240;
/** Messages acknowledged after the failover before the stream stops. */
const AFTER = 40;

stopRedisAfterFile();
const [sentinel, cluster] = await Promise.all([redisEnv("sentinel", { replicas: 2 }), redisEnv("cluster", { replicas: 1 })]);

/** The identity ("n1#abcd") node i registered with. */
async function identity(c: TestCluster, i: number): Promise<string> {
  const keys = await c.keys(`{n:n${i + 1}#*}:live`);
  assert.equal(keys.length, 1, `live marker of n${i + 1}: ${keys}`);
  return keys[0].slice("{n:".length, keys[0].indexOf("}"));
}

/**
 * Publish QoS 1 messages from node 2 to a persistent subscriber on node 1; `disturb` runs after
 * N/3 of them, and publishing goes on until N were tried and AFTER more were acknowledged once
 * it finished (the nodes work with the new master). Every acknowledged message must reach the
 * subscriber, now or after it reconnects.
 */
async function midStream(c: TestCluster, tag: string, disturb: () => Promise<void>): Promise<void> {
  const { client: sub } = await connectV4(c.via[0], `${tag}-sub`, { clean: false });
  await sub.subscribe(`${tag}/t`, { qos: 1 });
  const received: string[] = [];
  const reading = (async () => {
    for (;;) {
      const p = await sub.waitForPacket("publish", () => true, 15_000).catch(() => undefined);
      if (!p) return;
      received.push(payloadText(p));
      sub.sendPacket({ cmd: "puback", messageId: p.messageId });
    }
  })();
  const acked: string[] = [];
  let pub: RawClient | undefined;
  let disturbed: Promise<void> | undefined;
  let doneAt: number | undefined;
  let refused = 0;
  const deadline = Date.now() + 80_000;
  for (let i = 0; Date.now() < deadline; i++) {
    if (i === Math.floor(N / 3)) disturbed = disturb().then(() => void (doneAt = acked.length));
    if (i >= N && doneAt !== undefined && acked.length - doneAt >= AFTER) break;
    if (!pub || pub.closed) {
      pub = (await connectV4(c.via[1], `${tag}-pub`, { timeoutMs: 3000 }).catch(() => undefined))?.client;
      if (!pub) {
        await sleep(200);
        continue;
      }
    }
    const ack = await pub.publish(`${tag}/t`, `m${i}`, { qos: 1, timeoutMs: 5000 }).catch(() => undefined);
    if (ack) acked.push(`m${i}`);
    else refused++;
    await sleep(10);
  }
  await disturbed;
  assert.ok(doneAt !== undefined && acked.length - doneAt >= AFTER, `${acked.length - (doneAt ?? 0)} acknowledged after the failover`);
  await sleep(500);
  sub.destroy();
  await reading;
  const { client: back } = await connectV4(c.via[0], `${tag}-sub`, { clean: false, timeoutMs: 8000 });
  const rest = (await drainPublishes(back, 3000)).map(payloadText);
  const all = new Set([...received, ...rest]);
  assert.deepEqual(acked.filter((m) => !all.has(m)), [], `acknowledged messages lost (${refused} refused meanwhile)`);
  for (const i of [0, 1]) assert.doesNotMatch(c.lines(i).join("\n"), /declared dead/, `node ${i + 1} took another for dead`);
}

function suite(name: string, tag: string, env: () => RedisEnv, disturb: (c: TestCluster) => Promise<void>): void {
  describe(name, () => {
    let c: TestCluster;
    before(async () => {
      c = await startCluster(2, { redis: env(), args: ["--redis-wait-replicas", "1"] });
    });
    after(async () => {
      RawClient.destroyAll();
      await c?.close().catch(() => {});
    });
    it("nothing acknowledged is lost; the nodes go on with the new master", { timeout: 120_000 }, async () => {
      await midStream(c, tag, () => disturb(c));
    });
  });
}

suite("Sentinel: the master killed with -9 mid-stream", "sfo", () => sentinel, async () => {
  const t = sentinel.topology!;
  const old = await t.killMaster();
  const now = await t.waitFailover(old);
  assert.notEqual(now.port, old.port);
  await t.restart(old); // back, as a replica of the new master
});

suite("Cluster: the master of node 1's inbox killed with -9 mid-stream", "cfo", () => cluster, async (c) => {
  const t = cluster.topology!;
  const old: Server = await t.killMaster(new Keys(c.prefix, GROUPS).inbox(await identity(c, 0)));
  await t.waitFailover(old);
  await t.restart(old); // back, as a replica of the shard's new master
});

suite("Cluster: node 1's inbox slot and the subscriber's slot moved to another master (MOVED/ASK)", "moved", () => cluster, async (c) => {
  const t = cluster.topology!;
  const k = new Keys(c.prefix, GROUPS);
  for (const key of [k.inbox(await identity(c, 0)), k.group("moved-sub").sessions]) {
    const slot = slotOf(key);
    const from = await t.masterOfSlot(slot);
    const to = (await t.masters()).find((s) => s !== from)!;
    await t.migrateSlot(slot, to);
    assert.equal(await t.masterOfSlot(slot), to);
  }
});
