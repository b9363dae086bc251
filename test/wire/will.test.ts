/**
 * Black-box wire tests: Will messages — published when the network connection ends without a
 * normal DISCONNECT (socket lost, keepalive expiry, protocol error, MQTT 5 DISCONNECT 0x04),
 * never after a normal DISCONNECT; will QoS, retain and MQTT 5 will properties; will delay
 * (manual clock); and what happens to the will of a connection taken over by a new one.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { startBroker, type TestBroker, until } from "../helpers/broker.ts";
import { connectV4, connectV5, type PacketOf, RawClient, payloadText as text } from "../helpers/raw-client.ts";
import { ManualClock } from "../../src/clock.ts";


function will(topic: string, payload: string, qos: 0 | 1 | 2 = 0, retain = false, properties?: Record<string, unknown>) {
  return { will: { topic, payload: Buffer.from(payload), qos, retain, properties } };
}

describe("wire: will messages", () => {
  let clock: ManualClock;
  let b: TestBroker;
  let watcher: RawClient; // subscribed to will/# at QoS 2, keepalive 0 (the clock moves)
  before(async () => {
    clock = new ManualClock();
    b = await startBroker({}, { clock });
    watcher = (await connectV4(b.port, "will-watcher", { keepalive: 0 })).client;
    await watcher.subscribe("will/#", { qos: 2 });
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  /** The next will the watcher sees (QoS 1/2 acknowledged so nothing lingers). */
  async function nextWill(): Promise<PacketOf<"publish">> {
    const p = await watcher.expectPacket("publish");
    if (p.qos === 1) watcher.sendPacket({ cmd: "puback", messageId: p.messageId });
    if (p.qos === 2) {
      watcher.sendPacket({ cmd: "pubrec", messageId: p.messageId });
      await watcher.expectPacket("pubrel");
      watcher.sendPacket({ cmd: "pubcomp", messageId: p.messageId });
    }
    return p;
  }

  describe("published on an abnormal end [MQTT-3.1.2-8]", () => {
    it("socket lost (client destroys the socket without DISCONNECT)", async () => {
      const { client } = await connectV4(b.port, "w-lost", { keepalive: 0, ...will("will/lost", "gone") });
      client.destroy();
      const w = await nextWill();
      assert.equal(w.topic, "will/lost");
      assert.equal(text(w), "gone");
      await watcher.expectNoPacket(100); // once
    });

    it("keepalive expiry", async () => {
      const { client } = await connectV4(b.port, "w-ka", { keepalive: 10, ...will("will/ka", "timed out") });
      clock.advance(16_000);
      await client.waitClose();
      const w = await nextWill();
      assert.equal(w.topic, "will/ka");
      await watcher.expectNoPacket(100); // the socket close that follows does not send it again
    });

    it("protocol error: garbage after CONNECT", async () => {
      const { client } = await connectV4(b.port, "w-garbage", { keepalive: 0, ...will("will/garbage", "bad bytes") });
      client.send(Uint8Array.of(0x00, 0x00)); // packet type 0 is reserved
      await client.waitClose();
      const w = await nextWill();
      assert.equal(w.topic, "will/garbage");
    });

    it("5.0 DISCONNECT with reason 0x04 (disconnect with will message)", async () => {
      const { client } = await connectV5(b.port, "w-04", { keepalive: 0, ...will("will/04", "asked for") });
      client.disconnect(0x04);
      const w = await nextWill();
      assert.equal(w.topic, "will/04");
      assert.equal(text(w), "asked for");
    });

    it("5.0 DISCONNECT with an error reason (0x80): only 0x00 discards the will [MQTT-3.1.2-8] [MQTT-3.14.4-3]", async () => {
      const { client } = await connectV5(b.port, "w-80", { keepalive: 0, ...will("will/80", "client error") });
      client.disconnect(0x80);
      const w = await nextWill();
      assert.equal(w.topic, "will/80");
    });

    it("5.0 protocol error (server sends DISCONNECT 0x82) still publishes the will", async () => {
      const { client } = await connectV5(b.port, "w-5err", { keepalive: 0, ...will("will/5err", "x") });
      client.sendPacket({ cmd: "connect", clientId: "w-5err", protocolVersion: 5, clean: true, keepalive: 0 });
      const d = await client.expectPacket("disconnect");
      assert.equal(d.reasonCode, 0x82);
      assert.equal((await nextWill()).topic, "will/5err");
    });
  });

  describe("not published after a normal DISCONNECT", () => {
    it("3.1.1 DISCONNECT discards the will [MQTT-3.1.2-10]", async () => {
      const { client } = await connectV4(b.port, "w-normal", { keepalive: 0, ...will("will/normal", "never") });
      client.disconnect();
      await client.waitClose();
      await watcher.expectNoPacket(200);
    });

    it("5.0 DISCONNECT 0x00 discards the will [MQTT-3.14.4-3]", async () => {
      const { client } = await connectV5(b.port, "w-normal5", { keepalive: 0, ...will("will/normal5", "never") });
      client.disconnect(0x00);
      await client.waitClose();
      await watcher.expectNoPacket(200);
    });

    it("a connection without a will publishes nothing when lost [MQTT-3.1.2-12]", async () => {
      const { client } = await connectV4(b.port, "w-none", { keepalive: 0 });
      client.destroy();
      await watcher.expectNoPacket(200);
    });
  });

  describe("will QoS, retain and properties", () => {
    it("will QoS 1 is delivered at QoS 1 (subscription allows 2)", async () => {
      const { client } = await connectV4(b.port, "w-qos1", { keepalive: 0, ...will("will/qos1", "q1", 1) });
      client.destroy();
      const w = await nextWill();
      assert.equal(w.qos, 1);
    });

    it("will QoS 2 is delivered at QoS 2", async () => {
      const { client } = await connectV4(b.port, "w-qos2", { keepalive: 0, ...will("will/qos2", "q2", 2) });
      client.destroy();
      const w = await nextWill();
      assert.equal(w.qos, 2);
    });

    it("will retain 1: published as a retained message, a later subscriber gets it with RETAIN=1 [MQTT-3.1.2-17]", async () => {
      const { client } = await connectV4(b.port, "w-ret", { keepalive: 0, ...will("will/retained", "last words", 1, true) });
      client.destroy();
      const live = await nextWill();
      assert.equal(live.retain, false, "to an existing subscription RETAIN is 0 [MQTT-3.3.1-9]");
      const late = await connectV4(b.port, "w-ret-late", { keepalive: 0 });
      await late.client.subscribe("will/retained", { qos: 1 });
      const r = await late.client.expectPacket("publish");
      assert.equal(r.retain, true);
      assert.equal(r.qos, 1);
      assert.equal(text(r), "last words");
    });

    it("will retain 0: not stored, a later subscriber gets nothing [MQTT-3.1.2-16]", async () => {
      const { client } = await connectV4(b.port, "w-noret", { keepalive: 0, ...will("will/notretained", "x", 1) });
      client.destroy();
      await nextWill();
      const late = await connectV4(b.port, "w-noret-late", { keepalive: 0 });
      await late.client.subscribe("will/notretained", { qos: 1 });
      await late.client.expectNoPacket(150);
    });

    it("5.0 will properties travel with the will message", async () => {
      const sub = await connectV5(b.port, "w-props-sub", { keepalive: 0 });
      await sub.client.subscribe("willprops/t", { qos: 1 });
      const props = { contentType: "text/plain", userProperties: { k: "v" } };
      const { client } = await connectV5(b.port, "w-props", { keepalive: 0, ...will("willprops/t", "p", 1, false, props) });
      client.destroy();
      const w = await sub.client.expectPacket("publish");
      assert.equal(w.properties?.contentType, "text/plain");
      assert.deepEqual({ ...w.properties?.userProperties }, { k: "v" });
    });
  });

  describe("5.0 will delay (manual clock) [MQTT-3.1.3-9]", () => {
    const persistent = (delay: number, expiry = 60) => ({
      keepalive: 0,
      clean: true,
      properties: { sessionExpiryInterval: expiry },
      ...will("will/delayed", `delay ${delay}`, 0, false, { willDelayInterval: delay }),
    });

    it("published when the will delay has passed, not before", async () => {
      const { client } = await connectV5(b.port, "w-delay", persistent(5));
      client.destroy();
      await until(() => b.broker.sessions.get("w-delay")?.client === undefined, "the close to be seen");
      clock.advance(4_000);
      await watcher.expectNoPacket(100);
      clock.advance(1_000);
      assert.equal(text(await nextWill()), "delay 5");
    });

    it("a reconnect within the delay cancels the will", async () => {
      const { client } = await connectV5(b.port, "w-back", persistent(5));
      client.destroy();
      await until(() => b.broker.sessions.get("w-back")?.client === undefined, "the close to be seen");
      clock.advance(3_000);
      const back = await connectV5(b.port, "w-back", { keepalive: 0, clean: false, properties: { sessionExpiryInterval: 60 } });
      assert.equal(back.connack.sessionPresent, true);
      clock.advance(120_000);
      await watcher.expectNoPacket(150);
      back.client.disconnect();
    });

    it("the session ending first sends the will early (delay 30, session expiry 10)", async () => {
      const { client } = await connectV5(b.port, "w-early", persistent(30, 10));
      client.destroy();
      await until(() => b.broker.sessions.get("w-early")?.client === undefined, "the close to be seen");
      clock.advance(9_000);
      await watcher.expectNoPacket(100);
      clock.advance(1_000);
      assert.equal(text(await nextWill()), "delay 30");
    });
  });

  describe("will of a connection taken over (same client id)", () => {
    // What Colibri does (and what MQTT 5 §3.1.4 and the non-normative comment under Will Delay
    // Interval describe): the server closes the old network connection without a DISCONNECT
    // from its client, an abnormal end for that connection's will. So:
    //  - 3.1.1 (no will delay): the old connection's will is published, once, at takeover;
    //  - 5.0 with a will delay and the new connection resuming the session (clean start 0):
    //    a new connection within the delay cancels it [MQTT-3.1.3-9], never published;
    //  - 5.0 with a will delay and clean start 1: the old session ends, its will goes now.
    it("3.1.1: the old connection's will is published once at takeover", async () => {
      const first = await connectV4(b.port, "w-take4", { keepalive: 0, ...will("will/take4", "old one") });
      const second = await connectV4(b.port, "w-take4", { keepalive: 0 });
      assert.equal(second.connack.returnCode, 0);
      await first.client.waitClose();
      const w = await nextWill();
      assert.equal(text(w), "old one");
      second.client.destroy(); // the new connection has no will
      await watcher.expectNoPacket(150);
    });

    it("5.0 will delay + clean start 0 takeover: will not published", async () => {
      const opts = { keepalive: 0, clean: false, properties: { sessionExpiryInterval: 60 } };
      const first = await connectV5(b.port, "w-take5", { ...opts, ...will("will/take5", "x", 0, false, { willDelayInterval: 10 }) });
      const second = await connectV5(b.port, "w-take5", opts);
      assert.equal(second.connack.sessionPresent, true);
      assert.equal((await first.client.expectPacket("disconnect")).reasonCode, 0x8e);
      clock.advance(30_000);
      await watcher.expectNoPacket(150);
      second.client.disconnect();
    });

    it("5.0 will delay + clean start 1 takeover: the old session ends, its will is published", async () => {
      const opts = { keepalive: 0, properties: { sessionExpiryInterval: 60 } };
      const first = await connectV5(b.port, "w-take5c", { ...opts, clean: false, ...will("will/take5c", "ended", 0, false, { willDelayInterval: 10 }) });
      const second = await connectV5(b.port, "w-take5c", { ...opts, clean: true });
      assert.equal(second.connack.sessionPresent, false);
      await first.client.waitClose();
      assert.equal(text(await nextWill()), "ended");
      second.client.disconnect();
    });
  });
});

describe("will: planned shutdown", () => {
  it("a broker that is closed (SIGTERM path) does not publish the wills of its clients; MQTT 5 clients get DISCONNECT 0x8B", async () => {
    const b = await startBroker();
    const published: string[] = [];
    const orig = b.broker.publish.bind(b.broker);
    b.broker.publish = (msg, publisher) => {
      published.push(msg.topic);
      return orig(msg, publisher);
    };
    const { client } = await connectV5(b.port, "shutdown-will", {
      will: { topic: "shutdown/will", payload: Buffer.from("gone"), qos: 1, retain: false },
    });
    await b.close();
    const d = await client.expectPacket("disconnect");
    assert.equal(d.reasonCode, 0x8b);
    await client.waitClose();
    assert.deepEqual(published, []);
    RawClient.destroyAll();
  });
});

describe("will: DISCONNECT held behind a slow SUBSCRIBE", () => {
  it("a DISCONNECT sent just before the socket closes still counts (no will) while a retained lookup is pending", async () => {
    const { MemoryPersistence } = await import("../../src/persistence/memory.ts");
    const store = new MemoryPersistence();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const realMatch = store.matchRetained.bind(store);
    store.matchRetained = async (filter: string) => {
      const r = await realMatch(filter);
      if (filter === "held/#") await gate;
      return r;
    };
    const b = await startBroker({}, { persistence: store });
    try {
      const { client: watcher } = await connectV4(b.port, "held-watch");
      await watcher.subscribe("held/will", { qos: 0 });
      const { client } = await connectV5(b.port, "held-c", {
        will: { topic: "held/will", payload: Buffer.from("should not"), qos: 0, retain: false },
      });
      client.sendPacket({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "held/#", qos: 0 }] });
      await client.expectPacket("suback");
      client.sendPacket({ cmd: "disconnect", reasonCode: 0 });
      client.socket.end();
      await new Promise((r) => setTimeout(r, 50)); // the close reaches the broker while SUBSCRIBE is pending
      release();
      await watcher.expectNoPacket(300); // [MQTT-3.14.4-3] a normal DISCONNECT discards the will
      assert.equal(b.broker.sessions.has("held-c"), false);
    } finally {
      release();
      RawClient.destroyAll();
      await b.close();
    }
  });
});
