/**
 * Black-box wire tests: CONNECT / CONNACK for MQTT 3.1 (MQIsdp), 3.1.1 and 5.0 — accepted
 * connections, refusals and their return / reason codes, client identifiers, CONNECT-first,
 * the CONNECT timeout and client id takeover. Raw bytes over real sockets.
 */
import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { startBroker, type TestBroker, until } from "../helpers/broker.ts";
import { expectSilentClose, frame, str, u16 } from "../helpers/frames.ts";
import { connectV3, connectV4, connectV5, RawClient } from "../helpers/raw-client.ts";
import { ManualClock } from "../../src/clock.ts";

// --- hand-made packets (for what mqtt-packet refuses to generate) -------------------------
function connectFrame(o: { name?: string; level?: number; flags?: number; clientId?: string; payload?: number[] }) {
  const level = o.level ?? 4;
  const body = [...str(o.name ?? (level === 3 ? "MQIsdp" : "MQTT")), level, o.flags ?? 0x02, ...u16(60)];
  if (level === 5) body.push(0); // no properties
  body.push(...str(o.clientId ?? "c"), ...(o.payload ?? []));
  return frame(0x10, body);
}

async function expectDisconnect(c: RawClient, code: number): Promise<void> {
  const d = await c.expectPacket("disconnect");
  assert.equal(d.reasonCode, code, `DISCONNECT reason 0x${d.reasonCode?.toString(16)}, expected 0x${code.toString(16)}`);
  await c.waitClose();
}

describe("wire: CONNECT / CONNACK", () => {
  let b: TestBroker;
  before(async () => {
    b = await startBroker();
  });
  afterEach(() => RawClient.destroyAll());
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  describe("accepted connections", () => {
    it("MQTT 3.1 (MQIsdp, level 3) is accepted with return code 0 [MQTT-3.1.4-4]", async () => {
      const { client, connack } = await connectV3(b.port, "v3-ok");
      assert.equal(connack.returnCode, 0);
      client.send(Uint8Array.of(0xc0, 0));
      await client.expectPacket("pingresp");
    });

    it("MQTT 3.1 CONNACK keeps its first byte reserved (0), even when a session is resumed", async () => {
      const first = await connectV3(b.port, "v3-persist", { clean: false });
      first.client.disconnect();
      await first.client.waitClose();
      await until(() => b.broker.sessions.get("v3-persist")?.client === undefined, "the session to be detached");
      const again = await connectV3(b.port, "v3-persist", { clean: false });
      assert.equal(again.connack.returnCode, 0);
      assert.equal(again.connack.sessionPresent, false, "3.1 has no session present flag");
      assert.ok(b.broker.sessions.get("v3-persist")?.client, "the 3.1 session was resumed");
    });

    it("MQTT 3.1.1 (level 4) is accepted, clean session -> session present 0 [MQTT-3.1.4-4] [MQTT-3.2.2-1]", async () => {
      const { client, connack } = await connectV4(b.port, "v4-ok");
      assert.equal(connack.returnCode, 0);
      assert.equal(connack.sessionPresent, false);
      client.send(Uint8Array.of(0xc0, 0));
      await client.expectPacket("pingresp");
    });

    it("MQTT 5.0 (level 5) is accepted with reason 0 and announces the broker's limits", async () => {
      const { connack } = await connectV5(b.port, "v5-ok");
      assert.equal(connack.reasonCode, 0);
      assert.equal(connack.sessionPresent, false);
      assert.equal(connack.properties?.maximumPacketSize, b.broker.config.maxPacketSize);
      assert.equal(connack.properties?.receiveMaximum, b.broker.config.receiveMaximum);
      assert.equal(connack.properties?.assignedClientIdentifier, undefined, "no assigned id when the client gave one");
    });

    it("MQTT 5.0 allows a password without a user name", async () => {
      const c = await RawClient.connect(b.port);
      c.setProtocolVersion(5);
      c.send(connectFrame({ level: 5, flags: 0x42, clientId: "v5-pw", payload: str("secret") }));
      const ack = await c.expectPacket("connack");
      assert.equal(ack.reasonCode, 0);
    });
  });

  describe("CONNECT first, CONNECT once", () => {
    it("first packet PINGREQ, not CONNECT: connection closed without a packet [MQTT-3.1.0-1]", async () => {
      const c = await RawClient.connect(b.port);
      c.send(Uint8Array.of(0xc0, 0));
      await expectSilentClose(c);
    });

    it("first packet PUBLISH, not CONNECT: connection closed, nothing routed [MQTT-3.1.0-1]", async () => {
      const { client: sub } = await connectV4(b.port, "first-pub-watch");
      await sub.subscribe("first/pub", { qos: 0 });
      const c = await RawClient.connect(b.port);
      c.send(frame(0x30, [...str("first/pub"), ...new TextEncoder().encode("x")]));
      await expectSilentClose(c);
      await sub.expectNoPacket(150);
    });

    it("second CONNECT on 3.1.1: connection closed [MQTT-3.1.0-2]", async () => {
      const { client } = await connectV4(b.port, "second-v4");
      client.sendPacket({ cmd: "connect", clientId: "second-v4", protocolVersion: 4, clean: true, keepalive: 60 });
      await expectSilentClose(client);
    });

    it("second CONNECT on 5.0: DISCONNECT 0x82 (protocol error), then closed [MQTT-3.1.0-2]", async () => {
      const { client } = await connectV5(b.port, "second-v5");
      client.sendPacket({ cmd: "connect", clientId: "second-v5", protocolVersion: 5, clean: true, keepalive: 60 });
      await expectDisconnect(client, 0x82);
    });

    it("CONNECT twice in one write (5.0): CONNACK for the first, DISCONNECT 0x82 for the second [MQTT-3.1.0-2]", async () => {
      const c = await RawClient.connect(b.port);
      c.setProtocolVersion(5);
      const one = connectFrame({ level: 5, clientId: "second-same-write" });
      c.send(Uint8Array.from([...one, ...one]));
      const ack = await c.expectPacket("connack");
      assert.equal(ack.reasonCode, 0);
      await expectDisconnect(c, 0x82);
    });

    it("a refused CONNECT: nothing sent after it is processed [MQTT-3.1.4-5]", async () => {
      const { client: sub } = await connectV4(b.port, "refused-watch");
      await sub.subscribe("refused/after", { qos: 0 });
      const c = await RawClient.connect(b.port);
      const publish = frame(0x30, [...str("refused/after"), 0x41]);
      c.send(Uint8Array.from([...connectFrame({ level: 6, clientId: "refused" }), ...publish]));
      const ack = await c.expectPacket("connack");
      assert.equal(ack.returnCode, 0x01);
      await c.waitClose();
      await sub.expectNoPacket(150);
    });
  });

  describe("protocol name and level", () => {
    it("unsupported level 6: CONNACK 0x01 (unacceptable protocol version), then closed [MQTT-3.1.2-2]", async () => {
      const c = await RawClient.connect(b.port);
      c.send(connectFrame({ level: 6, clientId: "lvl6" }));
      const ack = await c.expectPacket("connack");
      assert.equal(ack.returnCode, 0x01);
      assert.equal(ack.sessionPresent, false); // [MQTT-3.2.2-4]
      await c.waitClose();
    });

    it("level 4 with protocol name MQIsdp: refused with 0x01 and closed [MQTT-3.1.2-1]", async () => {
      const c = await RawClient.connect(b.port);
      c.send(connectFrame({ level: 4, name: "MQIsdp", clientId: "name-mismatch-4" }));
      const ack = await c.expectPacket("connack");
      assert.equal(ack.returnCode, 0x01);
      await c.waitClose();
    });

    it("level 3 with protocol name MQTT: refused with 0x01 and closed [MQTT-3.1.2-1]", async () => {
      const c = await RawClient.connect(b.port);
      c.send(connectFrame({ level: 3, name: "MQTT", clientId: "name-mismatch-3" }));
      const ack = await c.expectPacket("connack");
      assert.equal(ack.returnCode, 0x01);
      await c.waitClose();
    });

    it("level 5 with protocol name MQIsdp: CONNACK 0x84 (unsupported protocol version), closed [MQTT-3.1.2-1]", async () => {
      const c = await RawClient.connect(b.port);
      c.setProtocolVersion(5);
      c.send(connectFrame({ level: 5, name: "MQIsdp", clientId: "name-mismatch-5" }));
      const ack = await c.expectPacket("connack");
      assert.equal(ack.reasonCode, 0x84);
      await c.waitClose();
    });

    it("an unknown protocol name (MQTX): closed, never accepted [MQTT-3.1.2-1]", async () => {
      const c = await RawClient.connect(b.port);
      c.send(connectFrame({ level: 4, name: "MQTX", clientId: "mqtx" }));
      await c.waitClose();
      for (const f of c.unread) {
        assert.ok(f.packet?.cmd === "connack" && f.packet.returnCode !== 0, "only a refusal may come back");
      }
    });
  });

  describe("connect flags", () => {
    it("3.1.1 reserved flag bit 0 set: closed without CONNACK [MQTT-3.1.2-3]", async () => {
      const c = await RawClient.connect(b.port);
      c.send(connectFrame({ level: 4, flags: 0x03, clientId: "reserved-4" }));
      await expectSilentClose(c);
    });

    it("5.0 reserved flag bit 0 set: malformed, CONNACK 0x81 then closed [MQTT-3.1.2-3]", async () => {
      const c = await RawClient.connect(b.port);
      c.setProtocolVersion(5);
      c.send(connectFrame({ level: 5, flags: 0x03, clientId: "reserved-5" }));
      const ack = await c.expectPacket("connack");
      assert.equal(ack.reasonCode, 0x81);
      await c.waitClose();
    });

    it("3.1.1 password flag without user name flag: closed without CONNACK [MQTT-3.1.2-22]", async () => {
      const c = await RawClient.connect(b.port);
      // flags: password (0x40) + clean (0x02), no user name; payload: client id, password
      c.send(connectFrame({ level: 4, flags: 0x42, clientId: "pw-only", payload: str("secret") }));
      await expectSilentClose(c);
    });

    it("3.1.1 will QoS set without the will flag: closed [MQTT-3.1.2-13]", async () => {
      const c = await RawClient.connect(b.port);
      c.send(connectFrame({ level: 4, flags: 0x0a, clientId: "willqos-nowill" }));
      await expectSilentClose(c);
    });
  });

  describe("client identifiers", () => {
    it("3.1.1 empty id + clean session: accepted with a unique generated id [MQTT-3.1.3-6]", async () => {
      const a = await connectV4(b.port, "");
      const c = await connectV4(b.port, "");
      assert.equal(a.connack.returnCode, 0);
      assert.equal(c.connack.returnCode, 0);
      // both stay connected: the ids differ (the same id would take the first one over)
      await a.client.subscribe("anon/t", { qos: 0 });
      await c.client.publish("anon/t", "hello");
      const got = await a.client.expectPacket("publish");
      assert.equal(Buffer.from(got.payload).toString(), "hello");
      assert.equal(a.client.closed, false);
      assert.equal(c.client.closed, false);
    });

    it("5.0 empty id: CONNACK carries a unique Assigned Client Identifier [MQTT-3.2.2-16]", async () => {
      const a = await connectV5(b.port, "");
      const c = await connectV5(b.port, "");
      assert.equal(a.connack.reasonCode, 0);
      const idA = a.connack.properties?.assignedClientIdentifier;
      const idC = c.connack.properties?.assignedClientIdentifier;
      assert.ok(typeof idA === "string" && idA.length > 0, "assigned client identifier missing");
      assert.ok(typeof idC === "string" && idC.length > 0, "assigned client identifier missing");
      assert.notEqual(idA, idC);
      assert.ok(b.broker.sessions.has(idA), "the session is known under the assigned id");
    });

    it("3.1.1 empty id + persistent session: CONNACK 0x02 (identifier rejected), closed [MQTT-3.1.3-8]", async () => {
      const c = await RawClient.connect(b.port);
      c.send(connectFrame({ level: 4, flags: 0x00, clientId: "" }));
      const ack = await c.expectPacket("connack");
      assert.equal(ack.returnCode, 0x02);
      assert.equal(ack.sessionPresent, false); // [MQTT-3.2.2-4]
      await c.waitClose(); // [MQTT-3.2.2-5]
    });

    it("3.1 (MQIsdp) empty id: CONNACK 0x02 (identifier rejected), closed", async () => {
      const c = await RawClient.connect(b.port);
      c.setProtocolVersion(3);
      c.send(connectFrame({ level: 3, flags: 0x02, clientId: "" }));
      const ack = await c.expectPacket("connack");
      assert.equal(ack.returnCode, 0x02);
      await c.waitClose();
    });
  });

  describe("same client id twice", () => {
    it("3.1.1: the new connection wins, the old one is closed [MQTT-3.1.4-2]", async () => {
      const first = await connectV4(b.port, "dup-v4");
      const second = await connectV4(b.port, "dup-v4");
      assert.equal(second.connack.returnCode, 0);
      await first.client.waitClose();
      assert.equal(first.client.unread.length, 0, "3.1.1 has no DISCONNECT from the server");
      second.client.send(Uint8Array.of(0xc0, 0));
      await second.client.expectPacket("pingresp");
    });

    it("5.0: the old connection gets DISCONNECT 0x8E (session taken over) before the close [MQTT-3.1.4-3]", async () => {
      const first = await connectV5(b.port, "dup-v5");
      const second = await connectV5(b.port, "dup-v5");
      assert.equal(second.connack.reasonCode, 0);
      await expectDisconnect(first.client, 0x8e);
      assert.equal(second.client.closed, false);
    });

    it("a CONNECT that is refused does not disconnect the client already using the id", async () => {
      const first = await connectV4(b.port, "dup-refused");
      const c = await RawClient.connect(b.port);
      // same id, but a will topic with a wildcard (not a valid topic name): the CONNECT is refused
      const will = [...str("will/#"), ...str("x")];
      c.send(connectFrame({ level: 4, flags: 0x06, clientId: "dup-refused", payload: will }));
      await c.waitClose();
      assert.ok(c.unread.every((f) => f.packet?.cmd === "connack" && f.packet.returnCode !== 0));
      first.client.send(Uint8Array.of(0xc0, 0));
      await first.client.expectPacket("pingresp");
      assert.equal(first.client.closed, false);
    });

    it("a 3.1.1 connection taken over by a 5.0 one (and back)", async () => {
      const first = await connectV4(b.port, "dup-mixed");
      const second = await connectV5(b.port, "dup-mixed");
      assert.equal(second.connack.reasonCode, 0);
      await expectSilentClose(first.client);
      const third = await connectV4(b.port, "dup-mixed");
      assert.equal(third.connack.returnCode, 0);
      await expectDisconnect(second.client, 0x8e);
    });
  });
});

describe("wire: CONNECT timeout (manual clock)", () => {
  it("no CONNECT within connectTimeoutMs: closed; before that: kept open", async () => {
    const clock = new ManualClock();
    const b = await startBroker({ connectTimeoutMs: 5000 }, { clock });
    try {
      const before = b.broker.clients.size;
      const c = await RawClient.connect(b.port);
      await until(() => b.broker.clients.size > before, "the broker to accept the socket");
      clock.advance(4000);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(c.closed, false, "closed before the CONNECT timeout");
      clock.advance(1500);
      await expectSilentClose(c);
    } finally {
      RawClient.destroyAll();
      await b.close();
    }
  });

  it("half a CONNECT, then silence: closed at the CONNECT timeout", async () => {
    const clock = new ManualClock();
    const b = await startBroker({ connectTimeoutMs: 5000 }, { clock });
    try {
      const before = b.broker.clients.size;
      const c = await RawClient.connect(b.port);
      c.send(connectFrame({ level: 4, clientId: "half" }).subarray(0, 8));
      await until(() => b.broker.clients.size > before, "the broker to accept the socket");
      await new Promise((r) => setTimeout(r, 20));
      clock.advance(4000);
      await new Promise((r) => setTimeout(r, 30));
      assert.equal(c.closed, false, "closed before the CONNECT timeout");
      clock.advance(1500);
      await expectSilentClose(c);
    } finally {
      RawClient.destroyAll();
      await b.close();
    }
  });

  it("a CONNECT in time: the CONNECT timeout no longer applies", async () => {
    const clock = new ManualClock();
    const b = await startBroker({ connectTimeoutMs: 5000 }, { clock });
    try {
      const { client, connack } = await connectV4(b.port, "in-time", { keepalive: 0 });
      assert.equal(connack.returnCode, 0);
      clock.advance(60_000);
      client.send(Uint8Array.of(0xc0, 0));
      await client.expectPacket("pingresp");
    } finally {
      RawClient.destroyAll();
      await b.close();
    }
  });
});
