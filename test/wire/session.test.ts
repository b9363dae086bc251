/**
 * Black-box wire tests: session state across connections — clean session / clean start,
 * persistent sessions (subscriptions kept, QoS 1/2 queued offline in order, QoS 0 not),
 * the bounded offline queue, MQTT 5 session expiry (manual clock), takeover by a new
 * connection with the same client id, and redelivery of unacknowledged messages.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { startBroker, type TestBroker, until } from "../helpers/broker.ts";
import { connectV4, connectV5, type PacketOf, RawClient, payloadText as text } from "../helpers/raw-client.ts";
import { ManualClock } from "../../src/clock.ts";
import { MemoryPersistence } from "../../src/persistence/memory.ts";

/** The broker has seen the connection of `id` go (its session, if any, is detached). */
function offline(b: TestBroker, id: string): Promise<void> {
  return until(() => {
    const s = b.broker.sessions.get(id);
    return !s || s.client === undefined;
  }, `session ${id} to be detached`);
}


async function receive(c: RawClient, n: number): Promise<PacketOf<"publish">[]> {
  const out: PacketOf<"publish">[] = [];
  for (let i = 0; i < n; i++) out.push(await c.expectPacket("publish"));
  return out;
}

describe("wire: sessions", () => {
  let b: TestBroker;
  let pub: RawClient;
  before(async () => {
    b = await startBroker({ maxQueuedMessages: 100 });
    pub = (await connectV4(b.port, "session-publisher")).client;
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  describe("clean session / persistent session (3.1.1)", () => {
    it("first persistent CONNECT: session present 0; resumed: session present 1 [MQTT-3.2.2-3] [MQTT-3.2.2-2]", async () => {
      const first = await connectV4(b.port, "p-present", { clean: false });
      assert.equal(first.connack.sessionPresent, false);
      first.client.disconnect();
      await offline(b, "p-present");
      const again = await connectV4(b.port, "p-present", { clean: false });
      assert.equal(again.connack.sessionPresent, true);
      again.client.destroy();
    });

    it("clean session discards the stored session: present 0, its subscriptions gone [MQTT-3.1.2-6] [MQTT-3.2.2-1]", async () => {
      const first = await connectV4(b.port, "p-clean", { clean: false });
      await first.client.subscribe("pclean/t", { qos: 1 });
      first.client.disconnect();
      await offline(b, "p-clean");

      const clean = await connectV4(b.port, "p-clean", { clean: true });
      assert.equal(clean.connack.sessionPresent, false);
      await pub.publish("pclean/t", "not for you", { qos: 1 });
      await clean.client.expectNoPacket(150);
      clean.client.disconnect();
      await offline(b, "p-clean");

      // the clean session lasted only as long as its connection
      const later = await connectV4(b.port, "p-clean", { clean: false });
      assert.equal(later.connack.sessionPresent, false);
      later.client.destroy();
    });

    it("persistent session keeps subscriptions and queues QoS 1/2 offline, in order; QoS 0 is not queued [MQTT-3.1.2-4] [MQTT-3.1.2-5]", async () => {
      const first = await connectV4(b.port, "p-queue", { clean: false });
      await first.client.subscribe("pq/#", { qos: 2 });
      first.client.disconnect();
      await offline(b, "p-queue");

      await pub.publish("pq/1", "a", { qos: 1 });
      await pub.publish("pq/2", "b", { qos: 0 });
      await pub.publish("pq/3", "c", { qos: 2 });
      await pub.publish("pq/4", "d", { qos: 1 });

      const again = await connectV4(b.port, "p-queue", { clean: false });
      assert.equal(again.connack.sessionPresent, true);
      const got = await receive(again.client, 3);
      assert.deepEqual(got.map(text), ["a", "c", "d"]);
      assert.deepEqual(got.map((p) => p.qos), [1, 2, 1]);
      assert.deepEqual(got.map((p) => p.dup), [false, false, false], "first delivery is not a duplicate");
      again.client.sendPacket({ cmd: "puback", messageId: got[0].messageId });
      again.client.sendPacket({ cmd: "pubrec", messageId: got[1].messageId });
      await again.client.expectPacket("pubrel");
      again.client.sendPacket({ cmd: "pubcomp", messageId: got[1].messageId });
      again.client.sendPacket({ cmd: "puback", messageId: got[2].messageId });
      await again.client.expectNoPacket(150); // "b" (QoS 0) was not kept

      // the subscription is still live on the resumed session
      await pub.publish("pq/5", "e", { qos: 1 });
      const live = await again.client.expectPacket("publish");
      assert.equal(text(live), "e");
      again.client.destroy();
    });
  });

  describe("same client id: the session moves to the new connection", () => {
    it("3.1.1 persistent: session present 1 on the new connection, subscriptions still deliver [MQTT-3.1.4-2]", async () => {
      const a = await connectV4(b.port, "ho-4", { clean: false });
      await a.client.subscribe("ho4/t", { qos: 1 });
      const a2 = await connectV4(b.port, "ho-4", { clean: false });
      assert.equal(a2.connack.sessionPresent, true);
      await a.client.waitClose();
      await pub.publish("ho4/t", "to the new one", { qos: 1 });
      const got = await a2.client.expectPacket("publish");
      assert.equal(text(got), "to the new one");
      a2.client.sendPacket({ cmd: "puback", messageId: got.messageId });
      a2.client.destroy();
    });

    it("5.0: inflight and queued messages move to the new connection (DUP for the inflight one), old one gets 0x8E", async () => {
      const props = { sessionExpiryInterval: 300 };
      const a = await connectV5(b.port, "ho-5", { clean: true, properties: { ...props, receiveMaximum: 1 } });
      await a.client.subscribe("ho5/t", { qos: 1 });
      for (const m of ["m1", "m2", "m3"]) await pub.publish("ho5/t", m, { qos: 1 });
      const m1 = await a.client.expectPacket("publish");
      assert.equal(text(m1), "m1");
      await a.client.expectNoPacket(100); // window of 1: m2, m3 wait in the session

      const a2 = await connectV5(b.port, "ho-5", { clean: false, properties: props });
      assert.equal(a2.connack.sessionPresent, true);
      const d = await a.client.expectPacket("disconnect");
      assert.equal(d.reasonCode, 0x8e);
      await a.client.waitClose();

      const got = await receive(a2.client, 3);
      assert.deepEqual(got.map(text), ["m1", "m2", "m3"]);
      assert.equal(got[0].dup, true, "the unacknowledged m1 is re-sent with DUP=1");
      assert.equal(got[0].messageId, m1.messageId, "with its original packet id");
      assert.equal(got[1].dup, false);
      for (const p of got) a2.client.sendPacket({ cmd: "puback", messageId: p.messageId });
      await a2.client.expectNoPacket(100);
      a2.client.destroy();
    });

    it("clean session on both: the new connection starts fresh (present 0), old subscriptions gone", async () => {
      const a = await connectV4(b.port, "ho-clean", { clean: true });
      await a.client.subscribe("hoclean/t", { qos: 0 });
      const a2 = await connectV4(b.port, "ho-clean", { clean: true });
      assert.equal(a2.connack.sessionPresent, false);
      await a.client.waitClose();
      await pub.publish("hoclean/t", "x", { qos: 1 });
      await a2.client.expectNoPacket(150);
      a2.client.destroy();
    });
  });

  describe("redelivery on session resume [MQTT-4.4.0-1]", () => {
    it("QoS 1 PUBLISH not acknowledged: re-sent with DUP=1 and the same packet id", async () => {
      const a = await connectV4(b.port, "rd-1", { clean: false });
      await a.client.subscribe("rd/1", { qos: 1 });
      await pub.publish("rd/1", "once", { qos: 1 });
      const first = await a.client.expectPacket("publish");
      assert.equal(first.dup, false);
      a.client.destroy(); // no PUBACK
      await offline(b, "rd-1");

      const again = await connectV4(b.port, "rd-1", { clean: false });
      assert.equal(again.connack.sessionPresent, true);
      const re = await again.client.expectPacket("publish");
      assert.equal(re.dup, true);
      assert.equal(re.qos, 1);
      assert.equal(re.messageId, first.messageId);
      assert.equal(text(re), "once");
      again.client.sendPacket({ cmd: "puback", messageId: re.messageId });
      again.client.destroy();
      await offline(b, "rd-1");

      // acknowledged now: not sent a third time
      const third = await connectV4(b.port, "rd-1", { clean: false });
      await third.client.expectNoPacket(150);
      third.client.destroy();
    });

    it("several unacknowledged messages come back first, in their order, then the ones queued offline", async () => {
      const a = await connectV4(b.port, "rd-order", { clean: false });
      await a.client.subscribe("rd/order", { qos: 1 });
      for (const m of ["i1", "i2", "i3"]) await pub.publish("rd/order", m, { qos: 1 });
      const sent = await receive(a.client, 3);
      a.client.destroy(); // none acknowledged
      await offline(b, "rd-order");
      for (const m of ["q1", "q2"]) await pub.publish("rd/order", m, { qos: 1 });

      const again = await connectV4(b.port, "rd-order", { clean: false });
      const got = await receive(again.client, 5);
      assert.deepEqual(got.map(text), ["i1", "i2", "i3", "q1", "q2"]);
      assert.deepEqual(got.map((p) => p.dup), [true, true, true, false, false]);
      assert.deepEqual(got.slice(0, 3).map((p) => p.messageId), sent.map((p) => p.messageId));
      for (const p of got) again.client.sendPacket({ cmd: "puback", messageId: p.messageId });
      await again.client.expectNoPacket(100);
      again.client.destroy();
    });

    it("QoS 2 PUBLISH without PUBREC: the PUBLISH is re-sent with DUP=1", async () => {
      const a = await connectV4(b.port, "rd-2p", { clean: false });
      await a.client.subscribe("rd/2p", { qos: 2 });
      await pub.publish("rd/2p", "q2", { qos: 2 });
      const first = await a.client.expectPacket("publish");
      a.client.destroy();
      await offline(b, "rd-2p");

      const again = await connectV4(b.port, "rd-2p", { clean: false });
      const re = await again.client.expectPacket("publish");
      assert.equal(re.dup, true);
      assert.equal(re.qos, 2);
      assert.equal(re.messageId, first.messageId);
      again.client.destroy();
    });

    it("QoS 2 PUBREC'd but not completed: PUBREL is re-sent (not the PUBLISH)", async () => {
      const a = await connectV4(b.port, "rd-2r", { clean: false });
      await a.client.subscribe("rd/2r", { qos: 2 });
      await pub.publish("rd/2r", "q2r", { qos: 2 });
      const first = await a.client.expectPacket("publish");
      a.client.sendPacket({ cmd: "pubrec", messageId: first.messageId });
      const rel = await a.client.expectPacket("pubrel");
      assert.equal(rel.messageId, first.messageId);
      a.client.destroy(); // no PUBCOMP
      await offline(b, "rd-2r");

      const again = await connectV4(b.port, "rd-2r", { clean: false });
      const rel2 = await again.client.expectPacket("pubrel");
      assert.equal(rel2.messageId, first.messageId);
      again.client.sendPacket({ cmd: "pubcomp", messageId: first.messageId });
      await again.client.expectNoPacket(150);
      again.client.destroy();
    });
  });
});

describe("wire: connection lost while its CONNECT is being processed", () => {
  /** A store whose session lookups are slow, as a remote store can be. */
  class SlowLookups extends MemoryPersistence {
    delayMs = 0;
    override async getSession(clientId: string) {
      if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
      return super.getSession(clientId);
    }
  }

  it("no session is left behind for a client that never got its CONNACK", async () => {
    const store = new SlowLookups();
    const b = await startBroker({}, { persistence: store });
    try {
      store.delayMs = 150;
      const c = await RawClient.connect(b.port);
      c.sendPacket({ cmd: "connect", clientId: "gone-early", protocolVersion: 4, clean: true, keepalive: 0 });
      await new Promise((r) => setTimeout(r, 40)); // the CONNECT is in the (slow) session lookup
      c.destroy();
      await new Promise((r) => setTimeout(r, 200)); // the lookup has finished
      store.delayMs = 0;
      assert.equal(b.broker.sessions.has("gone-early"), false, "a session without a connection was left in the broker");
      // seen from the wire: a clean session never outlives its connection [MQTT-3.1.2-6]
      const again = await connectV4(b.port, "gone-early", { clean: false });
      assert.equal(again.connack.sessionPresent, false);
    } finally {
      RawClient.destroyAll();
      await b.close();
    }
  });
});

describe("wire: bounded offline queue", () => {
  it("maxQueuedMessages: overflow is dropped, counted and logged; the broker goes on", async () => {
    const b = await startBroker({ maxQueuedMessages: 3 });
    try {
      const pub = (await connectV4(b.port, "bq-pub")).client;
      const a = await connectV4(b.port, "bq-sub", { clean: false });
      await a.client.subscribe("bq/t", { qos: 1 });
      a.client.disconnect();
      await offline(b, "bq-sub");

      for (let i = 0; i < 5; i++) {
        const ack = await pub.publish("bq/t", `m${i}`, { qos: 1 });
        assert.equal(ack?.cmd, "puback", "the publisher is still acknowledged");
      }
      assert.equal(b.broker.stats.droppedQueueFull, 2);
      assert.ok(b.logs.some((l) => /dropped/.test(l) && l.includes("bq-sub")), `no log line about the drop in:\n${b.logs.join("\n")}`);

      const again = await connectV4(b.port, "bq-sub", { clean: false });
      assert.equal(again.connack.sessionPresent, true);
      const got = await receive(again.client, 3);
      assert.deepEqual(got.map(text), ["m0", "m1", "m2"]);
      for (const p of got) again.client.sendPacket({ cmd: "puback", messageId: p.messageId });
      await again.client.expectNoPacket(150);

      // room again: delivered normally
      await pub.publish("bq/t", "after", { qos: 1 });
      assert.equal(text(await again.client.expectPacket("publish")), "after");
    } finally {
      RawClient.destroyAll();
      await b.close();
    }
  });
});

describe("wire: MQTT 5 session expiry and clean start (manual clock)", () => {
  let clock: ManualClock;
  let b: TestBroker;
  let pub: RawClient;
  before(async () => {
    clock = new ManualClock();
    b = await startBroker({}, { clock });
    pub = (await connectV4(b.port, "exp-pub", { keepalive: 0 })).client;
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  it("session kept before its expiry interval, gone after it [MQTT-3.1.2-23]", async () => {
    const props = { sessionExpiryInterval: 10 };
    const a = await connectV5(b.port, "exp-10", { clean: true, keepalive: 0, properties: props });
    await a.client.subscribe("exp/t", { qos: 1 });
    a.client.disconnect();
    await offline(b, "exp-10");

    clock.advance(9_000);
    await pub.publish("exp/t", "queued", { qos: 1 });
    const back = await connectV5(b.port, "exp-10", { clean: false, keepalive: 0, properties: props });
    assert.equal(back.connack.sessionPresent, true, "session still there after 9 s of 10");
    const got = await back.client.expectPacket("publish");
    assert.equal(text(got), "queued");
    back.client.sendPacket({ cmd: "puback", messageId: got.messageId });
    back.client.disconnect();
    await offline(b, "exp-10");

    // the interval starts again at this disconnect
    clock.advance(10_001);
    assert.equal(b.broker.sessions.has("exp-10"), false, "session still held after its expiry");
    await pub.publish("exp/t", "nobody", { qos: 1 });
    const late = await connectV5(b.port, "exp-10", { clean: false, keepalive: 0, properties: props });
    assert.equal(late.connack.sessionPresent, false);
    await late.client.expectNoPacket(150);
    late.client.destroy();
  });

  it("session expiry 0 (absent): the session ends with the connection", async () => {
    const a = await connectV5(b.port, "exp-0", { clean: false, keepalive: 0 });
    await a.client.subscribe("exp0/t", { qos: 1 });
    a.client.disconnect();
    await offline(b, "exp-0");
    const back = await connectV5(b.port, "exp-0", { clean: false, keepalive: 0 });
    assert.equal(back.connack.sessionPresent, false);
    await pub.publish("exp0/t", "x", { qos: 1 });
    await back.client.expectNoPacket(150);
    back.client.destroy();
  });

  it("clean start 1 discards an existing session [MQTT-3.1.2-4]", async () => {
    const props = { sessionExpiryInterval: 300 };
    const a = await connectV5(b.port, "exp-cs", { clean: false, keepalive: 0, properties: props });
    await a.client.subscribe("expcs/t", { qos: 1 });
    a.client.disconnect();
    await offline(b, "exp-cs");
    await pub.publish("expcs/t", "stale", { qos: 1 });

    const fresh = await connectV5(b.port, "exp-cs", { clean: true, keepalive: 0, properties: props });
    assert.equal(fresh.connack.sessionPresent, false);
    await pub.publish("expcs/t", "x", { qos: 1 });
    await fresh.client.expectNoPacket(150); // neither the queued nor the new message
  });

  it("DISCONNECT setting a session expiry when CONNECT had 0: DISCONNECT 0x82 [MQTT-3.14.2-2]", async () => {
    const a = await connectV5(b.port, "exp-from0", { clean: true, keepalive: 0 });
    a.client.sendPacket({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 60 } });
    const d = await a.client.expectPacket("disconnect");
    assert.equal(d.reasonCode, 0x82);
    await a.client.waitClose();
    const back = await connectV5(b.port, "exp-from0", { clean: false, keepalive: 0 });
    assert.equal(back.connack.sessionPresent, false, "the session still ended with the connection");
    back.client.destroy();
  });

  it("DISCONNECT may shorten the session expiry interval", async () => {
    const a = await connectV5(b.port, "exp-dis", { clean: true, keepalive: 0, properties: { sessionExpiryInterval: 300 } });
    await a.client.subscribe("expdis/t", { qos: 1 });
    a.client.sendPacket({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 5 } });
    a.client.end();
    await offline(b, "exp-dis");
    clock.advance(5_001);
    const back = await connectV5(b.port, "exp-dis", { clean: false, keepalive: 0, properties: { sessionExpiryInterval: 300 } });
    assert.equal(back.connack.sessionPresent, false);
    back.client.destroy();
  });
});

describe("wire: --max-session-expiry caps 3.1.1 persistent sessions too (manual clock)", () => {
  let clock: ManualClock;
  let b: TestBroker;
  before(async () => {
    clock = new ManualClock();
    b = await startBroker({ maxSessionExpiry: 60 }, { clock });
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  it("a clean session = 0 session is held at most --max-session-expiry after its disconnect", async () => {
    const pub = (await connectV4(b.port, "cap-pub", { keepalive: 0 })).client;
    const a = await connectV4(b.port, "cap-311", { clean: false, keepalive: 0 });
    await a.client.subscribe("cap/t", { qos: 1 });
    a.client.disconnect();
    await offline(b, "cap-311");

    clock.advance(59_000);
    await pub.publish("cap/t", "queued", { qos: 1 });
    const back = await connectV4(b.port, "cap-311", { clean: false, keepalive: 0 });
    assert.equal(back.connack.sessionPresent, true, "session still there after 59 s of 60");
    const got = await back.client.expectPacket("publish");
    assert.equal(text(got), "queued");
    back.client.sendPacket({ cmd: "puback", messageId: got.messageId });
    back.client.disconnect();
    await offline(b, "cap-311");

    clock.advance(60_001);
    assert.equal(b.broker.sessions.has("cap-311"), false, "3.1.1 session still held after --max-session-expiry");
    await pub.publish("cap/t", "nobody", { qos: 1 });
    const late = await connectV4(b.port, "cap-311", { clean: false, keepalive: 0 });
    assert.equal(late.connack.sessionPresent, false);
    await late.client.expectNoPacket(150);
  });
});

describe("wire: --max-session-expiry caps stored sessions at start-up", () => {
  it("a stored 3.1.1 session that never expired is ended when it has been offline longer than the cap", async () => {
    const clock = new ManualClock();
    const persistence = new MemoryPersistence({ now: () => clock.now() });
    const base = { protocolVersion: 4, expiryInterval: 0xffffffff };
    await persistence.putSession({ ...base, clientId: "old-long", disconnectedAt: clock.now() - 61_000 });
    await persistence.putSession({ ...base, clientId: "old-short", disconnectedAt: clock.now() - 30_000 });
    const b = await startBroker({ maxSessionExpiry: 60 }, { clock, persistence });
    try {
      assert.equal(b.broker.sessions.has("old-long"), false, "offline 61 s with a 60 s cap: ended at start-up");
      assert.equal(await persistence.getSession("old-long"), undefined);
      assert.equal(b.broker.sessions.has("old-short"), true);
      clock.advance(30_001);
      assert.equal(b.broker.sessions.has("old-short"), false, "ends 60 s after its disconnect");
    } finally {
      await b.close();
    }
  });
});
