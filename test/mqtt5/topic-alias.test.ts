/**
 * MQTT 5 Topic Aliases (§3.3.2.3.4), both directions: client-to-server aliases up to the Topic
 * Alias Maximum the broker advertised (0 or above it: DISCONNECT 0x94; in range but never
 * mapped on this connection: 0x82), server-to-client aliases within the client's own maximum
 * so a repeated topic costs two bytes, and mappings that live and die with one connection.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { type TestBroker, useBroker } from "../helpers/broker.ts";
import { connectV4, connectV5, type Frame, type PacketOf, RawClient } from "../helpers/raw-client.ts";
import { expectBrokerServes, expectDisconnect, expectLogged, prop, rawPublish, text } from "./util.ts";

/** The next PUBLISH frame: decoded packet and exact bytes. */
async function nextPublish(c: RawClient): Promise<{ p: PacketOf<"publish">; bytes: Uint8Array }> {
  const f: Frame = await c.nextFrame();
  assert.equal(f.packet?.cmd, "publish", `expected a publish, got ${f.packet?.cmd ?? f.error?.message}`);
  return { p: f.packet as PacketOf<"publish">, bytes: f.bytes };
}

/** Topic length field of a PUBLISH frame whose remaining length fits in one byte. */
const topicLength = (bytes: Uint8Array) => (bytes[2] << 8) | bytes[3];

describe("mqtt5: topic aliases", () => {
  let b: TestBroker;
  useBroker((x) => (b = x), { topicAliasMaximum: 3 });

  it("CONNACK advertises the configured Topic Alias Maximum (§3.2.2.3.8)", async () => {
    const { client, connack } = await connectV5(b.port, "ta-connack");
    assert.equal(connack.properties?.topicAliasMaximum, 3);
    client.disconnect();
  });

  describe("client to server", () => {
    it("aliases 1..max are accepted; an empty topic with a known alias means its topic [MQTT-3.3.2-12]", async () => {
      const { client: sub } = await connectV5(b.port, "ta-in-sub", { keepalive: 0 });
      await sub.subscribe("in/#");
      const { client } = await connectV5(b.port, "ta-in-pub", { keepalive: 0 });
      client.send(rawPublish("in/one", "a", { props: prop.topicAlias(1) }));
      client.send(rawPublish("", "b", { props: prop.topicAlias(1) }));
      client.send(rawPublish("in/three", "c", { props: prop.topicAlias(3) }));
      client.send(rawPublish("", "d", { props: prop.topicAlias(3) }));
      // a topic with a known alias changes the mapping (§3.3.2.3.4)
      client.send(rawPublish("in/other", "e", { props: prop.topicAlias(1) }));
      client.send(rawPublish("", "f", { qos: 1, pid: 5, props: prop.topicAlias(1) }));
      const ack = await client.expectPacket("puback");
      assert.equal(ack.messageId, 5);
      const got: string[] = [];
      for (let i = 0; i < 6; i++) {
        const p = await sub.waitForPacket("publish");
        got.push(`${p.topic}=${text(p)}`);
      }
      assert.deepEqual(got, ["in/one=a", "in/one=b", "in/three=c", "in/three=d", "in/other=e", "in/other=f"]);
    });

    it("an alias above the advertised maximum: DISCONNECT 0x94 [MQTT-3.3.2-9] [MQTT-3.2.2-17]", async () => {
      const { client } = await connectV5(b.port, "ta-over");
      client.send(rawPublish("x/y", "z", { props: prop.topicAlias(4) }));
      await expectDisconnect(client, 0x94);
      await expectLogged(b, "ta-over", 0x94);
      await expectBrokerServes(b);
    });

    it("alias 0: DISCONNECT 0x94 [MQTT-3.3.2-8]", async () => {
      const { client } = await connectV5(b.port, "ta-zero");
      client.send(rawPublish("x/y", "z", { props: prop.topicAlias(0) }));
      await expectDisconnect(client, 0x94);
      await expectLogged(b, "ta-zero", 0x94);
    });

    it("an alias in range but never set on this connection: DISCONNECT 0x82 protocol error [MQTT-3.3.2-7] §3.3.4", async () => {
      const { client } = await connectV5(b.port, "ta-unknown");
      client.send(rawPublish("", "z", { qos: 1, pid: 1, props: prop.topicAlias(2) }));
      await expectDisconnect(client, 0x82);
      await expectLogged(b, "ta-unknown", 0x82);
    });

    it("an empty topic and no alias: DISCONNECT 0x82 (§3.3.2.1)", async () => {
      const { client } = await connectV5(b.port, "ta-empty");
      client.send(rawPublish("", "z"));
      await expectDisconnect(client, 0x82);
      await expectLogged(b, "ta-empty", 0x82);
    });

    it("mappings do not carry over to the next connection [MQTT-3.3.2-7]", async () => {
      const opts = { keepalive: 0, clean: false, properties: { sessionExpiryInterval: 60 } };
      const { client: first } = await connectV5(b.port, "ta-carry", opts);
      first.send(rawPublish("carry/t", "1", { qos: 1, pid: 1, props: prop.topicAlias(2) }));
      await first.expectPacket("puback");
      first.disconnect();
      await first.waitClose();
      const { client: second, connack } = await connectV5(b.port, "ta-carry", opts);
      assert.equal(connack.sessionPresent, true, "same session, new connection");
      second.send(rawPublish("", "2", { qos: 1, pid: 2, props: prop.topicAlias(2) }));
      await expectDisconnect(second, 0x82); // an alias with no mapping on this connection
    });
  });

  describe("server to client", () => {
    it("a repeated topic costs two bytes: empty topic name + alias [MQTT-3.1.2-26]", async () => {
      const { client: sub } = await connectV5(b.port, "ta-out-sub", { keepalive: 0, properties: { topicAliasMaximum: 2 } });
      await sub.subscribe("out/#", { qos: 1 });
      const { client: pub } = await connectV5(b.port, "ta-out-pub", { keepalive: 0 });
      for (const t of ["out/aaaa", "out/aaaa", "out/bb", "out/c", "out/c", "out/aaaa"]) await pub.publish(t, "v", { qos: 1 });
      const seen: Array<{ topic: string; alias?: number; tlen: number; size: number }> = [];
      for (let i = 0; i < 6; i++) {
        const { p, bytes } = await nextPublish(sub);
        sub.sendPacket({ cmd: "puback", messageId: p.messageId });
        seen.push({ topic: p.topic, alias: p.properties?.topicAlias, tlen: topicLength(bytes), size: bytes.length });
      }
      assert.deepEqual(seen.map((s) => [s.topic, s.alias, s.tlen]), [
        ["out/aaaa", 1, 8], // first use sets the mapping
        ["", 1, 0], // then the topic is left out
        ["out/bb", 2, 6],
        ["out/c", undefined, 5], // client's maximum is 2: no alias above it
        ["out/c", undefined, 5],
        ["", 1, 0],
      ]);
      assert.equal(seen[0].size - seen[1].size, 8, "the second PUBLISH is shorter by the topic");
    });

    it("no alias at all when the client gave no Topic Alias Maximum [MQTT-3.1.2-27]", async () => {
      const { client: sub } = await connectV5(b.port, "ta-none-sub", { keepalive: 0 });
      await sub.subscribe("none/t");
      const { client: pub } = await connectV5(b.port, "ta-none-pub", { keepalive: 0 });
      await pub.publish("none/t", "1");
      await pub.publish("none/t", "2");
      for (const v of ["1", "2"]) {
        const { p } = await nextPublish(sub);
        assert.equal(p.topic, "none/t");
        assert.equal(p.properties?.topicAlias, undefined);
        assert.equal(text(p), v);
      }
    });

    it("one message fanned out to alias and plain clients: each gets its own wire form", async () => {
      const { client: a } = await connectV5(b.port, "ta-mix-a", { keepalive: 0, properties: { topicAliasMaximum: 5 } });
      const { client: p5 } = await connectV5(b.port, "ta-mix-5", { keepalive: 0 });
      const { client: v4 } = await connectV4(b.port, "ta-mix-4", { keepalive: 0 });
      for (const c of [a, p5, v4]) await c.subscribe("mix/t", { qos: 1 });
      const { client: pub } = await connectV5(b.port, "ta-mix-pub", { keepalive: 0 });
      await pub.publish("mix/t", "one", { qos: 1 });
      await pub.publish("mix/t", "two", { qos: 1 });
      const fa = [await nextPublish(a), await nextPublish(a)];
      assert.deepEqual(fa.map((f) => [f.p.topic, f.p.properties?.topicAlias]), [["mix/t", 1], ["", 1]]);
      for (const c of [p5, v4]) {
        for (const v of ["one", "two"]) {
          const { p } = await nextPublish(c);
          assert.equal(p.topic, "mix/t");
          assert.equal(p.properties?.topicAlias, undefined);
          assert.equal(text(p), v);
        }
      }
    });

    it("an alias is only used once the client has seen the PUBLISH that set it [MQTT-3.1.2-25]", async () => {
      const { client: sub } = await connectV5(b.port, "ta-drop-sub", {
        keepalive: 0, properties: { topicAliasMaximum: 4, maximumPacketSize: 64 },
      });
      await sub.subscribe("drop/t");
      const { client: pub } = await connectV5(b.port, "ta-drop-pub", { keepalive: 0 });
      await pub.publish("drop/t", "x".repeat(200)); // too large for sub: not sent to it
      await pub.publish("drop/t", "small");
      const { p } = await nextPublish(sub);
      assert.equal(p.topic, "drop/t", "the first PUBLISH it receives carries the topic");
      assert.equal(p.properties?.topicAlias, 1);
      assert.equal(text(p), "small");
    });

    it("aliases start afresh on a new connection [MQTT-3.3.2-7]", async () => {
      const opts = { keepalive: 0, clean: false, properties: { sessionExpiryInterval: 60, topicAliasMaximum: 2 } };
      const { client: s1 } = await connectV5(b.port, "ta-fresh", opts);
      await s1.subscribe("fresh/t");
      const { client: pub } = await connectV5(b.port, "ta-fresh-pub", { keepalive: 0 });
      await pub.publish("fresh/t", "1");
      assert.equal((await nextPublish(s1)).p.properties?.topicAlias, 1);
      s1.disconnect();
      await s1.waitClose();
      const { client: s2 } = await connectV5(b.port, "ta-fresh", opts);
      await pub.publish("fresh/t", "2");
      const { p } = await nextPublish(s2);
      assert.equal(p.topic, "fresh/t", "the mapping is set again on this connection");
      assert.equal(p.properties?.topicAlias, 1);
    });
  });
});

describe("mqtt5: topic aliases disabled (topicAliasMaximum 0)", () => {
  let b: TestBroker;
  useBroker((x) => (b = x), { topicAliasMaximum: 0 });

  it("CONNACK says 0 and any alias gets DISCONNECT 0x94 [MQTT-3.2.2-18]", async () => {
    const { client, connack } = await connectV5(b.port, "ta-off");
    assert.equal(connack.properties?.topicAliasMaximum ?? 0, 0);
    client.send(rawPublish("a/b", "c", { props: prop.topicAlias(1) }));
    await expectDisconnect(client, 0x94);
    await expectLogged(b, "ta-off", 0x94);
    await expectBrokerServes(b);
  });
});
