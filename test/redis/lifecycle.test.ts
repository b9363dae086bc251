/**
 * What an ordinary restart must get right with Redis (issue 9, items 4 and 5):
 * - a planned shutdown (SIGTERM) leaves records a restart reads as "disconnected, no will";
 * - after a crash, the wills published at start-up reach the restored persistent sessions;
 * - Redis restarting empty is noticed, logged, and the live state written again, so that a
 *   later broker restart finds the sessions and nothing stale comes back.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Redis } from "ioredis";
import { startBrokerProcess, type BrokerProcess } from "../helpers/broker-process.ts";
import { freePort, RedisServer } from "../helpers/redis-server.ts";
import { connectV4, payloadText, RawClient } from "../helpers/raw-client.ts";

const REDIS = "redis://127.0.0.1:6379";

function scope(name: string) {
  const prefix = `colibri-test:${name}:${Math.random().toString(36).slice(2)}:`;
  return {
    prefix,
    args: (url = REDIS) => ["--persistence", "redis", "--redis-url", url, "--redis-prefix", prefix, "--node-lease-ms", "1000"],
    async clean(url = REDIS) {
      const r = new Redis(url);
      const keys = await r.keys(`${prefix}*`);
      if (keys.length) await r.del(...keys);
      r.disconnect();
    },
  };
}

describe("redis: wills across restarts", () => {
  let b: BrokerProcess | undefined;
  const s = scope("lifecycle");
  after(async () => {
    RawClient.destroyAll();
    await b?.stop();
    await s.clean();
  });

  it("SIGTERM with a connected client that has a will: no will at the restart", async () => {
    b = await startBrokerProcess(s.args());
    const { client: sub } = await connectV4(b.port, "lc-sub", { clean: false });
    await sub.subscribe("lc/will/#", { qos: 1 });
    sub.disconnect();
    await sub.waitClose();
    await connectV4(b.port, "lc-w", { will: { topic: "lc/will/w", payload: Buffer.from("gone"), qos: 1, retain: false } });
    await connectV4(b.port, "lc-wp", { clean: false, will: { topic: "lc/will/wp", payload: Buffer.from("gone"), qos: 1, retain: false } });
    await b.stop(); // planned shutdown
    b = await startBrokerProcess(s.args(), b.port);
    const { client: back, connack } = await connectV4(b.port, "lc-sub", { clean: false, timeoutMs: 8000 });
    assert.equal(connack.sessionPresent, true);
    await back.expectNoPacket(1500);
    back.disconnect();
    await back.waitClose();
  });

  it("kill -9 with a client that has a will: the will reaches a restored persistent subscriber", async () => {
    const { client: w } = await connectV4(b!.port, "lc-w2", { will: { topic: "lc/will/w2", payload: Buffer.from("died"), qos: 1, retain: false } });
    await new Promise((r) => setTimeout(r, 100));
    await b!.kill9();
    w.destroy();
    b = await startBrokerProcess(s.args(), b!.port);
    const { client: back } = await connectV4(b.port, "lc-sub", { clean: false, timeoutMs: 8000 });
    const p = await back.expectPacket("publish", 5000);
    assert.equal(p.topic, "lc/will/w2");
    assert.equal(payloadText(p), "died");
    back.sendPacket({ cmd: "puback", messageId: p.messageId });
    await back.expectNoPacket(500);
  });
});

describe("redis: the store restarts empty", () => {
  let b: BrokerProcess | undefined;
  let redis: RedisServer | undefined;
  const s = scope("lost");
  after(async () => {
    RawClient.destroyAll();
    await b?.stop();
    await redis?.kill();
  });

  it("is noticed and logged; the live sessions are written again and nothing stale comes back", { timeout: 30_000 }, async () => {
    redis = new RedisServer(await freePort()); // no persistence at all
    await redis.start();
    b = await startBrokerProcess(s.args(redis.url));
    const { client: sub } = await connectV4(b.port, "ls-sub", { clean: false });
    await sub.subscribe("ls/#", { qos: 1 });
    const { client: pub } = await connectV4(b.port, "ls-pub");
    await pub.publish("ls/a", "before", { qos: 1 });
    const first = await sub.expectPacket("publish");
    sub.sendPacket({ cmd: "puback", messageId: first.messageId });

    await redis.kill();
    await redis.start(); // empty
    await b.proc.waitForLine(/lost its data/, 15_000);
    await new Promise((r) => setTimeout(r, 500));
    // still working on the live connection
    await pub.publish("ls/b", "after", { qos: 1, timeoutMs: 5000 });
    const second = await sub.expectPacket("publish", 3000);
    assert.equal(payloadText(second), "after");
    sub.sendPacket({ cmd: "puback", messageId: second.messageId });
    await new Promise((r) => setTimeout(r, 300));

    // the broker restarts: the session is in the store again (written after the loss)
    await b.kill9();
    sub.destroy();
    pub.destroy();
    b = await startBrokerProcess(s.args(redis.url), b.port);
    const { client: back, connack } = await connectV4(b.port, "ls-sub", { clean: false, timeoutMs: 8000 });
    assert.equal(connack.sessionPresent, true, "the session was written again after the store lost it");
    await back.expectNoPacket(800); // nothing acknowledged comes back
    const { client: pub2 } = await connectV4(b.port, "ls-pub2");
    await pub2.publish("ls/c", "later", { qos: 1 });
    assert.equal(payloadText(await back.expectPacket("publish", 3000)), "later", "its subscription survived");
  });
});
