/**
 * MQTT 5 flow control (§4.9, §3.3.4): the broker's Receive Maximum advertised and enforced
 * (one QoS 1/2 PUBLISH too many: DISCONNECT 0x93), and the client's Receive Maximum honoured
 * on everything the broker sends, in order, across reconnects.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { startBroker, type TestBroker, useBroker } from "../helpers/broker.ts";
import { connectV5, type PacketOf, RawClient } from "../helpers/raw-client.ts";
import { MemoryPersistence } from "../../src/persistence/memory.ts";
import type { OutgoingEntry } from "../../src/persistence/persistence.ts";
import { expectBrokerServes, expectDisconnect, expectLogged, rawPublish, text } from "./util.ts";

describe("mqtt5: flow control", () => {
  let b: TestBroker;
  let pub: RawClient;
  before(async () => {
    b = await startBroker({ receiveMaximum: 3 });
    pub = (await connectV5(b.port, "fc-pub", { keepalive: 0 })).client;
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  describe("the broker's Receive Maximum", () => {
    it("is advertised in CONNACK (§3.2.2.3.3)", async () => {
      const { client, connack } = await connectV5(b.port, "fc-connack");
      assert.equal(connack.properties?.receiveMaximum, 3);
      client.disconnect();
    });

    it("one QoS 2 PUBLISH more than it while none is released: DISCONNECT 0x93 [MQTT-3.3.4-7]", async () => {
      const { client } = await connectV5(b.port, "fc-over");
      for (let pid = 1; pid <= 3; pid++) {
        client.send(rawPublish("fc/over", `m${pid}`, { qos: 2, pid }));
        assert.equal((await client.expectPacket("pubrec")).messageId, pid);
      }
      client.send(rawPublish("fc/over", "m4", { qos: 2, pid: 4 }));
      await expectDisconnect(client, 0x93);
      await expectLogged(b, "fc-over", 0x93);
      await expectBrokerServes(b);
    });

    it("PUBREL frees a slot; a re-sent PUBLISH of a held id takes none (§4.9)", async () => {
      const { client } = await connectV5(b.port, "fc-free");
      for (let pid = 1; pid <= 3; pid++) {
        client.send(rawPublish("fc/free", `m${pid}`, { qos: 2, pid }));
        await client.expectPacket("pubrec");
      }
      client.send(rawPublish("fc/free", "m3 again", { qos: 2, pid: 3, dup: true }));
      assert.equal((await client.expectPacket("pubrec")).messageId, 3);
      client.sendPacket({ cmd: "pubrel", messageId: 1 });
      assert.equal((await client.expectPacket("pubcomp")).messageId, 1);
      client.send(rawPublish("fc/free", "m5", { qos: 2, pid: 5 }));
      assert.equal((await client.expectPacket("pubrec")).messageId, 5);
      client.sendPacket({ cmd: "pingreq" });
      await client.expectPacket("pingresp");
    });

    it("QoS 0 is not counted", async () => {
      const { client } = await connectV5(b.port, "fc-q0");
      for (let pid = 1; pid <= 3; pid++) client.send(rawPublish("fc/q0", "held", { qos: 2, pid }));
      for (let i = 0; i < 10; i++) client.send(rawPublish("fc/q0", "free"));
      for (let pid = 1; pid <= 3; pid++) await client.expectPacket("pubrec");
      client.sendPacket({ cmd: "pingreq" });
      await client.expectPacket("pingresp");
    });

    it("the quota is per connection: QoS 2 ids held from the last one do not count [MQTT-4.9.0-1]", async () => {
      const opts = { keepalive: 0, clean: false, properties: { sessionExpiryInterval: 60 } };
      const { client: first } = await connectV5(b.port, "fc-conn", opts);
      for (let pid = 1; pid <= 3; pid++) {
        first.send(rawPublish("fc/conn", `m${pid}`, { qos: 2, pid }));
        await first.expectPacket("pubrec");
      }
      first.destroy();
      await first.waitClose();
      const { client: second, connack } = await connectV5(b.port, "fc-conn", opts);
      assert.equal(connack.sessionPresent, true);
      for (let pid = 11; pid <= 13; pid++) {
        second.send(rawPublish("fc/conn", `n${pid}`, { qos: 2, pid }));
        assert.equal((await second.expectPacket("pubrec")).messageId, pid);
      }
      for (const pid of [1, 2, 3, 11, 12, 13]) {
        second.sendPacket({ cmd: "pubrel", messageId: pid });
        assert.equal((await second.expectPacket("pubcomp")).reasonCode ?? 0, 0);
      }
      second.sendPacket({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
    });
  });

  describe("the client's Receive Maximum", () => {
    const subscriber = async (id: string, topic: string, receiveMaximum: number, extra: Record<string, unknown> = {}) => {
      const { client } = await connectV5(b.port, id, { keepalive: 0, ...extra, properties: { receiveMaximum, ...(extra.properties ?? {}) } });
      await client.subscribe(topic, { qos: 2 });
      return client;
    };

    it("with 2, only 2 unacknowledged QoS 1 PUBLISH arrive; the rest after PUBACKs, in order [MQTT-3.3.4-9] [MQTT-4.9.0-2]", async () => {
      const sub = await subscriber("fc-rm2", "rm2/t", 2);
      for (let i = 1; i <= 6; i++) await pub.publish("rm2/t", `m${i}`, { qos: 1 });
      const first = [await sub.expectPacket("publish"), await sub.expectPacket("publish")];
      assert.deepEqual(first.map(text), ["m1", "m2"]);
      await sub.expectNoPacket(200);
      const got = first.map(text);
      let inflight: PacketOf<"publish">[] = first;
      while (got.length < 6) {
        const done = inflight.shift()!;
        sub.sendPacket({ cmd: "puback", messageId: done.messageId });
        const next = await sub.expectPacket("publish");
        got.push(text(next));
        inflight.push(next);
        assert.ok(inflight.length <= 2);
      }
      assert.deepEqual(got, ["m1", "m2", "m3", "m4", "m5", "m6"]);
      for (const p of inflight) sub.sendPacket({ cmd: "puback", messageId: p.messageId });
      await sub.expectNoPacket(100);
      inflight = [];
    });

    it("QoS 2 holds its slot until PUBCOMP, not PUBREC (§4.9)", async () => {
      const sub = await subscriber("fc-rm-q2", "rmq2/t", 1);
      await pub.publish("rmq2/t", "a", { qos: 2 });
      await pub.publish("rmq2/t", "b", { qos: 2 });
      const a = await sub.expectPacket("publish");
      sub.sendPacket({ cmd: "pubrec", messageId: a.messageId });
      await sub.expectPacket("pubrel");
      await sub.expectNoPacket(150);
      sub.sendPacket({ cmd: "pubcomp", messageId: a.messageId });
      assert.equal(text(await sub.expectPacket("publish")), "b");
    });

    it("a PUBREC with a failure code frees the slot and ends the flow [MQTT-4.4.0-2]", async () => {
      const sub = await subscriber("fc-rm-rec", "rmrec/t", 1);
      await pub.publish("rmrec/t", "a", { qos: 2 });
      await pub.publish("rmrec/t", "b", { qos: 2 });
      const a = await sub.expectPacket("publish");
      sub.sendPacket({ cmd: "pubrec", messageId: a.messageId, reasonCode: 0x80 });
      const next = await sub.expectPacket("publish"); // no PUBREL for a
      assert.equal(text(next), "b");
    });

    it("QoS 0 and every other packet still flow while the quota is zero [MQTT-4.9.0-3] [MQTT-3.3.4-10]", async () => {
      const sub = await subscriber("fc-rm-zero", "rmz/#", 1);
      await pub.publish("rmz/q1", "held", { qos: 1 });
      await pub.publish("rmz/q1", "waits", { qos: 1 });
      const held = await sub.expectPacket("publish");
      await pub.publish("rmz/q0", "free", { qos: 0 });
      const q0 = await sub.expectPacket("publish");
      assert.equal(q0.qos, 0);
      assert.equal(text(q0), "free");
      sub.sendPacket({ cmd: "pingreq" });
      await sub.expectPacket("pingresp");
      const sa = await sub.subscribe("rmz-other/t", { qos: 1 });
      assert.deepEqual(sa.granted, [1]);
      sub.sendPacket({ cmd: "puback", messageId: held.messageId });
      assert.equal(text(await sub.expectPacket("publish")), "waits");
    });

    it("a resumed session re-sends no more than the new connection's Receive Maximum [MQTT-3.3.4-9]", async () => {
      const opts = { clean: false, properties: { sessionExpiryInterval: 60 } };
      const sub = await subscriber("fc-resume", "resume/t", 10, opts);
      for (let i = 1; i <= 4; i++) await pub.publish("resume/t", `m${i}`, { qos: 1 });
      const first: PacketOf<"publish">[] = [];
      for (let i = 0; i < 4; i++) first.push(await sub.expectPacket("publish"));
      sub.destroy();
      await sub.waitClose();
      // m5 must be published once the broker has seen the connection go (else it is sent on
      // the dead connection and, rightly, re-sent with DUP)
      for (let i = 0; i < 200 && b.broker.sessions.get("fc-resume")?.client; i++) await new Promise((r) => setTimeout(r, 5));
      await pub.publish("resume/t", "m5", { qos: 1 });
      const { client: back } = await connectV5(b.port, "fc-resume", {
        keepalive: 0, clean: false, properties: { sessionExpiryInterval: 60, receiveMaximum: 1 },
      });
      const got: PacketOf<"publish">[] = [];
      for (let i = 0; i < 5; i++) {
        const p = await back.expectPacket("publish");
        await back.expectNoPacket(50); // one at a time
        got.push(p);
        back.sendPacket({ cmd: "puback", messageId: p.messageId });
      }
      assert.deepEqual(got.map(text), ["m1", "m2", "m3", "m4", "m5"]);
      assert.deepEqual(got.slice(0, 4).map((p) => [p.dup, p.messageId]), first.map((p) => [true, p.messageId]));
      assert.equal(got[4].dup, false);
      back.sendPacket({ cmd: "disconnect", reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
    });
  });
});

/** Memory persistence whose queue writes for one topic never complete (storage that hangs). */
class StallingPersistence extends MemoryPersistence {
  override enqueue(clientId: string, entries: OutgoingEntry[]): Promise<void> {
    if (entries.some((e) => e.msg.topic === "stall/t")) return new Promise(() => {});
    return super.enqueue(clientId, entries);
  }
}

describe("mqtt5: flow control while acknowledgements wait for storage", () => {
  let b: TestBroker;
  useBroker((x) => (b = x), { receiveMaximum: 2 }, { persistence: new StallingPersistence() });

  it("QoS 1 counts until its PUBACK is sent: a third one gets DISCONNECT 0x93 [MQTT-3.3.4-7]", async () => {
    // a persistent subscriber: each delivery must be stored before the publisher's PUBACK
    const { client: sub } = await connectV5(b.port, "st-sub", { keepalive: 0, properties: { sessionExpiryInterval: 60 } });
    await sub.subscribe("stall/t", { qos: 1 });
    sub.destroy();
    const { client } = await connectV5(b.port, "st-pub");
    client.send(rawPublish("stall/t", "1", { qos: 1, pid: 1 }));
    client.send(rawPublish("stall/t", "2", { qos: 1, pid: 2 }));
    await client.expectNoPacket(100); // no PUBACK: storage has not answered
    client.send(rawPublish("stall/t", "3", { qos: 1, pid: 3 }));
    await expectDisconnect(client, 0x93);
    await expectLogged(b, "st-pub", 0x93);
  });
});
