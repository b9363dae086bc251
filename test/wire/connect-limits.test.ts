/**
 * What a connection may cost before its CONNECT is accepted (issue 9 item 2): the CONNECT
 * deadline counts from accept, however the bytes trickle in (ManualClock: time moves only when
 * the test says so), and a CONNECT has its own small size limit (--max-connect-size, 64 KiB),
 * refused from its fixed header: MQTT 5 with CONNACK 0x95 Packet too large, 3.1/3.1.1 closed
 * without a CONNACK [MQTT-3.1.4-1]. After CONNECT, packets may be as large as --max-packet-size.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { startBroker, type TestBroker, useBroker } from "../helpers/broker.ts";
import { expectSilentClose, frame, str, u16, varint } from "../helpers/frames.ts";
import { connectV4, connectV5, RawClient } from "../helpers/raw-client.ts";
import { ManualClock } from "../../src/clock.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A CONNECT with a will of `pad` bytes and, if given, a password of `password` bytes. */
function bigConnect(v: 3 | 4 | 5, clientId: string, pad: number, password = -1): Uint8Array {
  const body = [...str(v === 3 ? "MQIsdp" : "MQTT"), v, password >= 0 ? 0xc6 : 0x06, ...u16(0)];
  if (v === 5) body.push(0);
  body.push(...str(clientId));
  if (v === 5) body.push(0);
  body.push(...str("cl/will"), ...u16(pad), ...new Array(pad).fill(0x61));
  if (password >= 0) body.push(...str("user"), ...u16(password), ...new Array(password).fill(0x70));
  return frame(0x10, body);
}

describe("wire: the CONNECT deadline is absolute from accept (manual clock)", () => {
  for (const v of [3, 4, 5] as const) {
    const name = v === 3 ? "3.1" : v === 4 ? "3.1.1" : "5.0";
    it(`${name}: a CONNECT trickled one byte every 3 s is closed at 10 s, without a CONNACK`, async () => {
      const clock = new ManualClock();
      const b = await startBroker({ connectTimeoutMs: 10_000 }, { clock });
      try {
        const c = await RawClient.connect(b.port);
        if (v === 5) c.setProtocolVersion(5);
        const connect = bigConnect(v, "cl-trickle", 100);
        for (let i = 0; i < 3; i++) {
          c.send(connect.subarray(i, i + 1));
          await sleep(20); // the byte is read before time moves on
          clock.advance(3_000);
        }
        await sleep(30);
        assert.equal(c.closed, false, "closed before the deadline (9 s of 10)");
        c.send(connect.subarray(3, 4)); // each byte used to push the deadline back
        await sleep(20);
        clock.advance(3_000); // 12 s after accept
        await expectSilentClose(c);
      } finally {
        RawClient.destroyAll();
        await b.close();
      }
    });
  }
});

describe("wire: CONNECT size limit (--max-connect-size, default 64 KiB)", () => {
  let b: TestBroker;
  useBroker((x) => (b = x));

  /** Only the start of a CONNECT announcing `size` bytes of body: the rest never comes. */
  const announce = (v: 3 | 4 | 5, size: number) =>
    Uint8Array.from([0x10, ...varint(size), ...str(v === 3 ? "MQIsdp" : "MQTT"), v, 0x02, ...u16(0)]);

  it("5.0: a CONNECT announcing 70,000 bytes is refused from its header: CONNACK 0x95, then closed", async () => {
    const c = await RawClient.connect(b.port);
    c.setProtocolVersion(5);
    c.send(announce(5, 70_000));
    const ack = await c.expectPacket("connack");
    assert.equal(ack.reasonCode, 0x95);
    await c.waitClose();
  });

  for (const v of [3, 4] as const) {
    it(`${v === 3 ? "3.1" : "3.1.1"}: a CONNECT announcing 70,000 bytes is closed from its header, no CONNACK`, async () => {
      const c = await RawClient.connect(b.port);
      c.send(announce(v, 70_000));
      await expectSilentClose(c);
    });
  }

  it("a CONNECT just under the limit (60 KiB will) is accepted", async () => {
    const c = await RawClient.connect(b.port);
    c.send(bigConnect(4, "cl-60k", 60 * 1024));
    assert.equal((await c.expectPacket("connack")).returnCode, 0);
  });

  it("after CONNECT the packet limit is --max-packet-size: a 200 KB PUBLISH goes through", async () => {
    const { client: sub } = await connectV4(b.port, "cl-big-sub");
    await sub.subscribe("cl/big", { qos: 1 });
    const { client: pub } = await connectV5(b.port, "cl-big-pub");
    const payload = Buffer.alloc(200_000, 0x62);
    await pub.publish("cl/big", payload, { qos: 1 });
    const got = await sub.expectPacket("publish");
    assert.equal(got.payload.length, payload.length);
  });
});

describe("wire: --max-connect-size raised", () => {
  it("a 100 KB CONNECT (60 KB will, 40 KB password) is accepted with maxConnectSize 200,000", async () => {
    const b = await startBroker({ maxConnectSize: 200_000 });
    try {
      const c = await RawClient.connect(b.port);
      c.setProtocolVersion(5);
      c.send(bigConnect(5, "cl-100k", 60_000, 40_000));
      assert.equal((await c.expectPacket("connack")).reasonCode, 0);
      c.sendPacket({ cmd: "pingreq" });
      await c.expectPacket("pingresp");
    } finally {
      RawClient.destroyAll();
      await b.close();
    }
  });
});
