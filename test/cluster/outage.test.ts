/**
 * Cluster guarantee 10: Redis unreachable for a while under a two-node cluster (a private
 * redis-server with an append-only file, killed and restarted). Every node keeps serving its
 * local traffic, withholds acknowledgements it cannot make safe, reconnects by itself and
 * re-registers; no node takes the other for dead; nothing acknowledged is lost.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCluster, type TestCluster } from "../helpers/cluster.ts";
import { freePort, RedisServer } from "../helpers/redis-server.ts";
import { connectV4, connectV5, drainPublishes, payloadText, RawClient } from "../helpers/raw-client.ts";

describe("cluster: Redis unreachable for a while", () => {
  let c: TestCluster;
  let redis: RedisServer;
  const dir = mkdtempSync(join(tmpdir(), "colibri-cluster-redis-"));
  before(async () => {
    redis = new RedisServer(await freePort(), ["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", dir]);
    await redis.start();
    c = await startCluster(2, { redisUrl: redis.url });
  });
  after(async () => {
    RawClient.destroyAll();
    await c?.close().catch(() => {});
    await redis?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it("local traffic goes on, unsafe acks are withheld, both nodes come back and nothing acknowledged is lost", { timeout: 40_000 }, async () => {
    const { client: sub } = await connectV4(c.via[0], "out-sub", { clean: false });
    await sub.subscribe("out/#", { qos: 1 });
    const { client: pub } = await connectV5(c.via[1], "out-pub");
    await pub.publish("out/x", "before", { qos: 1 });
    const { client: localSub } = await connectV4(c.via[0], "out-local-sub");
    await localSub.subscribe("local/x", { qos: 0 });
    const { client: localPub } = await connectV4(c.via[0], "out-local-pub");

    await redis.kill();
    // local traffic between clean sessions of one node goes on
    localPub.publish("local/x", "still here", { qos: 0 });
    assert.equal(payloadText(await localSub.expectPacket("publish", 3000)), "still here");
    // a QoS 1 message for another node cannot be made safe: not acknowledged (5.0: told why)
    pub.sendPacket({ cmd: "publish", topic: "out/x", payload: Buffer.from("during"), qos: 1, messageId: 77, dup: false, retain: false });
    const d = await pub.expectPacket("disconnect", 8000);
    assert.equal(d.reasonCode, 0x80);

    await redis.start();
    for (const i of [0, 1]) await c.node(i).proc.waitForLine(/redis reconnected/, 15_000);
    // longer than a lease and the settling time after a reconnect: nobody is taken for dead
    await new Promise((r) => setTimeout(r, 4000));
    for (const i of [0, 1]) assert.doesNotMatch(c.lines(i).join("\n"), /declared dead/);

    const { client: pub2 } = await connectV5(c.via[1], "out-pub-2");
    await pub2.publish("out/x", "after", { qos: 1, timeoutMs: 5000 });
    const got = (await drainPublishes(sub, 2000)).map(payloadText).filter((p) => p !== "during");
    assert.deepEqual(got, ["before", "after"]);
  });
});
