/**
 * Sessions survive a crash: the broker process is killed with SIGKILL and started again
 * against the same Redis (its own key prefix); everything a persistent session had is back.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { startBrokerProcess, type BrokerProcess } from "../helpers/broker-process.ts";
import { connectV4, connectV5, RawClient } from "../helpers/raw-client.ts";
import { keysMatching } from "../helpers/redis-server.ts";

const REDIS = "redis://127.0.0.1:6379";

const keysUnder = (redis: Redis, prefix: string) => keysMatching(redis, `${prefix}*`);

/**
 * A describe block's own key prefix and the broker arguments that use it; after the block the
 * broker (given by `broker()`) is stopped and every key under the prefix deleted.
 */
function redisScope(name: string, broker: () => BrokerProcess | undefined) {
  const prefix = `colibri-test:${name}:${Math.random().toString(36).slice(2)}:`;
  const scope = {
    prefix,
    // a restarted broker is a new cluster node: it adopts the killed one's sessions once that
    // one's lease lapses (short here, so the test does not wait for the 3 s default)
    args: ["--persistence", "redis", "--redis-url", REDIS, "--redis-prefix", prefix, "--node-lease-ms", "1000"],
    redis: undefined as unknown as Redis,
  };
  before(() => {
    scope.redis = new Redis(REDIS);
  });
  after(async () => {
    RawClient.destroyAll();
    await broker()?.stop();
    const keys = await keysUnder(scope.redis, prefix);
    if (keys.length) await scope.redis.del(...keys);
    scope.redis.disconnect();
  });
  return scope;
}

describe("redis persistence: kill -9 and restart", () => {
  let b: BrokerProcess | undefined;
  const scope = redisScope("restart", () => b);
  const { prefix, args } = scope;

  it("persistent session, queued QoS 1/2 in order, inflight with DUP, QoS 2 state, retained, wills", async () => {
    b = await startBrokerProcess(args);
    // a persistent subscriber, then offline
    const { client: sub } = await connectV4(b.port, "r-sub", { clean: false });
    sub.sendPacket({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "r/#", qos: 2 }] });
    await sub.expectPacket("suback");
    // one message delivered but never acknowledged: inflight at crash time
    const { client: pub } = await connectV5(b.port, "r-pub");
    pub.sendPacket({ cmd: "publish", topic: "r/inflight", payload: Buffer.from("m0"), qos: 1, messageId: 1, dup: false, retain: false });
    await pub.expectPacket("puback");
    const first = await sub.expectPacket("publish");
    assert.equal(first.topic, "r/inflight");
    sub.destroy();
    await new Promise((r) => setTimeout(r, 100));
    // offline queue, QoS 1 and 2, in order
    for (let i = 1; i <= 5; i++) {
      pub.sendPacket({ cmd: "publish", topic: "r/q", payload: Buffer.from(`m${i}`), qos: (i % 2 ? 1 : 2) as 1 | 2, messageId: 10 + i, dup: false, retain: false });
      await pub.expectPacket(i % 2 ? "puback" : "pubrec");
      if (i % 2 === 0) {
        pub.sendPacket({ cmd: "pubrel", messageId: 10 + i });
        await pub.expectPacket("pubcomp");
      }
    }
    // retained message
    pub.sendPacket({ cmd: "publish", topic: "ret/a", payload: Buffer.from("kept"), qos: 1, messageId: 30, dup: false, retain: true });
    await pub.expectPacket("puback");
    // incoming QoS 2 half done: PUBREC received, no PUBREL yet
    const { client: q2 } = await connectV4(b.port, "r-q2", { clean: false });
    q2.sendPacket({ cmd: "publish", topic: "r/once", payload: Buffer.from("once"), qos: 2, messageId: 77, dup: false, retain: false });
    await q2.expectPacket("pubrec");
    // a connected client with a will, and one with a delayed will (v5, delay 1 s)
    const { client: w } = await connectV4(b.port, "r-will", {
      clean: true, will: { topic: "will/plain", payload: Buffer.from("gone"), qos: 1, retain: true },
    });
    const { client: wd } = await connectV5(b.port, "r-will-delay", {
      clean: true, properties: { sessionExpiryInterval: 60 },
      will: { topic: "will/delayed", payload: Buffer.from("late"), qos: 1, retain: true, properties: { willDelayInterval: 1 } },
    });
    await new Promise((r) => setTimeout(r, 200));

    await b.kill9();
    w.destroy();
    wd.destroy();
    q2.destroy();
    pub.destroy();
    b = await startBrokerProcess(args, b.port);

    // the subscriber resumes: session present, inflight first with DUP, then the queue in order
    const { client: sub2, connack } = await connectV4(b.port, "r-sub", { clean: false });
    assert.equal(connack.sessionPresent, true);
    const got: Array<{ topic: string; payload: string; dup: boolean; qos: number }> = [];
    for (let i = 0; i < 6; i++) {
      const p = await sub2.waitForPacket("publish", () => true, 3000);
      got.push({ topic: p.topic, payload: Buffer.from(p.payload).toString(), dup: p.dup, qos: p.qos });
      if (p.qos === 1) sub2.sendPacket({ cmd: "puback", messageId: p.messageId });
      else {
        sub2.sendPacket({ cmd: "pubrec", messageId: p.messageId });
        const rel = await sub2.waitForPacket("pubrel", (r) => r.messageId === p.messageId);
        sub2.sendPacket({ cmd: "pubcomp", messageId: rel.messageId });
      }
    }
    assert.deepEqual(got[0], { topic: "r/inflight", payload: "m0", dup: true, qos: 1 }); // [MQTT-4.4.0-1]
    assert.deepEqual(got.slice(1).map((g) => g.payload), ["m1", "m2", "m3", "m4", "m5"]);
    assert.deepEqual(got.slice(1).map((g) => g.qos), [1, 2, 1, 2, 1]);

    // the QoS 2 sender re-sends its PUBLISH (DUP): not delivered again, PUBREC; PUBREL -> PUBCOMP
    const { client: q2b, connack: c2 } = await connectV4(b.port, "r-q2", { clean: false });
    assert.equal(c2.sessionPresent, true);
    q2b.sendPacket({ cmd: "publish", topic: "r/once", payload: Buffer.from("once"), qos: 2, messageId: 77, dup: true, retain: false });
    await q2b.expectPacket("pubrec");
    q2b.sendPacket({ cmd: "pubrel", messageId: 77 });
    await q2b.expectPacket("pubcomp");
    // r/once had reached r-sub before the crash? It was published after r-sub went offline,
    // so it is queued exactly once: one more publish for r-sub, then nothing
    const once = await sub2.expectPacket("publish", 3000);
    assert.equal(once.topic, "r/once");
    sub2.sendPacket({ cmd: "pubrec", messageId: once.messageId });
    await sub2.expectPacket("pubrel");
    sub2.sendPacket({ cmd: "pubcomp", messageId: once.messageId });
    await sub2.expectNoPacket(300);

    // retained message and the will of the crashed plain connection (published once)
    const { client: look } = await connectV4(b.port, "r-look");
    look.sendPacket({ cmd: "subscribe", messageId: 2, subscriptions: [{ topic: "ret/a", qos: 1 }, { topic: "will/#", qos: 1 }] });
    await look.expectPacket("suback");
    const seen = new Map<string, string>();
    for (let i = 0; i < 2; i++) {
      const p = await look.expectPacket("publish", 3000);
      seen.set(p.topic, Buffer.from(p.payload).toString());
      if (p.qos === 1) look.sendPacket({ cmd: "puback", messageId: p.messageId });
    }
    assert.equal(seen.get("ret/a"), "kept");
    assert.equal(seen.get("will/plain"), "gone");
    // the delayed will arrives after its delay, once
    const late = await look.expectPacket("publish", 4000);
    assert.equal(late.topic, "will/delayed");
    assert.equal(Buffer.from(late.payload).toString(), "late");
    await look.expectNoPacket(500);
  });

  it("a clean session leaves no keys behind", async () => {
    b ??= await startBrokerProcess(args);
    const before = new Set(await keysUnder(scope.redis, prefix));
    const { client } = await connectV4(b.port, "r-clean-" + Date.now(), {
      clean: true, will: { topic: "x/will", payload: Buffer.from("w"), qos: 0, retain: false },
    });
    client.sendPacket({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "x/#", qos: 1 }] });
    await client.expectPacket("suback");
    client.sendPacket({ cmd: "disconnect" });
    await client.waitClose().catch((e) => { console.log(b!.proc.tail(30)); throw e; });
    await new Promise((r) => setTimeout(r, 200));
    const now = (await keysUnder(scope.redis, prefix)).filter((k) => !before.has(k));
    assert.deepEqual(now, []);
  });
});

describe("redis persistence: timers survive kill -9", () => {
  let b: BrokerProcess | undefined;
  const { args } = redisScope("timers", () => b);

  it("session expiry keeps counting from the disconnect, and a pending delayed will fires once at its time", { timeout: 30_000 }, async () => {
    b = await startBrokerProcess(args);
    const { client: watcher } = await connectV5(b.port, "t-watch", { clean: false, properties: { sessionExpiryInterval: 300 } });
    watcher.sendPacket({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "tw/#", qos: 1 }] });
    await watcher.expectPacket("suback");
    watcher.sendPacket({ cmd: "disconnect" });
    await watcher.waitClose();
    // a session that expires 2 s after its clean disconnect
    const { client: short } = await connectV5(b.port, "t-short", { clean: true, properties: { sessionExpiryInterval: 2 } });
    short.sendPacket({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "x/y", qos: 1 }] });
    await short.expectPacket("suback");
    short.sendPacket({ cmd: "disconnect" });
    await short.waitClose();
    // an abnormal close with a will delayed by 2 s (session outlives it)
    const { client: dying } = await connectV5(b.port, "t-will", {
      clean: true, properties: { sessionExpiryInterval: 60 },
      will: { topic: "tw/will", payload: Buffer.from("late"), qos: 1, retain: false, properties: { willDelayInterval: 2 } },
    });
    const gone = Date.now();
    dying.destroy();
    await new Promise((r) => setTimeout(r, 300));
    await b.kill9();
    b = await startBrokerProcess(args, b.port);

    // the delayed will is published once, about 2 s after the connection died, not at restart
    const { client: w2, connack } = await connectV5(b.port, "t-watch", { clean: false, properties: { sessionExpiryInterval: 300 } });
    assert.equal(connack.sessionPresent, true);
    const will = await w2.expectPacket("publish", 5000);
    assert.equal(will.topic, "tw/will");
    const at = Date.now() - gone;
    assert.ok(at >= 1800, `will published ${at} ms after the disconnect, before its 2 s delay`);
    w2.sendPacket({ cmd: "puback", messageId: will.messageId });
    await w2.expectNoPacket(500);

    // 2 s after its disconnect the short session is gone, although the broker restarted meanwhile
    const wait = 2300 - (Date.now() - gone);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const { connack: c2 } = await connectV5(b.port, "t-short", { clean: false, properties: { sessionExpiryInterval: 2 } });
    assert.equal(c2.sessionPresent, false);
  });
});
