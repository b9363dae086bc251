/**
 * Lingering close (issue 10 item 6): when the broker ends a connection after its last packet
 * (a DISCONNECT with an error, a CONNACK refusal) while the client is still sending, the client
 * must still be able to read that packet. Closing a socket with unread input makes the kernel
 * send a TCP reset, which destroys what the client has not read yet; so the adapters shut down
 * the write side and discard input until the peer closes (or LINGER_MS / LINGER_BYTES).
 *
 * The client is test/helpers/stubborn-client.ts in a Bun process of its own: it sends its burst
 * and reads nothing for a while, as a busy client does; the broker is in-process, behind the
 * adapter of the runtime that runs the test.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import net from "node:net";
import mqtt from "mqtt-packet";
import { startBroker, type TestBroker, useBroker } from "../helpers/broker.ts";
import { runCommand } from "../helpers/system.ts";
import { frame, str, u16 } from "../helpers/frames.ts";
import { LINGER_BYTES, LINGER_MS } from "../../src/transport.ts";

const gen = (p: object, v: 3 | 4 | 5) => Buffer.from(mqtt.generate(p as mqtt.Packet, { protocolVersion: v }));

/** Split bytes into packets (mqtt-packet's parser for the version). */
function packets(bytes: Buffer, v: 3 | 4 | 5): mqtt.Packet[] {
  const out: mqtt.Packet[] = [];
  const p = mqtt.parser({ protocolVersion: v });
  p.on("packet", (x: mqtt.Packet) => out.push(x));
  p.on("error", (e: Error) => assert.fail(`the broker sent bytes that do not parse: ${e.message}`));
  p.parse(bytes);
  return out;
}

/** Runs test/helpers/stubborn-client.ts under Bun; its JSON answer. */
async function stubborn<T>(port: number, mode: string, input: object): Promise<T> {
  const r = await runCommand("node_modules/.bin/bun", ["test/helpers/stubborn-client.ts", String(port), mode, "300"], {
    input: JSON.stringify(input),
    timeoutMs: 20_000,
  });
  assert.equal(r.code, 0, `stubborn-client failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as T;
}

async function slowClient(port: number, mode: "after-connack" | "at-once", first: Buffer, burst: Buffer) {
  const { received, error } = await stubborn<{ received: string; error: string | null }>(port, mode, {
    first: first.toString("hex"),
    burst: burst.toString("hex"),
  });
  return { bytes: Buffer.from(received, "hex"), error };
}

/** About 1.8 MB of QoS 0 PUBLISHes: more than the broker reads before it closes. */
function filler(v: 4 | 5): Buffer {
  const one = gen({ cmd: "publish", topic: "linger/fill", payload: Buffer.alloc(60_000, 0x61), qos: 0, dup: false, retain: false }, v);
  return Buffer.concat(Array.from({ length: 30 }, () => one));
}

describe("wire: lingering close — the last packet reaches a client that is still sending", () => {
  let b: TestBroker;
  useBroker((x) => (b = x), { receiveMaximum: 3 });

  it("5.0 Receive Maximum exceeded mid-burst: the client reads the PUBRECs and DISCONNECT 0x93, no reset [MQTT-3.3.4-7]", async () => {
    const connect = gen({ cmd: "connect", protocolId: "MQTT", protocolVersion: 5, clientId: "linger-rm", clean: true, keepalive: 0 }, 5);
    const qos2 = [1, 2, 3, 4].map((messageId) =>
      gen({ cmd: "publish", topic: "linger/t", payload: Buffer.from("x"), qos: 2, messageId, dup: false, retain: false }, 5)
    );
    const { bytes, error } = await slowClient(b.port, "after-connack", connect, Buffer.concat([...qos2, filler(5)]));
    assert.equal(error, null, "the client got a TCP reset instead of an orderly close");
    const got = packets(bytes, 5);
    assert.deepEqual(got.map((p) => p.cmd), ["pubrec", "pubrec", "pubrec", "disconnect"]);
    assert.equal((got[3] as mqtt.IDisconnectPacket).reasonCode, 0x93);
  });

  it("5.0 CONNACK refusal (Receive Maximum 0 → 0x82) followed by more input: the client reads the CONNACK [MQTT-3.2.2-7]", async () => {
    const connect = gen({ cmd: "connect", protocolId: "MQTT", protocolVersion: 5, clientId: "linger-c5", clean: true, keepalive: 0, properties: { receiveMaximum: 0 } }, 5);
    const { bytes, error } = await slowClient(b.port, "at-once", connect, filler(5));
    assert.equal(error, null, "the client got a TCP reset instead of an orderly close");
    const got = packets(bytes, 5);
    assert.deepEqual(got.map((p) => p.cmd), ["connack"]);
    assert.equal((got[0] as mqtt.IConnackPacket).reasonCode, 0x82);
  });

  for (const v of [3, 4] as const) {
    const name = v === 3 ? "3.1" : "3.1.1";
    it(`${name} CONNACK refusal (empty client id, ${v === 3 ? "3.1 needs one" : "persistent session"} → 0x02) followed by more input: the client reads the CONNACK [MQTT-3.1.3-8]`, async () => {
      // by hand: mqtt-packet will not write an empty client id here
      const connect = Buffer.from(frame(0x10, [...str(v === 3 ? "MQIsdp" : "MQTT"), v, v === 3 ? 0x02 : 0x00, ...u16(0), ...str("")]));
      const { bytes, error } = await slowClient(b.port, "at-once", connect, filler(4));
      assert.equal(error, null, "the client got a TCP reset instead of an orderly close");
      const got = packets(bytes, v);
      assert.deepEqual(got.map((p) => p.cmd), ["connack"]);
      assert.equal((got[0] as mqtt.IConnackPacket).returnCode, 2);
    });
  }
});

describe("wire: lingering close is bounded", () => {
  /** A half-open client (the broker's FIN does not end this side) that sent a non-CONNECT. */
  async function closedByBroker(port: number) {
    const socket = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
    const state: { error?: Error } = {};
    socket.on("error", (e) => (state.error = e));
    socket.on("end", () => {});
    await new Promise((r) => socket.once("connect", r));
    socket.write(Uint8Array.of(0x30, 0x00)); // not a CONNECT: the broker closes [MQTT-3.1.0-1]
    const write = (b: Uint8Array) => new Promise<void>((r) => socket.write(b, () => r()));
    return { socket, state, write };
  }

  it(`in bytes: a client that keeps sending is cut off after about ${LINGER_BYTES} discarded bytes`, async () => {
    const b = await startBroker();
    try {
      // kernel buffers take a few MB more before the reset reaches the client
      const limit = 6 * LINGER_BYTES;
      const { sent, error } = await stubborn<{ sent: number; error: string | null }>(b.port, "flood", {
        first: "3000", // not a CONNECT: the broker closes [MQTT-3.1.0-1]
        limit,
      });
      assert.ok(error !== null, `the broker still reads after ${sent} bytes: the linger is not bounded in bytes`);
    } finally {
      await b.close();
    }
  });

  it(`in time: a client that neither closes nor sends is dropped after ${LINGER_MS} ms`, async () => {
    const b = await startBroker();
    try {
      const { socket, state, write } = await closedByBroker(b.port);
      await new Promise((r) => setTimeout(r, 300));
      await write(Uint8Array.of(0xc0, 0x00));
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(state.error, undefined, "reset while the broker should still linger");
      await new Promise((r) => setTimeout(r, LINGER_MS));
      // the socket is gone on the broker's side: the next bytes are answered with a reset
      for (let i = 0; i < 20 && !state.error; i++) {
        await write(Uint8Array.of(0xc0, 0x00));
        await new Promise((r) => setTimeout(r, 50));
      }
      socket.destroy();
      assert.ok(state.error, `the broker still holds the connection ${LINGER_MS + 1500} ms after closing it`);
    } finally {
      await b.close();
    }
  });
});
