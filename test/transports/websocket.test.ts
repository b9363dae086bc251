/**
 * MQTT over WebSocket (ws://, wss://) on the runtime's adapter (Bun.serve under bun test,
 * Deno.serve + Deno.upgradeWebSocket under deno test): MQTT.js as a real client over ws and wss,
 * and a raw WebSocket client for the framing rules of MQTT over WebSocket (MQTT 5.0 §6 /
 * 3.1.1 §6): packets split across frames and several packets in one frame, fragmented
 * messages, text frames refused, the subprotocol, the HTTP answers to anything that is not an
 * MQTT upgrade, and a subscriber that stops reading (bufferedAmount / drain).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fs from "node:fs";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { isBun, startBroker, type TestBroker } from "../helpers/broker.ts";
import { makePki, type Pki } from "../helpers/certs.ts";
import { httpRequest, OP, WsClient } from "../helpers/ws-client.ts";
import { mosquittoPub } from "../helpers/system.ts";
import type { Packet } from "mqtt-packet";

const SLOW = { timeout: 30_000 };
const live = new Set<MqttClient>();

function mqttjs(url: string, opts: IClientOptions): Promise<MqttClient> {
  const c = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 4000, ...opts });
  live.add(c);
  return new Promise((resolve, reject) => {
    c.once("connect", () => resolve(c));
    c.once("error", reject);
    c.once("close", () => reject(new Error(`${url}: closed before CONNACK`)));
  });
}

function nextMessage(c: MqttClient): Promise<{ topic: string; payload: string; qos: number }> {
  return new Promise((resolve) => c.once("message", (topic, payload, p) => resolve({ topic, payload: Buffer.from(payload).toString(), qos: p.qos })));
}

const connect = (clientId: string, protocolVersion: 4 | 5 = 4): Packet =>
  ({ cmd: "connect", clientId, protocolId: "MQTT", protocolVersion, clean: true, keepalive: 30 }) as Packet;

describe("MQTT over WebSocket (ws://, wss://)", () => {
  let pki: Pki;
  let b: TestBroker;
  let n = 0;
  const uid = (s: string) => `${s}-${++n}`;

  before(async () => {
    pki = await makePki();
    b = await startBroker({
      logLevel: "warn",
      maxOutputBuffer: 64 * 1024,
      certfile: pki.server.cert,
      keyfile: pki.server.key,
      listen: ["ws://127.0.0.1:0/mqtt", "wss://127.0.0.1:0/mqtt"],
    });
  });
  after(async () => {
    for (const c of live) c.end(true);
    WsClient.destroyAll();
    await b?.close();
    pki?.remove();
  });

  for (const v of [4, 5] as const) {
    it(`MQTT.js over ws:// (protocol ${v}): subscribe, publish at QoS 1, receive; a mosquitto_pub over TCP reaches it too`, SLOW, async () => {
      const t = uid(`ws/v${v}`);
      const c = await mqttjs(b.url("ws"), { protocolVersion: v });
      await c.subscribeAsync(t, { qos: 1 });
      let got = nextMessage(c);
      await c.publishAsync(t, "over-ws", { qos: 1 });
      assert.deepEqual(await got, { topic: t, payload: "over-ws", qos: 1 });
      got = nextMessage(c);
      await mosquittoPub(b.port, t, "from-tcp", { qos: 1 });
      assert.deepEqual(await got, { topic: t, payload: "from-tcp", qos: 1 });
      c.end(true);
    });
  }

  it("MQTT.js over wss:// trusting only the test CA: QoS 2 round trip", SLOW, async () => {
    const t = uid("wss/rt");
    const c = await mqttjs(b.url("wss"), { protocolVersion: 5, ca: fs.readFileSync(pki.ca, "utf8"), rejectUnauthorized: true });
    await c.subscribeAsync(t, { qos: 2 });
    const got = nextMessage(c);
    await c.publishAsync(t, "over-wss", { qos: 2 });
    assert.deepEqual(await got, { topic: t, payload: "over-wss", qos: 2 });
    c.end(true);
  });

  it(`wss:// with --require-certificate: a client certificate from the CA is required${isBun ? " (Bun.serve)" : "; its identity is the user name (Deno: node:tls listener)"}`, SLOW, async () => {
    // Bun.serve verifies the certificate but does not show it: use-identity-as-username only under Deno
    const config = {
      logLevel: "warn" as const, certfile: pki.server.cert, keyfile: pki.server.key, cafile: pki.ca,
      listen: [`wss://127.0.0.1:0/mqtt?require-certificate=true${isBun ? "" : "&use-identity-as-username=true"}`],
    };
    const m = await startBroker(config);
    try {
      const ca = fs.readFileSync(pki.ca, "utf8");
      const c = await mqttjs(m.url("wss"), {
        clientId: "wss-mtls", username: "claimed-name",
        ca, cert: fs.readFileSync(pki.client.cert, "utf8"), key: fs.readFileSync(pki.client.key, "utf8"), rejectUnauthorized: true,
      });
      assert.ok(c.connected);
      if (!isBun) {
        const live = [...m.broker.clients].find((x) => x.clientId === "wss-mtls");
        assert.equal(live?.conn.identity, "device-42");
        assert.equal(live?.username, "device-42", "the certificate's identity replaces the CONNECT's user name");
      }
      c.end(true);
      await assert.rejects(mqttjs(m.url("wss"), { ca, rejectUnauthorized: true }));
      await assert.rejects(mqttjs(m.url("wss"), {
        ca, cert: fs.readFileSync(pki.rogueClient.cert, "utf8"), key: fs.readFileSync(pki.rogueClient.key, "utf8"),
      }));
    } finally {
      await m.close();
    }
  });

  it("MQTT.js as an MQTT 3.1 client (MQIsdp, subprotocol mqttv3.1)", SLOW, async () => {
    const t = uid("ws/v3");
    const c = await mqttjs(b.url("ws"), { protocolVersion: 3, protocolId: "MQIsdp" });
    await c.subscribeAsync(t, { qos: 1 });
    const got = nextMessage(c);
    await c.publishAsync(t, "mqtt-3.1", { qos: 1 });
    assert.equal((await got).payload, "mqtt-3.1");
    c.end(true);
  });

  it("the server selects the subprotocol mqtt [MQTT-6.0.0-4]; mqttv3.1 only when the client offers nothing else", SLOW, async () => {
    assert.equal((await WsClient.connect(b.url("ws"), { protocols: ["mqttv3.1", "mqtt"] })).protocol, "mqtt");
    assert.equal((await WsClient.connect(b.url("ws"), { protocols: ["mqttv3.1"] })).protocol, "mqttv3.1");
    WsClient.destroyAll();
  });

  it("a CONNECT split across three frames is one packet [MQTT-6.0.0-2]", SLOW, async () => {
    const ws = await WsClient.connect(b.url("ws"));
    const bytes = ws.encode(connect(uid("split")));
    ws.sendFrame(bytes.subarray(0, 1));
    ws.sendFrame(bytes.subarray(1, 5));
    await new Promise((r) => setTimeout(r, 50)); // separate reads on the broker side
    ws.sendFrame(bytes.subarray(5));
    assert.equal((await ws.expectPacket("connack")).returnCode, 0);
    ws.socket.destroy();
  });

  it("CONNECT, SUBSCRIBE and PUBLISH in one frame are three packets, answered in order [MQTT-6.0.0-2]", SLOW, async () => {
    const ws = await WsClient.connect(b.url("ws"));
    const t = uid("ws/batch");
    const all = Buffer.concat([
      ws.encode(connect(uid("batch"), 5)),
      ws.encode({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: t, qos: 1 }] } as Packet),
      ws.encode({ cmd: "publish", topic: t, payload: Buffer.from("in-one-frame"), qos: 1, messageId: 2, retain: false, dup: false } as Packet),
    ]);
    ws.sendFrame(all);
    assert.equal((await ws.expectPacket("connack")).reasonCode, 0);
    assert.deepEqual((await ws.expectPacket("suback")).granted, [1]);
    assert.equal((await ws.expectPacket("puback")).messageId, 2);
    assert.equal(Buffer.from((await ws.expectPacket("publish")).payload as Uint8Array).toString(), "in-one-frame");
    ws.socket.destroy();
  });

  it("a message fragmented into continuation frames, and a 200 KB PUBLISH in 1 KB frames, arrive whole", SLOW, async () => {
    const ws = await WsClient.connect(b.url("ws"));
    const c = ws.encode(connect(uid("frag")));
    ws.sendFrame(c.subarray(0, 6), OP.binary, false); // RFC 6455 fragmentation: FIN=0 ...
    ws.sendFrame(c.subarray(6), OP.continuation, true); // ... then a continuation with FIN=1
    await ws.expectPacket("connack");
    const t = uid("ws/big");
    ws.sendPacket({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: t, qos: 0 }] } as Packet);
    await ws.expectPacket("suback");
    const payload = Buffer.alloc(200_000, 7);
    payload.write("head");
    const big = ws.encode({ cmd: "publish", topic: t, payload, qos: 0, retain: false, dup: false } as Packet);
    for (let i = 0; i < big.length; i += 1024) ws.sendFrame(big.subarray(i, i + 1024));
    const got = await ws.expectPacket("publish", 5000);
    assert.ok(Buffer.from(got.payload as Uint8Array).equals(payload), "payload changed on the way");
    ws.socket.destroy();
  });

  it("a text frame closes the connection [MQTT-6.0.0-1]; other clients are not affected", SLOW, async () => {
    const bystander = await WsClient.connect(b.url("ws"));
    bystander.sendPacket(connect(uid("bystander")));
    await bystander.expectPacket("connack");
    const ws = await WsClient.connect(b.url("ws"));
    ws.sendPacket(connect(uid("text")));
    await ws.expectPacket("connack");
    ws.sendFrame(new TextEncoder().encode("hello"), OP.text);
    await ws.expectClose();
    assert.equal(ws.closeCode, 1003);
    bystander.sendFrame(Uint8Array.from([0xc0, 0])); // PINGREQ
    await bystander.expectPacket("pingresp");
    bystander.socket.destroy();
  });

  it("a message past --max-packet-size plus 64 KiB closes with 1009, even in fragments; bystanders go on", SLOW, async () => {
    const small = await startBroker({ logLevel: "warn", maxPacketSize: 10_000, listen: ["ws://127.0.0.1:0/mqtt"] });
    try {
      const bystander = await WsClient.connect(small.url("ws"));
      bystander.sendPacket(connect(uid("bystander")));
      await bystander.expectPacket("connack");
      const ws = await WsClient.connect(small.url("ws"));
      ws.sendPacket(connect(uid("big")));
      await ws.expectPacket("connack");
      // one message of valid 1 KB PUBLISH packets (each within --max-packet-size): only the
      // WebSocket bound stops it (Bun.serve holds a message whole, Deno's layer streams it)
      const one = ws.encode({ cmd: "publish", topic: "big/none", payload: Buffer.alloc(990), qos: 0, dup: false, retain: false } as Packet);
      const forty = Buffer.concat(Array.from({ length: 40 }, () => Buffer.from(one)));
      ws.sendFrame(forty, OP.binary, false);
      ws.sendFrame(forty, OP.continuation, false);
      await ws.expectClose();
      assert.equal(ws.closeCode, 1009);
      bystander.sendFrame(Uint8Array.from([0xc0, 0])); // PINGREQ
      await bystander.expectPacket("pingresp");
      bystander.socket.destroy();
    } finally {
      await small.close();
    }
  });

  it("HTTP that is not an MQTT upgrade gets a clear 4xx: 426 on the path, 404 elsewhere, 400 without the mqtt subprotocol", SLOW, async () => {
    const port = Number(new URL(b.url("ws")).port);
    const plain = await httpRequest(port, ["GET /mqtt HTTP/1.1", "Host: x", "Connection: close"]);
    assert.equal(plain.status, 426);
    assert.equal(plain.headers.upgrade, "websocket");
    assert.match(plain.body, /MQTT over WebSocket/);
    const elsewhere = await httpRequest(port, ["GET /other HTTP/1.1", "Host: x", "Connection: close"]);
    assert.equal(elsewhere.status, 404);
    assert.match(elsewhere.body, /connect to \/mqtt/);
    await assert.rejects(WsClient.connect(b.url("ws"), { protocols: [] }), /HTTP\/1\.1 400/);
    await assert.rejects(WsClient.connect(b.url("ws"), { protocols: ["chat"] }), /HTTP\/1\.1 400/);
  });

  it("retained messages far beyond --max-output-buffer all reach a WebSocket subscriber (sending waits for drain)", SLOW, async () => {
    const base = uid("ws/retained");
    const pub = await WsClient.connect(b.url("ws"));
    pub.sendPacket(connect(uid("ret-pub")));
    await pub.expectPacket("connack");
    const COUNT = 200;
    const SIZE = 64 * 1024; // 12.8 MB in all: more than the kernel buffers, 200 x the 64 KiB output limit
    for (let i = 0; i < COUNT; i++) {
      const p = Buffer.alloc(SIZE, i & 255);
      pub.sendPacket({ cmd: "publish", topic: `${base}/${i}`, payload: p, qos: 1, messageId: i + 1, retain: true, dup: false } as Packet);
    }
    for (let i = 0; i < COUNT; i++) await pub.expectPacket("puback");
    const sub = await WsClient.connect(b.url("ws"));
    sub.sendPacket(connect(uid("ret-sub")));
    await sub.expectPacket("connack");
    sub.sendPacket({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: `${base}/#`, qos: 0 }] } as Packet);
    // not reading for a while fills the socket buffers, so the broker must wait for drain
    sub.socket.pause();
    await new Promise((r) => setTimeout(r, 500));
    sub.socket.resume();
    const topics = new Set<string>();
    for (let i = 0; i < COUNT; i++) {
      const p = await sub.expectPacket("publish", 5000);
      assert.equal((p.payload as Uint8Array).length, SIZE);
      topics.add(p.topic);
    }
    assert.equal(topics.size, COUNT);
    WsClient.destroyAll();
  });

  it("a subscriber that stops reading: QoS 0 past --max-output-buffer is dropped, the rest arrives in order, and it recovers", SLOW, async () => {
    const t = uid("ws/slow");
    const slow = await WsClient.connect(b.url("ws"));
    slow.sendPacket(connect(uid("slow")));
    await slow.expectPacket("connack");
    slow.sendPacket({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: t, qos: 0 }] } as Packet);
    await slow.expectPacket("suback");
    const conn = [...b.broker.clients].find((c) => c.clientId === `slow-${n}`)!.conn;
    slow.socket.pause();
    const pub = await WsClient.connect(b.url("ws"));
    pub.sendPacket(connect(uid("fast-pub")));
    await pub.expectPacket("connack");
    const SIZE = 8 * 1024;
    const dropped0 = b.broker.stats.droppedQos0SlowConsumer;
    let sent = 0;
    let maxBuffered = 0;
    // until the broker drops for the slow one (after the kernel's buffers fill), then 50 more
    for (let extra = -1; sent < 6000 && extra !== 0;) {
      const p = Buffer.alloc(SIZE);
      p.writeUInt32BE(sent++, 0);
      pub.sendPacket({ cmd: "publish", topic: t, payload: p, qos: 0, retain: false, dup: false } as Packet);
      if (sent % 8 === 0) await new Promise((r) => setTimeout(r, 1));
      maxBuffered = Math.max(maxBuffered, conn.bufferedAmount);
      if (extra < 0 && b.broker.stats.droppedQos0SlowConsumer > dropped0) extra = 50;
      else if (extra > 0) extra--;
    }
    assert.ok(b.broker.stats.droppedQos0SlowConsumer > dropped0, `nothing dropped after ${sent} messages`);
    // the adapter never holds much more than the limit (the one message that crossed it, plus one tick's batch)
    assert.ok(maxBuffered <= 64 * 1024 + 16 * (SIZE + 16), `the WebSocket buffered ${maxBuffered} bytes`);
    slow.socket.resume();
    const seen: number[] = [];
    for (;;) {
      const p = await slow.expectPacket("publish", 1500).catch(() => undefined);
      if (!p) break;
      seen.push(Buffer.from(p.payload as Uint8Array).readUInt32BE(0));
    }
    const dropped = b.broker.stats.droppedQos0SlowConsumer - dropped0; // (the last ones may have been dropped late)
    assert.ok(seen.length > 0 && seen.length < sent, `got ${seen.length} of ${sent}`);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i] > seen[i - 1], "out of order");
    assert.equal(seen.length + dropped, sent);
    // drained: new messages flow again
    pub.sendPacket({ cmd: "publish", topic: t, payload: Buffer.from("after"), qos: 0, retain: false, dup: false } as Packet);
    assert.equal(Buffer.from((await slow.expectPacket("publish")).payload as Uint8Array).toString(), "after");
    WsClient.destroyAll();
  });
});
