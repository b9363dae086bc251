/**
 * The Debian mosquitto_pub / mosquitto_sub binaries as real clients against the in-process
 * broker: QoS 0/1/2 with MQTT 3.1.1 and 5.0, retained messages (-r), wildcards, binary
 * payloads (-s) and persistent sessions (-c).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { startBroker, type TestBroker } from "../helpers/broker.ts";
import { ensureBinary, mosquittoPub, mosquittoSub } from "../helpers/system.ts";

/** Real sockets and processes: more than bun test's 5 s default on a loaded machine. */
const SLOW = { timeout: 30_000 };

describe("mosquitto_pub / mosquitto_sub end to end", () => {
  let b: TestBroker;
  let n = 0;
  const uid = (s: string) => `${s}-${++n}`;
  before(async () => {
    await ensureBinary("mosquitto_pub", "mosquitto-clients");
    await ensureBinary("mosquitto_sub", "mosquitto-clients");
    b = await startBroker({ logLevel: "warn" });
  });
  after(async () => {
    await b.close();
  });

  for (const v5 of [false, true]) {
    const tag = v5 ? "mqttv5" : "mqttv311";
    for (const qos of [0, 1, 2] as const) {
      it(`-V ${tag}: publish and subscribe at QoS ${qos}`, SLOW, async () => {
        const t = uid(`mos/${tag}/q${qos}`);
        const sub = mosquittoSub(b.port, t, { count: 2, qos, v5, timeoutMs: 5000 });
        await sub.ready;
        await mosquittoPub(b.port, t, "first", { qos, v5 });
        await mosquittoPub(b.port, t, "second", { qos: 2, v5 });
        const msgs = await sub;
        // delivered at min(publish QoS, subscription QoS): 3.1.1 [MQTT-3.8.4-6] / 5.0 [MQTT-3.8.4-8]
        assert.deepEqual(msgs.map((m) => [m.topic, m.payload, m.qos, m.retain]), [
          [t, "first", qos, false],
          [t, "second", qos, false],
        ]);
      });
    }

    it(`-V ${tag}: a retained message (-r) reaches a later subscriber with the retain flag, and -n -r clears it`, SLOW, async () => {
      const t = uid(`mos/${tag}/ret`);
      await mosquittoPub(b.port, t, "retained-value", { qos: 1, retain: true, v5 });
      const [m] = await mosquittoSub(b.port, t, { count: 1, qos: 1, v5 });
      // 3.1.1 [MQTT-3.3.1-6]/[MQTT-3.3.1-8] / 5.0 [MQTT-3.3.1-9]
      assert.deepEqual([m.payload, m.retain, m.qos], ["retained-value", true, 1]);
      await mosquittoPub(b.port, t, "", { qos: 1, retain: true, v5 });
      // 3.1.1 [MQTT-3.3.1-10] / 5.0 [MQTT-3.3.1-6]: nothing left for a new subscriber
      const none = mosquittoSub(b.port, t, { qos: 1, v5, timeoutMs: 800 });
      assert.deepEqual(await none, []);
    });

    it(`-V ${tag}: wildcard subscriptions '+' and '#'`, SLOW, async () => {
      const base = uid(`mos-${tag}-wild`);
      const sub = mosquittoSub(b.port, [`${base}/+/temp`, `${base}/alarm/#`], { count: 3, qos: 1, v5 });
      await sub.ready;
      for (const t of [`${base}/kitchen/temp`, `${base}/kitchen/humidity`, `${base}/alarm`, `${base}/alarm/door/front`]) {
        await mosquittoPub(b.port, t, t, { qos: 1, v5 });
      }
      const msgs = await sub;
      // '#' includes the parent, '+' is one level: 3.1.1 [MQTT-4.7.1-2]/[MQTT-4.7.1-3], 5.0 [MQTT-4.7.1-1]/[MQTT-4.7.1-2]
      assert.deepEqual(msgs.map((m) => m.topic), [`${base}/kitchen/temp`, `${base}/alarm`, `${base}/alarm/door/front`]);
    });
  }

  it("a binary payload (-s from stdin) arrives byte for byte", SLOW, async () => {
    const t = uid("mos/bin");
    const bytes = Uint8Array.from({ length: 70_000 }, (_, i) => (i * 31 + 7) & 255);
    const sub = mosquittoSub(b.port, t, { count: 1, qos: 1 });
    await sub.ready;
    await mosquittoPub(b.port, t, bytes, { qos: 1 });
    const [m] = await sub;
    assert.ok(Buffer.from(m.bytes).equals(Buffer.from(bytes)), `received ${m.bytes.length} bytes, sent ${bytes.length}`);
  });

  it("a persistent session (-c) gets the QoS 1 messages published while it was away", SLOW, async () => {
    const t = uid("mos/persist");
    const id = uid("mos-persist");
    // first connection creates the session and its subscription; it is stopped right after SUBACK
    const first = mosquittoSub(b.port, t, { qos: 1, clientId: id, extraArgs: ["-c"], timeoutMs: 3000 });
    await first.ready;
    await first.stop();
    await mosquittoPub(b.port, t, "while-away-1", { qos: 1 });
    await mosquittoPub(b.port, t, "while-away-2", { qos: 1 });
    const back = await mosquittoSub(b.port, t, { count: 2, qos: 1, clientId: id, extraArgs: ["-c"] });
    // [MQTT-4.5.0-1] stored in the session while offline, delivered in order on reconnect
    assert.deepEqual(back.map((m) => m.payload), ["while-away-1", "while-away-2"]);
  });
});
