/**
 * Strict conformance beyond malformed input (issue 10; malformed packets are in
 * malformed-corpus.test.ts): the shortest forms of acknowledgements and DISCONNECT on the wire,
 * no DISCONNECT ever to a 3.1/3.1.1 client, the MQTT 3.1 DUP flag on PUBREL / SUBSCRIBE /
 * UNSUBSCRIBE, a Payload Format Indicator forwarded as sent, a 5.0 password without a user name.
 * Raw bytes in and out.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { startBroker, type TestBroker, useBroker } from "../helpers/broker.ts";
import { expectSilentClose, frame, str, u16 } from "../helpers/frames.ts";
import { connectV3, connectV4, connectV5, type PacketCmd, payloadText, RawClient } from "../helpers/raw-client.ts";
import { prop, rawPublish } from "../mqtt5/util.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex").replace(/(..)(?!$)/g, "$1 ");

/** The exact bytes of the next packet of type `cmd` (others before it are dropped). */
async function nextBytes(c: RawClient, cmd: PacketCmd): Promise<string> {
  for (;;) {
    const f = await c.nextFrame();
    if (f.packet?.cmd === cmd) return hex(f.bytes);
  }
}

describe("wire: shortest forms (issue 10 item 5)", () => {
  let b: TestBroker;
  useBroker((x) => (b = x));
  const noProblemInfo = { keepalive: 0, properties: { requestProblemInformation: false } };

  it("5.0 PUBACK 0x00 without properties: Remaining Length 2 (§3.4.2.1)", async () => {
    const { client: sub } = await connectV5(b.port, "sf-sub");
    await sub.subscribe("sf/a", { qos: 1 });
    const { client } = await connectV5(b.port, "sf-puback");
    client.send(rawPublish("sf/a", "x", { qos: 1, pid: 0x0102 }));
    assert.equal(await nextBytes(client, "puback"), "40 02 01 02");
  });

  it("5.0 PUBACK 0x10 (no subscribers) without properties: no Property Length (§3.4.2.2.1)", async () => {
    const { client } = await connectV5(b.port, "sf-puback-10");
    client.send(rawPublish("sf/nobody", "x", { qos: 1, pid: 5 }));
    assert.equal(await nextBytes(client, "puback"), "40 03 00 05 10");
  });

  it("5.0 PUBREC 0x10 then PUBCOMP 0x00: Remaining Length 3, then 2 (§3.5.2.1, §3.7.2.1)", async () => {
    const { client } = await connectV5(b.port, "sf-qos2");
    client.send(rawPublish("sf/nobody", "x", { qos: 2, pid: 6 }));
    assert.equal(await nextBytes(client, "pubrec"), "50 03 00 06 10");
    client.send(Uint8Array.of(0x62, 2, 0, 6));
    assert.equal(await nextBytes(client, "pubcomp"), "70 02 00 06");
  });

  it("5.0 PUBCOMP 0x92 for an unknown PUBREL, PUBREL 0x92 for an unknown PUBREC: Remaining Length 3", async () => {
    const { client } = await connectV5(b.port, "sf-92");
    client.send(Uint8Array.of(0x62, 2, 0, 77));
    assert.equal(await nextBytes(client, "pubcomp"), "70 03 00 4d 92");
    client.send(Uint8Array.of(0x50, 2, 0, 78));
    assert.equal(await nextBytes(client, "pubrel"), "62 03 00 4e 92");
  });

  it("5.0 PUBREL 0x00 to a QoS 2 subscriber: Remaining Length 2 (§3.6.2.1)", async () => {
    const { client: sub } = await connectV5(b.port, "sf-q2-sub");
    await sub.subscribe("sf/q2", { qos: 2 });
    const { client: pub } = await connectV5(b.port, "sf-q2-pub");
    await pub.publish("sf/q2", "x", { qos: 2 });
    const p = await sub.expectPacket("publish");
    sub.send(Uint8Array.of(0x50, 2, p.messageId! >> 8, p.messageId! & 255));
    assert.equal(await nextBytes(sub, "pubrel"), hex(Uint8Array.of(0x62, 2, p.messageId! >> 8, p.messageId! & 255)));
  });

  it("5.0 PUBACK 0x99 to a client that asked for no problem information: no Reason String, no Property Length", async () => {
    const { client } = await connectV5(b.port, "sf-99", noProblemInfo);
    client.send(rawPublish("sf/a", Uint8Array.of(0xff), { qos: 1, pid: 9, props: prop.payloadFormat(1) }));
    assert.equal(await nextBytes(client, "puback"), "40 03 00 09 99");
  });

  it("5.0 DISCONNECT 0x8E without properties: Remaining Length 1 (§3.14.2.2.1)", async () => {
    const { client: old } = await connectV5(b.port, "sf-takeover", noProblemInfo);
    await connectV5(b.port, "sf-takeover");
    assert.equal(await nextBytes(old, "disconnect"), "e0 01 8e");
    await old.waitClose();
  });

  for (const v of [3, 4] as const) {
    it(`${v === 3 ? "3.1" : "3.1.1"} PUBACK, PUBREC, PUBCOMP: Remaining Length 2`, async () => {
      const { client } = await (v === 3 ? connectV3 : connectV4)(b.port, `sf-v${v}`);
      client.send(frame(0x32, [...str("sf/a"), ...u16(3), 0x78]));
      assert.equal(await nextBytes(client, "puback"), "40 02 00 03");
      client.send(frame(0x34, [...str("sf/a"), ...u16(4), 0x78]));
      assert.equal(await nextBytes(client, "pubrec"), "50 02 00 04");
      client.send(Uint8Array.of(0x62, 2, 0, 4));
      assert.equal(await nextBytes(client, "pubcomp"), "70 02 00 04");
    });
  }
});

describe("wire: no DISCONNECT to 3.1 / 3.1.1 clients, it is client-to-server only (issue 10 item 4)", () => {
  let b: TestBroker;
  useBroker((x) => (b = x));

  for (const v of [3, 4] as const) {
    const name = v === 3 ? "3.1" : "3.1.1";
    const connect = v === 3 ? connectV3 : connectV4;

    it(`${name}: a CONNACK from the client closes the connection without a packet [MQTT-4.8.0-1]`, async () => {
      const { client } = await connect(b.port, `nd-connack-${v}`);
      client.send(Uint8Array.of(0x20, 2, 0, 0));
      await expectSilentClose(client);
    });

    it(`${name}: taken over by a new connection with the same client id: closed without a packet`, async () => {
      const { client: old } = await connect(b.port, `nd-take-${v}`);
      await connect(b.port, `nd-take-${v}`);
      await expectSilentClose(old);
    });

    it(`${name}: a packet too large after CONNECT: closed without a packet`, async () => {
      const small = await startBroker({ maxPacketSize: 256 });
      try {
        const { client } = await connect(small.port, `nd-big-${v}`);
        client.send(frame(0x30, [...str("nd/t"), ...new Array(300).fill(0x61)]));
        await expectSilentClose(client);
      } finally {
        await small.close();
      }
    });
  }

  it("3.1.1: the server shutting down closes without a packet (5.0 gets 0x8B)", async () => {
    const own = await startBroker();
    const { client: v4 } = await connectV4(own.port, "nd-shutdown-4");
    const { client: v5 } = await connectV5(own.port, "nd-shutdown-5");
    await own.close();
    await expectSilentClose(v4);
    assert.equal((await v5.expectPacket("disconnect")).reasonCode, 0x8b);
  });
});

describe("wire: MQTT 3.1 clients may set DUP on PUBREL, SUBSCRIBE, UNSUBSCRIBE (issue 10 item 8)", () => {
  let b: TestBroker;
  useBroker((x) => (b = x));

  it("3.1 PUBREL 0x6A (DUP) is answered with PUBCOMP, the message delivered once", async () => {
    const { client: sub } = await connectV4(b.port, "dup31-sub");
    await sub.subscribe("dup31/t", { qos: 2 });
    const { client } = await connectV3(b.port, "dup31-pub");
    client.send(frame(0x34, [...str("dup31/t"), ...u16(5), 0x78]));
    assert.equal(await nextBytes(client, "pubrec"), "50 02 00 05");
    client.send(Uint8Array.of(0x6a, 2, 0, 5)); // a re-sent PUBREL, as 3.1 clients do
    assert.equal(await nextBytes(client, "pubcomp"), "70 02 00 05");
    const p = await sub.expectPacket("publish");
    assert.equal(payloadText(p), "x");
    sub.sendPacket({ cmd: "pubrec", messageId: p.messageId });
    await sub.expectPacket("pubrel");
    sub.sendPacket({ cmd: "pubcomp", messageId: p.messageId });
    await sub.expectNoPacket(100);
  });

  it("3.1 SUBSCRIBE 0x8A and UNSUBSCRIBE 0xAA are answered", async () => {
    const { client } = await connectV3(b.port, "dup31-sub2");
    client.send(frame(0x8a, [...u16(7), ...str("dup31/s"), 1]));
    assert.equal(await nextBytes(client, "suback"), "90 03 00 07 01");
    client.send(frame(0xaa, [...u16(8), ...str("dup31/s")]));
    assert.equal(await nextBytes(client, "unsuback"), "b0 02 00 08");
  });
  // 3.1.1 and 5.0 keep the strict flags: see the corpus (PUBREL/SUBSCRIBE/UNSUBSCRIBE with DUP)
});

describe("wire: property values of the right type are kept (issue 10 item 9)", () => {
  let b: TestBroker;
  useBroker((x) => (b = x));

  /** The Payload Format Indicator byte in a PUBLISH frame, or undefined. */
  function pfi(frameBytes: Uint8Array): number | undefined {
    let p = 1;
    while (frameBytes[p] & 128) p++;
    p++;
    const qos = (frameBytes[0] >> 1) & 3;
    p += 2 + ((frameBytes[p] << 8) | frameBytes[p + 1]) + (qos > 0 ? 2 : 0);
    const end = p + 1 + frameBytes[p]; // property length < 128 here
    for (p++; p < end;) {
      const id = frameBytes[p++];
      if (id === 0x01) return frameBytes[p];
      if (id === 0x02) p += 4;
      else if (id === 0x23) p += 2;
      else if (id === 0x0b) p += 1;
      else p += 2 + ((frameBytes[p] << 8) | frameBytes[p + 1]); // strings
    }
    return undefined;
  }

  async function nextPublishFrame(c: RawClient): Promise<Uint8Array> {
    for (;;) {
      const f = await c.nextFrame();
      if (f.packet?.cmd === "publish") return f.bytes;
    }
  }

  it("Payload Format Indicator 56 is forwarded unchanged, the payload not judged (§3.3.2.3.2)", async () => {
    const { client: sub } = await connectV5(b.port, "pfi-sub");
    await sub.subscribe("pfi/t", { qos: 1 });
    const { client: pub } = await connectV5(b.port, "pfi-pub");
    pub.send(rawPublish("pfi/t", Uint8Array.of(0xff, 0xfe), { qos: 1, pid: 3, props: prop.payloadFormat(56) }));
    assert.equal(await nextBytes(pub, "puback"), "40 02 00 03");
    assert.equal(pfi(await nextPublishFrame(sub)), 56);
  });

  it("Payload Format Indicator 56 in a will is forwarded unchanged too", async () => {
    const { client: sub } = await connectV5(b.port, "pfi-will-sub");
    await sub.subscribe("pfi/will", { qos: 0 });
    const body = [...str("MQTT"), 5, 0x06, ...u16(0), 0, ...str("pfi-will-2"), 2, 0x01, 56, ...str("pfi/will"), ...str("gone")];
    const raw = await RawClient.connect(b.port);
    raw.setProtocolVersion(5);
    raw.send(frame(0x10, body));
    assert.equal((await raw.expectPacket("connack")).reasonCode, 0);
    raw.destroy();
    assert.equal(pfi(await nextPublishFrame(sub)), 56);
  });

  it("5.0: a password without a user name is allowed (§3.1.2.9), unlike 3.1.1 [MQTT-3.1.2-22]", async () => {
    const c = await RawClient.connect(b.port);
    c.setProtocolVersion(5);
    c.send(frame(0x10, [...str("MQTT"), 5, 0x42, ...u16(0), 0, ...str("pw-only"), ...str("secret")]));
    assert.equal((await c.expectPacket("connack")).reasonCode, 0);
  });
});
