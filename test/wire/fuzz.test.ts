/**
 * Mutated packets from many connections never crash the broker or disturb a bystander: a
 * seeded, bounded fuzz run (valid packets of every type with bytes flipped, truncated or
 * spliced) against the in-process broker, then the bystander still gets a publish.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqtt from "mqtt-packet";
import { type TestBroker, useBroker } from "../helpers/broker.ts";
import { connectV4, RawClient } from "../helpers/raw-client.ts";

/** Deterministic PRNG (mulberry32) so a failure can be replayed. */
function rng(seed: number) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function samples(v: 4 | 5): Uint8Array[] {
  const props5 = v === 5;
  const g = (p: object) => new Uint8Array(mqtt.generate(p as mqtt.Packet, { protocolVersion: v }));
  return [
    g({ cmd: "subscribe", messageId: 3, subscriptions: [{ topic: "fz/+", qos: 1 }], ...(props5 ? { properties: { subscriptionIdentifier: 4 } } : {}) }),
    g({ cmd: "unsubscribe", messageId: 4, unsubscriptions: ["fz/+"] }),
    g({ cmd: "publish", topic: "fz/a", payload: Buffer.from("hello"), qos: 1, messageId: 9, retain: true, dup: false, ...(props5 ? { properties: { userProperties: { k: "v" }, messageExpiryInterval: 5, topicAlias: 1 } } : {}) }),
    g({ cmd: "publish", topic: "fz/b", payload: Buffer.from("x"), qos: 2, messageId: 10, retain: false, dup: false }),
    g({ cmd: "pubrel", messageId: 10 }),
    g({ cmd: "puback", messageId: 1 }),
    g({ cmd: "pingreq" }),
    g({ cmd: "disconnect", ...(props5 ? { reasonCode: 4, properties: { sessionExpiryInterval: 0 } } : {}) }),
  ];
}

function mutate(b: Uint8Array, r: () => number): Uint8Array {
  const out = Uint8Array.from(b);
  const kind = Math.floor(r() * 4);
  if (kind === 0) {
    for (let i = 0; i < 1 + Math.floor(r() * 3); i++) out[Math.floor(r() * out.length)] = Math.floor(r() * 256);
    return out;
  }
  if (kind === 1) return out.subarray(0, Math.max(1, Math.floor(r() * out.length)));
  if (kind === 2) {
    const extra = Uint8Array.from({ length: 1 + Math.floor(r() * 8) }, () => Math.floor(r() * 256));
    return Uint8Array.from([...out, ...extra]);
  }
  out[1] = Math.floor(r() * 256); // remaining length
  return out;
}

describe("fuzz: mutated packets", () => {
  let b: TestBroker;
  useBroker((x) => (b = x), { maxPacketSize: 4096, topicAliasMaximum: 4 });

  for (const v of [4, 5] as const) {
    it(`MQTT ${v === 5 ? "5.0" : "3.1.1"}: 300 connections of mutated traffic; the broker and a bystander carry on`, { timeout: 30_000 }, async () => {
      const r = rng(v * 7919);
      const { client: bystander } = await connectV4(b.port, `fz-bystander-${v}`);
      await bystander.subscribe("fz/ok", { qos: 0 });
      const base = samples(v);
      const connect = new Uint8Array(mqtt.generate({ cmd: "connect", clientId: "", protocolVersion: v, protocolId: "MQTT", clean: true, keepalive: 30 } as mqtt.Packet, { protocolVersion: v }));
      for (let round = 0; round < 30; round++) {
        const clients = await Promise.all(Array.from({ length: 10 }, () => RawClient.connect(b.port)));
        for (const c of clients) {
          // a valid or a mutated CONNECT, then a burst of valid and mutated packets
          c.send(r() < 0.8 ? connect : mutate(connect, r));
          for (let i = 0; i < 6; i++) {
            const p = base[Math.floor(r() * base.length)];
            c.send(r() < 0.5 ? p : mutate(p, r));
          }
        }
        await new Promise((res) => setTimeout(res, 5));
        for (const c of clients) c.destroy();
      }
      const { client: pub } = await connectV4(b.port, `fz-pub-${v}`);
      pub.sendPacket({ cmd: "publish", topic: "fz/ok", payload: Buffer.from("still"), qos: 0, dup: false, retain: false });
      const got = await bystander.waitForPacket("publish", (p) => p.topic === "fz/ok", 3000);
      assert.equal(Buffer.from(got.payload).toString(), "still");
      pub.destroy();
      bystander.destroy();
    });
  }
});
