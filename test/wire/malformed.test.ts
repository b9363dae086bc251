/**
 * Black-box wire tests: malformed, oversized and forbidden input. Each case closes THAT
 * connection only — MQTT 5 first gets a DISCONNECT with the reason code (0x81 malformed,
 * 0x82 protocol error, 0x90 topic name invalid, 0x95 packet too large), or a CONNACK with
 * it when the bad packet is the CONNECT itself; 3.1.1 is just closed [MQTT-4.8.0-1] — and
 * after each one, a client connected before keeps receiving and a new client can still
 * connect and publish.
 */
import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { startBroker, type TestBroker } from "../helpers/broker.ts";
import { bytes, expectSilentClose, frame, str, u16, varint } from "../helpers/frames.ts";
import { connectV4, connectV5, RawClient } from "../helpers/raw-client.ts";

const MAX_PACKET = 1024;

// --- hand-made packets ----------------------------------------------------------------------

/** PUBLISH with any first byte, raw topic bytes, optional packet id; 5.0 adds empty properties. */
function publishFrame(v: 4 | 5, first: number, topic: string | number[], pid?: number, payload = "x") {
  const body = [...str(topic)];
  if (pid !== undefined) body.push(...u16(pid));
  if (v === 5) body.push(0);
  body.push(...bytes(payload));
  return frame(first, body);
}

function connectFrame(v: 4 | 5, clientId: string, payloadPad = 0) {
  // will flag + clean session, with a will payload of payloadPad bytes to make it big
  const body = [...str("MQTT"), v, 0x06, ...u16(0)];
  if (v === 5) body.push(0);
  body.push(...str(clientId));
  if (v === 5) body.push(0); // will properties
  body.push(...str("mal/will"), ...u16(payloadPad), ...new Array(payloadPad).fill(0x61));
  return frame(0x10, body);
}

async function expectDisconnect(c: RawClient, ...codes: number[]): Promise<number> {
  const d = await c.expectPacket("disconnect");
  const rc = d.reasonCode ?? 0;
  assert.ok(codes.includes(rc), `DISCONNECT reason 0x${rc.toString(16)}, expected ${codes.map((x) => "0x" + x.toString(16)).join(" or ")}`);
  await c.waitClose();
  return rc;
}

describe("wire: malformed and oversized input", () => {
  let b: TestBroker;
  let bystander: RawClient;
  let n = 0;
  before(async () => {
    b = await startBroker({ maxPacketSize: MAX_PACKET });
    bystander = (await connectV4(b.port, "mal-bystander", { keepalive: 0 })).client;
    await bystander.subscribe("mal/ok", { qos: 1 });
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  /** Only the offending connection went: an earlier client still gets messages, a new one connects. */
  afterEach(async () => {
    assert.equal(bystander.closed, false, "the bystander connection was closed too");
    const label = `still working ${++n}`;
    const { client: pub, connack } = await connectV5(b.port, `mal-pub-${n}`, { keepalive: 0 });
    assert.equal(connack.reasonCode, 0, "a new client cannot connect any more");
    const ack = await pub.publish("mal/ok", label, { qos: 1 });
    assert.equal(ack?.cmd, "puback");
    const got = await bystander.expectPacket("publish");
    assert.equal(Buffer.from(got.payload).toString(), label);
    bystander.sendPacket({ cmd: "puback", messageId: got.messageId });
    pub.destroy();
  });

  async function v5(): Promise<RawClient> {
    const { client, connack } = await connectV5(b.port, `mal-v5-${n}`, { keepalive: 0 });
    assert.equal(connack.reasonCode, 0);
    return client;
  }
  async function v4(): Promise<RawClient> {
    const { client, connack } = await connectV4(b.port, `mal-v4-${n}`, { keepalive: 0 });
    assert.equal(connack.returnCode, 0);
    return client;
  }

  describe("before CONNECT", () => {
    it("garbage bytes (an HTTP request): closed without a packet [MQTT-3.1.0-1]", async () => {
      const c = await RawClient.connect(b.port);
      c.send(Uint8Array.from(bytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n")));
      await expectSilentClose(c);
    });

    it("remaining length longer than 4 bytes: closed without a packet", async () => {
      const c = await RawClient.connect(b.port);
      c.send(Uint8Array.of(0x10, 0xff, 0xff, 0xff, 0xff, 0x7f));
      await expectSilentClose(c);
    });

    it("5.0 CONNECT larger than the maximum packet size: CONNACK 0x95, then closed", async () => {
      const c = await RawClient.connect(b.port);
      c.setProtocolVersion(5);
      c.send(connectFrame(5, "mal-big-connect-5", MAX_PACKET));
      const ack = await c.expectPacket("connack");
      assert.equal(ack.reasonCode, 0x95);
      await c.waitClose();
    });

    it("3.1.1 CONNECT larger than the maximum packet size: closed without CONNACK [MQTT-3.2.2-6]", async () => {
      const c = await RawClient.connect(b.port);
      c.send(connectFrame(4, "mal-big-connect-4", MAX_PACKET));
      await expectSilentClose(c);
    });
  });

  describe("one connection's bad CONNECT does not disturb the decoding of others", () => {
    it("a CONNECT rejected midway by the parser (protocol name MQTX), then others still decode", async () => {
      const bad = await RawClient.connect(b.port);
      const body = [...str("MQTX"), 4, 0x02, ...u16(0), ...str("mal-mqtx")];
      bad.send(frame(0x10, body));
      await expectSilentClose(bad);
      // a non-PUBLISH packet from an existing connection goes through the same decoder
      const suback = await bystander.subscribe("mal/other", { qos: 1 });
      assert.deepEqual(suback.granted, [1]);
    });
  });

  describe("garbage and framing after CONNECT", () => {
    it("5.0 reserved packet type 0: DISCONNECT 0x81 (malformed) [MQTT-4.13.1-1]", async () => {
      const c = await v5();
      c.send(Uint8Array.of(0x00, 0x00));
      await expectDisconnect(c, 0x81);
    });

    it("3.1.1 reserved packet type 0: closed [MQTT-4.8.0-1]", async () => {
      const c = await v4();
      c.send(Uint8Array.of(0x00, 0x00));
      await expectSilentClose(c);
    });

    it("5.0 remaining length longer than 4 bytes: DISCONNECT 0x81", async () => {
      const c = await v5();
      c.send(Uint8Array.of(0x30, 0x80, 0x80, 0x80, 0x80, 0x01));
      await expectDisconnect(c, 0x81);
    });

    it("3.1.1 remaining length longer than 4 bytes: closed", async () => {
      const c = await v4();
      c.send(Uint8Array.of(0x30, 0x80, 0x80, 0x80, 0x80, 0x01));
      await expectSilentClose(c);
    });

    it("5.0 packet with a body shorter than its fields (SUBSCRIBE cut in the topic): DISCONNECT 0x81", async () => {
      const c = await v5();
      c.send(frame(0x82, [...u16(1), 0, 0x00, 0x10, 0x61])); // topic length 16, one byte present
      await expectDisconnect(c, 0x81);
    });

    it("5.0 SUBSCRIBE with wrong fixed-header flags: DISCONNECT 0x81 [MQTT-3.8.1-1]", async () => {
      const c = await v5();
      c.send(frame(0x80, [...u16(1), 0, ...str("mal/x"), 0x01]));
      await expectDisconnect(c, 0x81);
    });

    it("5.0 a server-only packet (CONNACK) from the client: DISCONNECT 0x82 (protocol error)", async () => {
      const c = await v5();
      c.send(Uint8Array.of(0x20, 0x03, 0x00, 0x00, 0x00));
      await expectDisconnect(c, 0x82);
    });
  });

  describe("oversized packets after CONNECT", () => {
    it("5.0 PUBLISH larger than the maximum packet size: DISCONNECT 0x95, not routed", async () => {
      const c = await v5();
      c.send(publishFrame(5, 0x30, "mal/ok", undefined, "y".repeat(MAX_PACKET)));
      await expectDisconnect(c, 0x95);
      // the afterEach check sees the bystander's next publish first: the big one was not routed
    });

    it("5.0 refused from the fixed header alone (declares 10 MB, sends 5 bytes): DISCONNECT 0x95", async () => {
      const c = await v5();
      c.send(Uint8Array.from([0x30, ...varint(10 * 1024 * 1024)]));
      await expectDisconnect(c, 0x95);
    });

    it("3.1.1 PUBLISH larger than the maximum packet size: closed", async () => {
      const c = await v4();
      c.send(publishFrame(4, 0x30, "mal/ok", undefined, "y".repeat(MAX_PACKET)));
      await expectSilentClose(c);
    });
  });

  describe("PUBLISH rules", () => {
    it("5.0 QoS 3: DISCONNECT 0x81 [MQTT-3.3.1-4]", async () => {
      const c = await v5();
      c.send(publishFrame(5, 0x36, "mal/ok", 1));
      await expectDisconnect(c, 0x81);
    });

    it("3.1.1 QoS 3: closed [MQTT-3.3.1-4]", async () => {
      const c = await v4();
      c.send(publishFrame(4, 0x36, "mal/ok", 1));
      await expectSilentClose(c);
    });

    it("5.0 topic that is not valid UTF-8: DISCONNECT 0x81 [MQTT-1.5.4-1]", async () => {
      const c = await v5();
      c.send(publishFrame(5, 0x30, [0x6d, 0xff, 0xfe, 0x6b]));
      await expectDisconnect(c, 0x81);
    });

    it("3.1.1 topic that is not valid UTF-8: closed [MQTT-1.5.3-1]", async () => {
      const c = await v4();
      c.send(publishFrame(4, 0x30, [0x6d, 0xc3, 0x28]));
      await expectSilentClose(c);
    });

    it("5.0 topic containing U+0000: DISCONNECT 0x81 [MQTT-1.5.4-2]", async () => {
      const c = await v5();
      c.send(publishFrame(5, 0x30, [0x6d, 0x00, 0x6b]));
      await expectDisconnect(c, 0x81);
    });

    it("5.0 topic with a wildcard: DISCONNECT 0x90 (topic name invalid) [MQTT-3.3.2-2]", async () => {
      const c = await v5();
      c.send(publishFrame(5, 0x30, "mal/+/x"));
      await expectDisconnect(c, 0x90);
    });

    it("3.1.1 topic with a wildcard: closed [MQTT-3.3.2-2]", async () => {
      const c = await v4();
      c.send(publishFrame(4, 0x30, "mal/#"));
      await expectSilentClose(c);
    });

    it("5.0 QoS 1 PUBLISH with packet id 0: closed with 0x81 or 0x82 [MQTT-2.2.1-3]", async () => {
      const c = await v5();
      c.send(publishFrame(5, 0x32, "mal/ok", 0));
      await expectDisconnect(c, 0x81, 0x82);
    });

    it("3.1.1 QoS 1 PUBLISH with packet id 0: closed [MQTT-2.3.1-1]", async () => {
      const c = await v4();
      c.send(publishFrame(4, 0x32, "mal/ok", 0));
      await expectSilentClose(c);
    });

    it("3.1.1 DUP set on a QoS 0 PUBLISH: closed [MQTT-3.3.1-2]", async () => {
      const c = await v4();
      c.send(publishFrame(4, 0x38, "mal/ok"));
      await expectSilentClose(c);
    });
  });

  describe("SUBSCRIBE / UNSUBSCRIBE rules", () => {
    it("5.0 SUBSCRIBE with no topic filter: DISCONNECT 0x82 (protocol error) [MQTT-3.8.3-2]", async () => {
      const c = await v5();
      c.send(frame(0x82, [...u16(7), 0]));
      await expectDisconnect(c, 0x82);
    });

    it("3.1.1 SUBSCRIBE with no topic filter: closed [MQTT-3.8.3-3]", async () => {
      const c = await v4();
      c.send(frame(0x82, u16(7)));
      await expectSilentClose(c);
    });

    it("5.0 UNSUBSCRIBE with no topic filter: DISCONNECT 0x82 [MQTT-3.10.3-2]", async () => {
      const c = await v5();
      c.send(frame(0xa2, [...u16(8), 0]));
      await expectDisconnect(c, 0x82);
    });

    it("5.0 SUBSCRIBE with packet id 0: closed with 0x81 or 0x82, no SUBACK [MQTT-2.2.1-3]", async () => {
      const c = await v5();
      c.send(frame(0x82, [...u16(0), 0, ...str("mal/sub0"), 0x01]));
      await expectDisconnect(c, 0x81, 0x82);
    });

    it("3.1.1 SUBSCRIBE with packet id 0: closed, no SUBACK [MQTT-2.3.1-1]", async () => {
      const c = await v4();
      c.send(frame(0x82, [...u16(0), ...str("mal/sub0"), 0x01]));
      await expectSilentClose(c);
    });

    it("3.1.1 UNSUBSCRIBE with packet id 0: closed, no UNSUBACK [MQTT-2.3.1-1]", async () => {
      const c = await v4();
      c.send(frame(0xa2, [...u16(0), ...str("mal/sub0")]));
      await expectSilentClose(c);
    });

    it("3.1.1 SUBSCRIBE requesting QoS 3: closed [MQTT-3.8.3-4]", async () => {
      const c = await v4();
      c.send(frame(0x82, [...u16(9), ...str("mal/q3"), 0x03]));
      await expectSilentClose(c);
    });
  });

  describe("bookkeeping", () => {
    it("protocol errors are counted and logged with the reason", async () => {
      const before = b.broker.stats.protocolErrors;
      const c = await v5();
      c.send(publishFrame(5, 0x36, "mal/ok", 1));
      await expectDisconnect(c, 0x81);
      assert.equal(b.broker.stats.protocolErrors, before + 1);
      assert.ok(b.logs.some((l) => l.includes("closing connection") && l.includes("0x81")), "no log line for the close");
    });
  });
});

describe("input held while a request is pending is bounded", () => {
  it("a client flooding during a slow SUBSCRIBE is cut off (MQTT 5: 0x97), others unaffected", async () => {
    // a store whose subscription writes never finish keeps the SUBSCRIBE pending
    const { MemoryPersistence } = await import("../../src/persistence/memory.ts");
    const store = new MemoryPersistence();
    store.putSubscriptions = () => new Promise<void>(() => {});
    const b = await startBroker({ maxPacketSize: 1024 }, { persistence: store });
    try {
      const { client: other } = await connectV4(b.port, "flood-other");
      await other.subscribe("flood/ok", { qos: 0 });
      const { client } = await connectV5(b.port, "flood-c", { clean: false, properties: { sessionExpiryInterval: 60 } });
      client.sendPacket({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "flood/#", qos: 0 }] });
      const chunk = new Uint8Array(16 * 1024).fill(0xc0); // PINGREQ bytes, never parsed while paused
      for (let i = 0; i < 12; i++) client.send(chunk);
      const d = await client.expectPacket("disconnect", 3000);
      assert.equal(d.reasonCode, 0x97);
      await client.waitClose();
      const { client: pub } = await connectV4(b.port, "flood-pub");
      pub.sendPacket({ cmd: "publish", topic: "flood/ok", payload: Buffer.from("fine"), qos: 0, dup: false, retain: false });
      assert.equal(Buffer.from((await other.expectPacket("publish")).payload).toString(), "fine");
    } finally {
      RawClient.destroyAll();
      await b.close();
    }
  });
});
