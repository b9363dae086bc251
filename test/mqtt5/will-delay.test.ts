/**
 * MQTT 5 Will Delay Interval (§3.1.3.2.2) and its interplay with session expiry: the will goes
 * when the delay passes or the session ends, whichever comes first [MQTT-3.1.2-8]; a reconnect
 * to the session within the delay cancels it [MQTT-3.1.3-9]. Time is a manual clock.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { startBroker, type TestBroker } from "../helpers/broker.ts";
import { connectV5, type PacketOf, RawClient } from "../helpers/raw-client.ts";
import { ManualClock } from "../../src/clock.ts";
import { ack, text, userPropsInOrder } from "./util.ts";

describe("mqtt5: will delay", () => {
  let clock: ManualClock;
  let b: TestBroker;
  let watcher: RawClient;
  before(async () => {
    clock = new ManualClock();
    b = await startBroker({}, { clock });
    watcher = (await connectV5(b.port, "wd-watcher", { keepalive: 0 })).client;
    await watcher.subscribe("wd/#", { qos: 1 });
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  const willClient = (id: string, delay: number, expiry: number, extra: Record<string, unknown> = {}) =>
    connectV5(b.port, id, {
      keepalive: 0,
      clean: true,
      properties: { sessionExpiryInterval: expiry },
      will: { topic: `wd/${id}`, payload: Buffer.from(`${id} gone`), qos: 1, retain: false, properties: { willDelayInterval: delay, ...extra } },
    });

  async function nextWill(): Promise<PacketOf<"publish">> {
    const p = await watcher.expectPacket("publish");
    await ack(watcher, p);
    return p;
  }

  /** Let the broker see a socket close before the clock moves. */
  const settle = () => new Promise((r) => setTimeout(r, 50));

  it("the will waits for its delay after an abnormal close [MQTT-3.1.2-8]", async () => {
    const { client } = await willClient("delay10", 10, 100);
    client.destroy();
    await settle();
    await watcher.expectNoPacket(100);
    clock.advance(9_000);
    await watcher.expectNoPacket(100);
    clock.advance(1_000);
    const w = await nextWill();
    assert.equal(w.topic, "wd/delay10");
    assert.equal(text(w), "delay10 gone");
  });

  it("a reconnect to the session within the delay cancels the will [MQTT-3.1.3-9]", async () => {
    const { client } = await willClient("cancel", 10, 100);
    client.destroy();
    await settle();
    clock.advance(5_000);
    const { client: back, connack } = await connectV5(b.port, "cancel", {
      keepalive: 0, clean: false, properties: { sessionExpiryInterval: 100 },
    });
    assert.equal(connack.sessionPresent, true);
    clock.advance(60_000);
    await watcher.expectNoPacket(150);
    back.disconnect();
  });

  it("a reconnect with Clean Start ends the old session: its will goes then (§3.1.3.2.2)", async () => {
    const { client } = await willClient("clean", 30, 100);
    client.destroy();
    await settle();
    clock.advance(1_000);
    const { client: back } = await connectV5(b.port, "clean", { keepalive: 0, clean: true });
    assert.equal((await nextWill()).topic, "wd/clean");
    back.disconnect();
  });

  it("session expiry shorter than the delay: the will goes when the session ends", async () => {
    const { client } = await willClient("short", 30, 5);
    client.destroy();
    await settle();
    clock.advance(4_000);
    await watcher.expectNoPacket(100);
    clock.advance(1_000);
    assert.equal((await nextWill()).topic, "wd/short");
    clock.advance(60_000);
    await watcher.expectNoPacket(100);
  });

  it("session expiry 0: the session ends with the connection, the will goes at once", async () => {
    const { client } = await willClient("zero", 30, 0);
    client.destroy();
    assert.equal((await nextWill()).topic, "wd/zero");
  });

  it("a normal DISCONNECT discards the will, delay or not [MQTT-3.14.4-3]", async () => {
    const { client } = await willClient("normal", 5, 100);
    client.disconnect(0);
    await settle();
    clock.advance(200_000);
    await watcher.expectNoPacket(150);
  });

  it("DISCONNECT 0x04 asks for the will, still after its delay (§3.14.2.1)", async () => {
    const { client } = await willClient("with-will", 5, 100);
    client.disconnect(0x04);
    await settle();
    await watcher.expectNoPacket(100);
    clock.advance(5_000);
    assert.equal((await nextWill()).topic, "wd/with-will");
  });

  it("a takeover by Clean Start 0 within the delay does not send the will (§3.1.4)", async () => {
    const { client: old } = await willClient("takeover", 10, 100);
    const { client: fresh } = await connectV5(b.port, "takeover", {
      keepalive: 0, clean: false, properties: { sessionExpiryInterval: 100 },
    });
    const d = await old.expectPacket("disconnect");
    assert.equal(d.reasonCode, 0x8e);
    clock.advance(30_000);
    await watcher.expectNoPacket(150);
    fresh.disconnect();
  });

  it("the will keeps its properties: expiry counted from publication, user properties in order [MQTT-3.1.3-10]", async () => {
    const { client } = await connectV5(b.port, "props", {
      keepalive: 0,
      properties: { sessionExpiryInterval: 100 },
      will: {
        topic: "wd/props", payload: Buffer.from("{}"), qos: 1, retain: false,
        properties: {
          willDelayInterval: 3, messageExpiryInterval: 50, contentType: "application/json",
          responseTopic: "wd/reply", correlationData: Buffer.from([1, 2, 3]), userProperties: { a: "1", b: "2" },
        },
      },
    });
    client.destroy();
    await settle();
    clock.advance(3_000);
    const f = await watcher.nextFrame();
    const w = f.packet as PacketOf<"publish">;
    assert.equal(w.topic, "wd/props");
    assert.equal(w.properties?.messageExpiryInterval, 50);
    assert.equal(w.properties?.contentType, "application/json");
    assert.equal(w.properties?.responseTopic, "wd/reply");
    assert.deepEqual([...(w.properties?.correlationData ?? [])], [1, 2, 3]);
    assert.deepEqual(userPropsInOrder(f.bytes), [["a", "1"], ["b", "2"]]);
    await ack(watcher, w);
  });
});
