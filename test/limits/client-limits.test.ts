/**
 * Limits on what one client may take: --max-subscriptions-per-client (SUBACK 0x97 / 0x80 per
 * filter past it), --max-retained-messages and --max-retained-bytes (the retained store refuses
 * to grow: the message is still delivered live, not kept; MQTT 5 QoS 1/2 get 0x97), and
 * --max-publish-rate (a client over its rate is slowed down by reading it no faster; one that
 * keeps pushing past --publish-rate-grace-ms is disconnected, MQTT 5 with 0x96).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { brokersForFile } from "../helpers/broker.ts";
import { connectV4, connectV5, drainPublishes, RawClient } from "../helpers/raw-client.ts";

const broker = brokersForFile();
const publish = (c: RawClient, topic: string, payload: string | Buffer, qos: 0 | 1, retain = false) =>
  c.sendPacket({ cmd: "publish", topic, payload: Buffer.from(payload), qos, retain, dup: false, messageId: qos ? c.nextMessageId() : undefined });

describe("--max-subscriptions-per-client", () => {
  it("filters past the limit are refused per filter (5.0 0x97, 3.1.1 0x80); replacing one is not a new one", async () => {
    const b = await broker({ maxSubscriptionsPerClient: 3 });
    const { client } = await connectV5(b.port, "s5");
    const first = await client.subscribe(["a", "b", "c", "d", "e"].map((topic) => ({ topic, qos: 1 as const })));
    assert.deepEqual(first.granted, [1, 1, 1, 0x97, 0x97]);
    assert.deepEqual((await client.subscribe("b", { qos: 2 })).granted, [2]);
    client.sendPacket({ cmd: "unsubscribe", messageId: 99, unsubscriptions: ["a"] });
    await client.expectPacket("unsuback");
    assert.deepEqual((await client.subscribe("d", { qos: 0 })).granted, [0]);
    const v4 = (await connectV4(b.port, "s4")).client;
    assert.deepEqual((await v4.subscribe(["x", "y", "z", "w"].map((topic) => ({ topic, qos: 0 as const })))).granted, [0, 0, 0, 0x80]);
  });
});

describe("retained store limits", () => {
  it("--max-retained-messages: a new topic past the limit is delivered but not kept (5.0 QoS 1: PUBACK 0x97)", async () => {
    const b = await broker({ maxRetainedMessages: 2 });
    const sub = (await connectV5(b.port, "live")).client;
    await sub.subscribe("r/#", { qos: 1 });
    const p = (await connectV5(b.port, "p")).client;
    for (const [i, t] of ["r/1", "r/2", "r/3"].entries()) {
      publish(p, t, `v${i}`, 1, true);
      assert.equal((await p.expectPacket("puback")).reasonCode ?? 0, t === "r/3" ? 0x97 : 0, t);
    }
    assert.deepEqual((await drainPublishes(sub, 200)).map((m) => m.topic), ["r/1", "r/2", "r/3"], "all delivered live");
    // replacing a kept topic is fine; clearing frees a place
    publish(p, "r/1", "v1b", 1, true);
    assert.equal((await p.expectPacket("puback")).reasonCode ?? 0, 0);
    publish(p, "r/2", "", 1, true);
    await p.expectPacket("puback");
    publish(p, "r/3", "v3", 1, true);
    assert.equal((await p.expectPacket("puback")).reasonCode ?? 0, 0);
    const late = (await connectV5(b.port, "late")).client;
    await late.subscribe("r/#", { qos: 1 });
    assert.deepEqual((await drainPublishes(late, 200)).map((m) => `${m.topic}=${Buffer.from(m.payload).toString()}`).sort(), ["r/1=v1b", "r/3=v3"]);
    // 3.1.1: acknowledged, not kept
    const v4 = (await connectV4(b.port, "p4")).client;
    publish(v4, "r/4", "x", 1, true);
    await v4.expectPacket("puback");
    assert.equal(await b.persistence.retainedCount(), 2);
  });

  it("--max-retained-bytes: a message that would take the payload bytes past the limit is not kept", async () => {
    const b = await broker({ maxRetainedBytes: 1000 });
    const p = (await connectV5(b.port, "pb")).client;
    publish(p, "big/1", Buffer.alloc(800), 1, true);
    assert.equal((await p.expectPacket("puback")).reasonCode ?? 0x10, 0x10);
    publish(p, "big/2", Buffer.alloc(300), 1, true);
    assert.equal((await p.expectPacket("puback")).reasonCode, 0x97);
    publish(p, "big/1", Buffer.alloc(900), 1, true); // replacing, 100 bytes more: fits
    assert.equal((await p.expectPacket("puback")).reasonCode ?? 0x10, 0x10);
    assert.equal(await b.persistence.retainedBytes(), 900);
  });
});

describe("--max-publish-rate", { timeout: 30_000 }, () => {
  it("a client under the rate is never held back", async () => {
    const b = await broker({ maxPublishRate: 1000 });
    const p = (await connectV5(b.port, "calm")).client;
    for (let i = 0; i < 50; i++) {
      publish(p, "t", "x", 1);
      await p.expectPacket("puback");
    }
    assert.equal(b.broker.stats.throttledPublishes, 0);
  });

  it("a client over the rate is slowed to it: its messages all arrive, no faster than the rate allows", async () => {
    const b = await broker({ maxPublishRate: 50 });
    const sub = (await connectV5(b.port, "rate-sub")).client;
    await sub.subscribe("t", { qos: 1 });
    const p = (await connectV5(b.port, "fast")).client;
    const t0 = Date.now();
    for (let i = 0; i < 100; i++) publish(p, "t", String(i), 1);
    for (let i = 0; i < 100; i++) await p.expectPacket("puback", 5000);
    const took = Date.now() - t0;
    // a burst of 50, then 50 more at 50/s: at least about a second
    assert.ok(took >= 900, `100 messages at 50/s (burst 50) took only ${took} ms`);
    assert.ok(b.broker.stats.throttledPublishes >= 40, `throttled ${b.broker.stats.throttledPublishes}`);
    const got = await drainPublishes(sub, 300);
    assert.deepEqual(got.map((m) => Buffer.from(m.payload).toString()), Array.from({ length: 100 }, (_, i) => String(i)));
    assert.equal(p.closed, false);
  });

  it("a client that keeps pushing past --publish-rate-grace-ms is disconnected: 5.0 DISCONNECT 0x96, 3.1.1 closed", async () => {
    const b = await broker({ maxPublishRate: 20, publishRateGraceMs: 500 });
    const v5 = (await connectV5(b.port, "flood5")).client;
    const v4 = (await connectV4(b.port, "flood4")).client;
    for (let i = 0; i < 200; i++) {
      publish(v5, "f", "x", 0);
      publish(v4, "f", "x", 0);
    }
    assert.equal((await v5.expectPacket("disconnect", 5000)).reasonCode, 0x96);
    await v5.waitClose(5000);
    await v4.waitClose(5000);
  });
});
