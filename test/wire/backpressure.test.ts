/**
 * Slow consumers: a subscriber that stops reading (its socket paused) must not make the broker
 * buffer without bound, must not slow down or starve other subscribers, and its QoS 1/2
 * messages wait in its session (window + bounded queue) instead of piling up on the socket.
 */
import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { startBroker, type TestBroker } from "../helpers/broker.ts";
import { connectV4, connectV5, type PacketOf, RawClient, seqOf, seqPayload as payload } from "../helpers/raw-client.ts";

/** Real sockets and processes: more than bun test's 5 s default on a loaded machine. */
const SLOW = { timeout: 30_000 };

const tick = () => new Promise((r) => setTimeout(r, 0));

describe("backpressure", () => {
  let b: TestBroker | undefined;
  afterEach(async () => {
    RawClient.destroyAll();
    await b?.close();
    b = undefined;
  });

  it("QoS 0 to a subscriber that does not read is dropped past maxOutputBuffer; others get everything, in order", SLOW, async () => {
    // the limit bounds what one connection may hold; a burst arriving in one read is fanned
    // out within one tick, so keep bursts (4 x 8 KB) well below it
    const maxOutputBuffer = 128 * 1024;
    const SIZE = 8 * 1024;
    b = await startBroker({ maxOutputBuffer });
    const { client: slow } = await connectV4(b.port, "bp-slow");
    await slow.subscribe("bp/q0", { qos: 0 });
    const { client: fast } = await connectV5(b.port, "bp-fast");
    await fast.subscribe("bp/q0", { qos: 0 });
    slow.socket.pause();
    const slowConn = [...b.broker.clients].find((c) => c.clientId === "bp-slow")!.conn;
    const { client: p } = await connectV4(b.port, "bp-pub");

    let sent = 0;
    let maxBuffered = 0;
    // send until the broker starts dropping for the slow one (the kernel's socket buffers
    // absorb a few MB first), then 100 more; give up after 4000 (32 MB)
    let extra = -1;
    let read = 0;
    while (sent < 4000 && extra !== 0) {
      for (let i = 0; i < 4; i++) p.publish("bp/q0", payload(sent++, SIZE), { qos: 0 });
      await tick();
      maxBuffered = Math.max(maxBuffered, slowConn.bufferedAmount);
      if (extra < 0 && b.broker.stats.droppedQos0SlowConsumer > 0) extra = 25;
      else if (extra > 0) extra--;
      // [MQTT-4.6.0-6] the reading subscriber gets every message, in order. It reads as it
      // goes: this test process is also the broker and the publisher, and a reader that waits
      // for the end would itself be a slow consumer on a busy machine.
      for (; read < sent; read++) {
        const got = await fast.expectPacket("publish", 5000);
        assert.equal(seqOf(got), read);
        assert.equal(got.payload.length, SIZE);
      }
    }
    assert.ok(b.broker.stats.droppedQos0SlowConsumer > 0, `nothing dropped after ${sent} messages of ${SIZE} bytes`);
    // bounded: never more than the limit plus the one message that crossed it
    assert.ok(maxBuffered <= maxOutputBuffer + 2 * (SIZE + 64), `adapter buffered ${maxBuffered} bytes for the slow client`);

    // the slow one, once it reads again, gets an in-order subset ending with the drops
    slow.socket.resume();
    const seen: number[] = [];
    for (;;) {
      const f = await slow.nextFrame(500).catch(() => undefined);
      if (!f) break;
      if (f.packet?.cmd === "publish") seen.push(seqOf(f.packet));
    }
    assert.ok(seen.length > 0 && seen.length < sent, `slow subscriber got ${seen.length} of ${sent}`);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i] > seen[i - 1], "slow subscriber's messages out of order");
    assert.equal(seen.length + b.broker.stats.droppedQos0SlowConsumer, sent);
  });

  it("QoS 1 to a subscriber that does not read waits in its session, bounded by maxInflight and maxQueuedMessages", SLOW, async () => {
    b = await startBroker({ maxInflight: 5, maxQueuedMessages: 20 });
    const { client: slow } = await connectV4(b.port, "q1-slow");
    await slow.subscribe("bp/q1", { qos: 1 });
    const { client: fast } = await connectV4(b.port, "q1-fast");
    await fast.subscribe("bp/q1", { qos: 1 });
    slow.socket.pause();
    const { client: p } = await connectV5(b.port, "q1-pub");
    const N = 60;
    for (let i = 0; i < N; i++) {
      await p.publish("bp/q1", payload(i, 8), { qos: 1 });
      // the other subscriber is not held back: each message, in order, right away
      const got = await fast.expectPacket("publish");
      assert.equal(seqOf(got), i);
      fast.sendPacket({ cmd: "puback", messageId: got.messageId });
    }

    const session = b.broker.sessions.get("q1-slow")!;
    // at most maxInflight sent and unacknowledged; behind them up to maxQueuedMessages queued
    assert.equal(session.inflight.size, 5);
    assert.equal(session.queue.length, 20);
    assert.equal(session.droppedMessages, N - 25);
    assert.equal(b.broker.stats.droppedQueueFull, N - 25);

    slow.socket.resume();
    // five in flight, then nothing until one is acknowledged
    const first: PacketOf<"publish">[] = [];
    for (let i = 0; i < 5; i++) first.push(await slow.expectPacket("publish"));
    await slow.expectNoPacket(150);
    assert.deepEqual(first.map(seqOf), [0, 1, 2, 3, 4]);
    const rest: number[] = [];
    for (const m of first) slow.sendPacket({ cmd: "puback", messageId: m.messageId });
    for (let i = 0; i < 20; i++) {
      const got = await slow.expectPacket("publish");
      rest.push(seqOf(got));
      slow.sendPacket({ cmd: "puback", messageId: got.messageId });
    }
    // the first 25 (what fitted), in order; the overflow was dropped, not delivered late
    assert.deepEqual(rest, Array.from({ length: 20 }, (_, i) => i + 5));
    await slow.expectNoPacket(150);
    assert.equal(session.inflight.size + session.queue.length, 0);
  });

  it("MQTT 5: the broker never has more unacknowledged QoS 1/2 PUBLISHes out than the client's Receive Maximum [MQTT-3.3.4-9]", SLOW, async () => {
    b = await startBroker();
    const { client: s } = await connectV5(b.port, "rm-sub", { properties: { receiveMaximum: 3 } });
    await s.subscribe("bp/rm", { qos: 2 });
    const { client: p } = await connectV5(b.port, "rm-pub");
    for (let i = 0; i < 10; i++) await p.publish("bp/rm", payload(i, 4), { qos: (1 + (i % 2)) as 1 | 2 });
    const inflight: PacketOf<"publish">[] = [];
    for (let i = 0; i < 3; i++) inflight.push(await s.expectPacket("publish"));
    await s.expectNoPacket(150);
    const order = inflight.map(seqOf);
    // each completed delivery frees one slot: PUBACK for QoS 1, PUBCOMP for QoS 2
    while (inflight.length) {
      const m = inflight.shift()!;
      if (m.qos === 1) s.sendPacket({ cmd: "puback", messageId: m.messageId });
      else {
        s.sendPacket({ cmd: "pubrec", messageId: m.messageId });
        assert.equal((await s.expectPacket("pubrel")).messageId, m.messageId);
        // PUBREC alone does not free the slot (MQTT 5 §4.9)
        await s.expectNoPacket(100);
        s.sendPacket({ cmd: "pubcomp", messageId: m.messageId });
      }
      if (order.length < 10) {
        const next = await s.expectPacket("publish");
        order.push(seqOf(next));
        inflight.push(next);
        assert.ok(inflight.length <= 3);
      }
    }
    assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it("a slow QoS 0 subscriber does not delay QoS 0 delivery to others on other topics", SLOW, async () => {
    b = await startBroker({ maxOutputBuffer: 8 * 1024 });
    const { client: slow } = await connectV4(b.port, "mix-slow");
    await slow.subscribe("bp/#", { qos: 0 });
    slow.socket.pause();
    const { client: other } = await connectV4(b.port, "mix-other");
    await other.subscribe("bp/other", { qos: 0 });
    const { client: p } = await connectV4(b.port, "mix-pub");
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < 10; i++) p.publish("bp/flood", payload(i, 32 * 1024), { qos: 0 });
      p.publish("bp/other", payload(round, 16), { qos: 0 });
      await tick();
    }
    for (let round = 0; round < 40; round++) assert.equal(seqOf(await other.expectPacket("publish")), round);
    assert.ok(b.broker.stats.droppedQos0SlowConsumer > 0);
  });
});
