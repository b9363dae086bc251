/**
 * MQTT.js (npm `mqtt`, v5) as a real client against the in-process broker: MQTT 3.1.1 and 5.0
 * connect / subscribe / publish at QoS 0/1/2, retained messages, the will on an abnormal
 * disconnect, and persistent sessions that collect messages while the client is away.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from "mqtt";
import { startBroker, type TestBroker } from "../helpers/broker.ts";

/** Real sockets and processes: more than bun test's 5 s default on a loaded machine. */
const SLOW = { timeout: 30_000 };

type Version = 4 | 5;
interface Received {
  topic: string;
  payload: string;
  packet: IPublishPacket;
}

const live = new Set<MqttClient>();

/** Connect and wait for CONNACK; messages are collected from the first packet on. */
function open(port: number, opts: IClientOptions): Promise<{ c: MqttClient; msgs: Received[]; connack: { sessionPresent: boolean } }> {
  const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, connectTimeout: 3000, keepalive: 30, ...opts });
  live.add(c);
  const msgs: Received[] = [];
  c.on("message", (topic, payload, packet) => msgs.push({ topic, payload: Buffer.from(payload).toString(), packet }));
  return new Promise((resolve, reject) => {
    c.once("connect", (connack) => resolve({ c, msgs, connack }));
    c.once("error", reject);
    c.once("close", () => reject(new Error(`connection of ${opts.clientId} closed before CONNACK`)));
  });
}

async function waitFor<T>(what: string, check: () => T | undefined, ms = 3000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new assert.AssertionError({ message: `timed out waiting for ${what}` });
    await new Promise((r) => setTimeout(r, 10));
  }
}

const count = (msgs: Received[], n: number) => () => (msgs.length >= n ? msgs.slice(0, n) : undefined);

describe("MQTT.js client end to end", () => {
  let b: TestBroker;
  let n = 0;
  const uid = (s: string) => `${s}-${++n}`;
  before(async () => {
    b = await startBroker({ logLevel: "warn" });
  });
  after(async () => {
    for (const c of live) c.end(true);
    await b.close();
  });

  for (const v of [4, 5] as Version[]) {
    const tag = v === 5 ? "5.0" : "3.1.1";

    describe(`MQTT ${tag}`, () => {
      it("subscribe and publish at QoS 0, 1 and 2: every message arrives once, at min(publish, granted) QoS", SLOW, async () => {
        const base = uid("mq");
        const { c: sub, msgs } = await open(b.port, { protocolVersion: v, clientId: uid("sub") });
        const granted = await sub.subscribeAsync({ [`${base}/q2`]: { qos: 2 }, [`${base}/q1`]: { qos: 1 } });
        assert.deepEqual(granted.map((g) => g.qos), [2, 1]);
        const { c: pub } = await open(b.port, { protocolVersion: v, clientId: uid("pub") });
        for (const q of [0, 1, 2] as const) {
          await pub.publishAsync(`${base}/q2`, `a${q}`, { qos: q });
          await pub.publishAsync(`${base}/q1`, `b${q}`, { qos: q });
        }
        const got = await waitFor("6 messages", count(msgs, 6));
        // [MQTT-4.6.0-6] per-topic order; 3.1.1 [MQTT-3.8.4-6] / 5.0 [MQTT-3.8.4-8] downgrade
        const on = (t: string) => got.filter((m) => m.topic === t).map((m) => [m.payload, m.packet.qos]);
        assert.deepEqual(on(`${base}/q2`), [["a0", 0], ["a1", 1], ["a2", 2]]);
        assert.deepEqual(on(`${base}/q1`), [["b0", 0], ["b1", 1], ["b2", 1]]);
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(msgs.length, 6, "no duplicates");
        await pub.endAsync();
        await sub.endAsync();
      });

      it("a retained message is delivered with the retain flag to a later subscriber and can be cleared", SLOW, async () => {
        const t = uid("mqret");
        const { c: pub } = await open(b.port, { protocolVersion: v, clientId: uid("pub") });
        await pub.publishAsync(t, "kept", { qos: 1, retain: true });
        const { c: sub, msgs } = await open(b.port, { protocolVersion: v, clientId: uid("sub") });
        await sub.subscribeAsync(t, { qos: 1 });
        const [m] = await waitFor("retained message", count(msgs, 1));
        // 3.1.1 [MQTT-3.3.1-6]/[MQTT-3.3.1-8] / 5.0 [MQTT-3.3.1-9]
        assert.deepEqual([m.payload, m.packet.retain], ["kept", true]);
        await pub.publishAsync(t, "", { qos: 1, retain: true });
        await waitFor("the clearing message", count(msgs, 2));
        const { c: late, msgs: lateMsgs } = await open(b.port, { protocolVersion: v, clientId: uid("late") });
        await late.subscribeAsync(t, { qos: 1 });
        await new Promise((r) => setTimeout(r, 150));
        // 3.1.1 [MQTT-3.3.1-10] / 5.0 [MQTT-3.3.1-6]
        assert.equal(lateMsgs.length, 0);
        for (const c of [pub, sub, late]) await c.endAsync();
      });

      it("the will is published when the client's socket is destroyed, not after a normal DISCONNECT", SLOW, async () => {
        const t = uid("mqwill");
        const { c: watcher, msgs } = await open(b.port, { protocolVersion: v, clientId: uid("watch") });
        await watcher.subscribeAsync(t, { qos: 1 });
        const will = { topic: t, payload: Buffer.from(`gone-${v}`), qos: 1 as const, retain: false };
        const { c: polite } = await open(b.port, { protocolVersion: v, clientId: uid("polite"), will: { ...will, payload: Buffer.from("polite") } });
        await polite.endAsync(); // DISCONNECT: will discarded
        const { c: dying } = await open(b.port, { protocolVersion: v, clientId: uid("dying"), will });
        dying.stream.destroy(); // no DISCONNECT
        const [m] = await waitFor("the will", count(msgs, 1));
        // 3.1.1 [MQTT-3.1.2-8] published on abnormal close; [MQTT-3.14.4-3] discarded on DISCONNECT
        assert.equal(m.payload, `gone-${v}`);
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(msgs.length, 1);
        await watcher.endAsync();
      });

      it("a persistent session keeps subscriptions and collects QoS 1/2 messages while offline, delivered in order on resume", SLOW, async () => {
        const t = uid("mqpersist");
        const id = uid("persistent");
        const persist: IClientOptions = v === 5
          ? { protocolVersion: 5, clientId: id, clean: false, properties: { sessionExpiryInterval: 300 } }
          : { protocolVersion: 4, clientId: id, clean: false };
        const first = await open(b.port, persist);
        await first.c.subscribeAsync(t, { qos: 2 });
        await first.c.endAsync();
        const { c: pub } = await open(b.port, { protocolVersion: v, clientId: uid("pub") });
        for (let i = 0; i < 5; i++) await pub.publishAsync(t, `m${i}`, { qos: (1 + (i % 2)) as 1 | 2 });
        await pub.publishAsync(t, "qos0-not-queued", { qos: 0 });
        const again = await open(b.port, persist);
        // 3.1.1 [MQTT-3.2.2-2] / 5.0 [MQTT-3.2.2-2]: session present
        assert.equal(again.connack.sessionPresent, true);
        const got = await waitFor("5 queued messages", count(again.msgs, 5));
        // [MQTT-4.5.0-1] added to the session while offline; [MQTT-4.6.0-6] in order per topic
        // and QoS (MQTT.js hands a QoS 2 message to the application only at PUBREL, so the
        // two QoS levels interleave differently than on the wire)
        const ofQos = (q: number) => got.filter((m) => m.packet.qos === q).map((m) => m.payload);
        assert.deepEqual(ofQos(1), ["m0", "m2", "m4"]);
        assert.deepEqual(ofQos(2), ["m1", "m3"]);
        // the subscription survived too: a live message arrives
        await pub.publishAsync(t, "live", { qos: 1 });
        await waitFor("the live message", () => again.msgs.find((m) => m.payload === "live"));
        assert.ok(!again.msgs.some((m) => m.payload === "qos0-not-queued" && m.packet.qos !== 0));
        await again.c.endAsync();
        // a clean reconnect ends the session: nothing present afterwards
        const clean = await open(b.port, { ...persist, clean: true, properties: undefined });
        assert.equal(clean.connack.sessionPresent, false);
        await clean.c.endAsync();
        await pub.endAsync();
      });
    });
  }

  it("MQTT 5: user properties and subscription identifiers travel end to end", SLOW, async () => {
    const t = uid("mq5props");
    const { c: sub, msgs } = await open(b.port, { protocolVersion: 5, clientId: uid("sub") });
    await sub.subscribeAsync(t, { qos: 1, properties: { subscriptionIdentifier: 42 } });
    const { c: pub } = await open(b.port, { protocolVersion: 5, clientId: uid("pub") });
    await pub.publishAsync(t, "p", { qos: 1, properties: { userProperties: { origin: "test" }, contentType: "text/plain" } });
    const [m] = await waitFor("message", count(msgs, 1));
    // [MQTT-3.3.2-17] user properties; [MQTT-3.3.2-20] content type; [MQTT-3.3.4-3] identifier
    assert.equal(m.packet.properties?.userProperties?.origin, "test");
    assert.equal(m.packet.properties?.contentType, "text/plain");
    assert.deepEqual([m.packet.properties?.subscriptionIdentifier].flat(), [42]);
    await pub.endAsync();
    await sub.endAsync();
  });
});
