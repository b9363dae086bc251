/**
 * Memory bounded in bytes, measured with the broker's own accounting (broker.memory,
 * session.heldBytes), never RSS or timing:
 * - --max-queued-bytes: a session's inflight + queue past the bound is dropped and counted;
 *   a message larger than the bound still reaches a session that holds nothing;
 * - --max-memory-bytes: past 80 % QoS 0 is shed, past 90 % QoS 1/2 is refused (5.0 0x97,
 *   3.1.1 closed without an ack), past 100 % new connections are refused (5.0 0x89, 3.1.1
 *   0x03) while a client that owns a session may still come back and drain it;
 * - a message shared by many sessions counts once; everything is released when the session
 *   ends, output buffers included, and nothing keeps the closed connection filed.
 */
import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { startBroker, type TestBroker, until } from "../helpers/broker.ts";
import { connectV4, connectV5, type Packet, RawClient, payloadText as text, seqOf, seqPayload as payload } from "../helpers/raw-client.ts";
import { MemoryPersistence } from "../../src/persistence/memory.ts";
import { frame, str, u16 } from "../helpers/frames.ts";

const SLOW = { timeout: 30_000 };
/** Bytes the accounting adds to payload + topic per message (session/memory.ts). */
const OVERHEAD = 128;

/** The reason code of an acknowledgement (0 when absent: success). */
const code = (p: Packet | undefined) => (p as { reasonCode?: number } | undefined)?.reasonCode ?? 0;

describe("memory bounded in bytes", () => {
  let b: TestBroker | undefined;
  afterEach(async () => {
    RawClient.destroyAll();
    await b?.close();
    b = undefined;
  });

  it("--max-queued-bytes: a slow session holds at most that many bytes; the rest is dropped and counted", SLOW, async () => {
    const maxQueuedBytes = 64 * 1024;
    b = await startBroker({ maxQueuedBytes, maxQueuedMessages: 1000, maxInflight: 1000 });
    const { client: slow } = await connectV4(b.port, "qb-slow");
    await slow.subscribe("qb/t", { qos: 1 });
    slow.socket.pause();
    const { client: fast } = await connectV5(b.port, "qb-fast");
    await fast.subscribe("qb/t", { qos: 1 });
    const { client: p } = await connectV5(b.port, "qb-pub");
    const N = 20, SIZE = 8 * 1024;
    const each = SIZE + "qb/t".length + OVERHEAD;
    const fits = Math.floor(maxQueuedBytes / each); // 7
    for (let i = 0; i < N; i++) {
      const ack = await p.publish("qb/t", payload(i, SIZE), { qos: 1 });
      assert.equal(code(ack), 0, "the publisher is acknowledged");
      const got = await fast.expectPacket("publish");
      assert.equal(seqOf(got), i, "the reading subscriber gets everything, in order");
      fast.sendPacket({ cmd: "puback", messageId: got.messageId });
    }
    const s = b.broker.sessions.get("qb-slow")!;
    assert.equal(s.heldBytes, fits * each);
    assert.ok(s.heldBytes <= maxQueuedBytes);
    assert.equal(s.droppedMessages, N - fits);
    assert.equal(b.broker.stats.droppedQueueFull, N - fits);
    assert.ok(b.logs.some((l) => l.includes("--max-queued-bytes") && l.includes("qb-slow")), "the drop is logged");

    slow.socket.resume();
    const seen: number[] = [];
    for (let i = 0; i < fits; i++) {
      const got = await slow.expectPacket("publish");
      seen.push(seqOf(got));
      slow.sendPacket({ cmd: "puback", messageId: got.messageId });
    }
    assert.deepEqual(seen, Array.from({ length: fits }, (_, i) => i), "what fitted, in order");
    await slow.expectNoPacket(150);
    await until(() => s.heldBytes === 0, "the acknowledged messages to be released", 5000);
    assert.equal(b.broker.memory.messages, 0);
  });

  it("--max-queued-bytes: one message larger than the bound still reaches a session that holds nothing", SLOW, async () => {
    b = await startBroker({ maxQueuedBytes: 16 * 1024 });
    const { client: s } = await connectV5(b.port, "qb-big-sub");
    await s.subscribe("qb/big", { qos: 1 });
    const { client: p } = await connectV5(b.port, "qb-big-pub");
    await p.publish("qb/big", payload(1, 100 * 1024), { qos: 1 });
    const got = await s.expectPacket("publish");
    assert.equal(got.payload.length, 100 * 1024);
    assert.equal(b.broker.stats.droppedQueueFull, 0);
  });

  it("a message fanned out to several sessions counts once; each session counts it against its own bound", SLOW, async () => {
    b = await startBroker();
    const subs: RawClient[] = [];
    for (let i = 0; i < 3; i++) {
      const { client } = await connectV4(b.port, `once-${i}`);
      await client.subscribe("once/t", { qos: 1 });
      subs.push(client);
    }
    const { client: p } = await connectV4(b.port, "once-pub");
    await p.publish("once/t", payload(0, 50_000), { qos: 1 });
    const size = 50_000 + "once/t".length + OVERHEAD;
    for (let i = 0; i < 3; i++) assert.equal(b.broker.sessions.get(`once-${i}`)!.heldBytes, size);
    assert.equal(b.broker.memory.messages, size, "held by three sessions, counted once");
    for (const c of subs) {
      const got = await c.expectPacket("publish");
      c.sendPacket({ cmd: "puback", messageId: got.messageId });
    }
    await until(() => b!.broker.memory.messages === 0, "the last holder to release it", 5000);
  });

  it("memory returns to 0 when a slow session ends: queued messages, output buffers, the keepalive wheel", SLOW, async () => {
    b = await startBroker({ maxOutputBuffer: 64 * 1024 * 1024 });
    const filedBefore = b.broker.wheel.watching;
    const { client: slow } = await connectV5(b.port, "gone-slow");
    await slow.subscribe([{ topic: "gone/q0", qos: 0 }, { topic: "gone/q1", qos: 1 }]);
    slow.socket.pause();
    const { client: p } = await connectV4(b.port, "gone-pub");
    // QoS 1 stays in the session; 24 MB of QoS 0 is more than the kernel's socket buffers
    // take, so the rest waits in the adapter's output buffer
    for (let i = 0; i < 20; i++) await p.publish("gone/q1", payload(i, 64 * 1024), { qos: 1 });
    for (let i = 0; i < 24; i++) p.publish("gone/q0", payload(i, 1024 * 1024), { qos: 0 });
    await until(() => b!.broker.memory.output > 1024 * 1024, "output to pile up for the paused socket", 5000);
    const m = b.broker.memory;
    assert.ok(m.messages >= 20 * 64 * 1024, `${m.messages} bytes of messages held`);
    assert.equal(b.broker.wheel.watching, filedBefore + 2);

    slow.destroy();
    await until(() => !b!.broker.sessions.has("gone-slow"), "the clean session to end", 5000);
    await until(() => m.held === 0, `memory to be released (messages ${m.messages}, output ${m.output})`, 5000);
    assert.equal(b.broker.wheel.watching, filedBefore + 1, "the closed connection is no longer filed");
  });

  it("what a lagging client holds does not pin the socket reads its messages arrived in", SLOW, async () => {
    b = await startBroker({ maxInflight: 1000 });
    const { client: slow } = await connectV4(b.port, "pin-slow");
    await slow.subscribe("pin/t", { qos: 1 });
    slow.socket.pause();
    const { client: p } = await connectV4(b.port, "pin-pub");
    // 400 small QoS 1 publishes in one write: each payload is a view of one large read
    const one = (i: number) => frame(0x32, [...str("pin/t"), ...u16(i + 1), ...payload(i, 16)]);
    const burst = Buffer.concat(Array.from({ length: 400 }, (_, i) => one(i)));
    p.send(burst);
    const s = b.broker.sessions.get("pin-slow")!;
    await until(() => s.inflight.size + s.queue.length === 400, "all 400 to be held", 5000);
    // past 256 unacknowledged the client lags: every payload it holds is its own copy
    for (const e of [...s.inflight.values(), ...s.queue]) {
      const pl = e.msg.payload;
      assert.ok(pl.buffer.byteLength <= pl.byteLength + 256, `a 16-byte payload keeps ${pl.buffer.byteLength} bytes alive`);
    }
  });

  it("messages in flight to a client that went away stop pinning socket reads; a client that keeps up pays no copy", SLOW, async () => {
    b = await startBroker();
    const a = await connectV5(b.port, "pin-away", { clean: false, properties: { sessionExpiryInterval: 300 } });
    await a.client.subscribe("pin/away", { qos: 1 });
    const { client: p } = await connectV4(b.port, "pin-pub2");
    const one = (i: number) => frame(0x32, [...str("pin/away"), ...u16(i + 1), ...payload(i, 16)]);
    p.send(Buffer.concat(Array.from({ length: 10 }, (_, i) => one(i))));
    const s = b.broker.sessions.get("pin-away")!;
    await until(() => s.inflight.size === 10, "10 in flight", 5000);
    const views = () => [...s.inflight.values()].filter((e) => e.msg.payload.buffer.byteLength > 16 + 256).length;
    assert.equal(views(), 10, "in flight to a connected client: still views of the read (no copy)");
    a.client.destroy();
    await until(() => s.client === undefined, "the session to be detached", 5000);
    assert.equal(views(), 0, "kept for a client that is gone: each its own copy");
  });

  it("a persistent session's queue is released when a clean start discards it", SLOW, async () => {
    b = await startBroker();
    const a = await connectV5(b.port, "gone-persist", { clean: false, properties: { sessionExpiryInterval: 300 } });
    await a.client.subscribe("gp/t", { qos: 1 });
    a.client.disconnect();
    await until(() => b!.broker.sessions.get("gone-persist")?.client === undefined, "the session to be detached", 5000);
    const { client: p } = await connectV5(b.port, "gp-pub");
    for (let i = 0; i < 5; i++) await p.publish("gp/t", payload(i, 10_000), { qos: 1 });
    assert.equal(b.broker.memory.messages, 5 * (10_000 + "gp/t".length + OVERHEAD));
    const again = await connectV5(b.port, "gone-persist", { clean: true });
    assert.equal(again.connack.sessionPresent, false);
    assert.equal(b.broker.memory.messages, 0);
  });

  it("retained messages kept in process memory count, and stop counting when cleared", SLOW, async () => {
    // the memory store keeps retained messages in process (Redis does not): own store here
    b = await startBroker({}, { persistence: new MemoryPersistence() });
    const { client: p } = await connectV4(b.port, "ret-pub");
    await p.publish("ret/a", payload(0, 30_000), { qos: 1, retain: true });
    await p.publish("ret/a", payload(1, 20_000), { qos: 1, retain: true }); // replaces
    assert.equal(b.broker.memory.messages, 20_000 + "ret/a".length + OVERHEAD);
    await p.publish("ret/a", new Uint8Array(0), { qos: 1, retain: true });
    assert.equal(b.broker.memory.messages, 0);
  });
});

describe("--max-memory-bytes: shed QoS 0, then refuse QoS 1/2, then refuse connections", () => {
  // 1,000,000 bytes: QoS 0 shed from 800,000, QoS 1/2 refused from 900,000, connections from
  // 1,000,000. The bytes are queued for an offline persistent session (no output buffers,
  // so the numbers are exact).
  const LIMIT = 1_000_000;
  const T = "shed/q";
  const bytes = (n: number) => n + T.length + OVERHEAD;
  let b: TestBroker | undefined;
  afterEach(async () => {
    RawClient.destroyAll();
    await b?.close();
    b = undefined;
  });

  async function setup() {
    b = await startBroker({ maxMemoryBytes: LIMIT });
    const keeper = await connectV5(b.port, "keeper", { clean: false, properties: { sessionExpiryInterval: 600 } });
    await keeper.client.subscribe(T, { qos: 1 });
    keeper.client.disconnect();
    await until(() => b!.broker.sessions.get("keeper")?.client === undefined, "the session to be detached", 5000);
    const { client: by } = await connectV4(b.port, "bystander");
    await by.subscribe("shed/live", { qos: 1 });
    const { client: p5 } = await connectV5(b.port, "pub5");
    return { by, p5, broker: b };
  }

  it("past 80 % QoS 0 is shed; past 90 % QoS 1/2 is refused with 0x97 (5.0) or a close (3.1.1)", SLOW, async () => {
    const { by, p5, broker: tb } = await setup();
    const m = tb.broker.memory;
    await p5.publish(T, payload(0, 450_000), { qos: 1 });
    assert.equal(m.level, 0);
    await p5.publish("shed/live", "q0 before", { qos: 0 });
    assert.equal(text(await by.expectPacket("publish")), "q0 before");

    await p5.publish(T, payload(1, 400_000), { qos: 1 });
    assert.equal(m.messages, bytes(450_000) + bytes(400_000));
    assert.equal(m.level, 1, "past 80 %");
    await p5.publish("shed/live", "q0 shed", { qos: 0 });
    await by.expectNoPacket(150);
    assert.equal(tb.broker.stats.shedQos0, 1);
    // QoS 1 still goes through at this level
    const ok = await p5.publish("shed/live", "q1 ok", { qos: 1 });
    assert.equal(code(ok), 0);
    const live = await by.expectPacket("publish");
    assert.equal(text(live), "q1 ok");
    by.sendPacket({ cmd: "puback", messageId: live.messageId });

    await p5.publish(T, payload(2, 60_000), { qos: 1 });
    assert.equal(m.level, 2, "past 90 %");
    const q1 = await p5.publish("shed/live", "refused", { qos: 1 });
    assert.deepEqual([q1?.cmd, code(q1)], ["puback", 0x97], "Quota exceeded");
    const q2 = await p5.publish("shed/live", "refused", { qos: 2 });
    assert.deepEqual([q2?.cmd, code(q2)], ["pubrec", 0x97]);
    await by.expectNoPacket(150);
    const { client: p4 } = await connectV4(tb.port, "pub4");
    p4.sendPacket({ cmd: "publish", topic: "shed/live", payload: "x", qos: 1, messageId: 5, retain: false, dup: false });
    await p4.waitClose();
    assert.equal(p4.unread.length, 0, "3.1.1: not acknowledged, closed (the client re-sends it later)");
    assert.equal(tb.broker.stats.refusedPublishes, 3);
    // clearing a retained message is still accepted (it frees memory), and new connections are
    assert.equal((await p5.publish("shed/other", new Uint8Array(0), { qos: 1, retain: true }))?.cmd, "puback");
    const late = await connectV5(tb.port, "late-at-90");
    assert.equal(late.connack.reasonCode, 0);
  });

  it("past 100 % new connections are refused (0x89 / 0x03); a session owner may come back, and draining it lifts every limit", SLOW, async () => {
    const { by, p5, broker: tb } = await setup();
    const m = tb.broker.memory;
    await p5.publish(T, payload(0, 450_000), { qos: 1 });
    await p5.publish(T, payload(1, 400_000), { qos: 1 });
    await p5.publish(T, payload(2, 200_000), { qos: 1 }); // accepted at level 1, lands past 100 %
    assert.equal(m.level, 3);
    const c5 = await connectV5(tb.port, "new-5");
    assert.equal(c5.connack.reasonCode, 0x89, "Server busy");
    await c5.client.waitClose();
    const c4 = await connectV4(tb.port, "new-4");
    assert.equal(c4.connack.returnCode, 0x03, "Server unavailable");
    assert.equal(tb.broker.stats.refusedConnections, 2);
    assert.equal(code(await p5.publish("shed/live", "no", { qos: 1 })), 0x97);

    const back = await connectV5(tb.port, "keeper", { clean: false, properties: { sessionExpiryInterval: 600 } });
    assert.equal(back.connack.reasonCode, 0, "the session's owner is let in to drain it");
    assert.equal(back.connack.sessionPresent, true);
    for (let i = 0; i < 3; i++) {
      const got = await back.client.expectPacket("publish");
      assert.equal(seqOf(got), i);
      back.client.sendPacket({ cmd: "puback", messageId: got.messageId });
    }
    await until(() => m.level === 0, "the level to drop once the queue is drained", 5000);
    assert.equal(m.messages, 0);
    const now = await connectV4(tb.port, "new-4-again");
    assert.equal(now.connack.returnCode, 0);
    await p5.publish("shed/live", "q0 again", { qos: 0 });
    assert.equal(text(await by.expectPacket("publish")), "q0 again");
    assert.ok(tb.logs.some((l) => l.includes("--max-memory-bytes")), "the pressure is logged");
  });
});
