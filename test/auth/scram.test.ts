/**
 * MQTT 5 enhanced authentication with SCRAM-SHA-256 against a password file written by
 * colibri passwd: MQTT.js through its handleAuth hook, raw packets for the protocol rules
 * [MQTT-4.12.0-1..7] [MQTT-4.12.1-1] [MQTT-4.12.1-2], re-authentication on a live connection.
 * The client side is test/helpers/scram-client.ts, written separately from the server's.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqtt, { type IConnackPacket, type MqttClient } from "mqtt";
import { startSecureBroker, type SecureBroker } from "../helpers/auth.ts";
import { ScramClient } from "../helpers/scram-client.ts";
import { connectV5, drainPublishes, RawClient } from "../helpers/raw-client.ts";

const M = "SCRAM-SHA-256";
const SLOW = { timeout: 60_000 };

/** CONNECT with SCRAM over raw packets up to the server-first AUTH. */
async function begin(port: number, clientId: string, s: ScramClient, extra: Record<string, unknown> = {}) {
  const client = await RawClient.connect(port);
  client.sendPacket({
    cmd: "connect", protocolVersion: 5, clientId, clean: true, keepalive: 60,
    properties: { authenticationMethod: M, authenticationData: s.first() }, ...extra,
  });
  const auth = await client.expectPacket("auth");
  return { client, auth };
}

function sendAuth(c: RawClient, reasonCode: number, data: Uint8Array, method = M) {
  c.sendPacket({ cmd: "auth", reasonCode, properties: { authenticationMethod: method, authenticationData: Buffer.from(data) } });
}

describe("SCRAM-SHA-256 enhanced authentication", SLOW, () => {
  let b: SecureBroker;
  const live = new Set<MqttClient>();
  before(async () => {
    b = await startSecureBroker({
      users: { alice: "wonder land", bob: "bpw" }, tool: "colibri", allowAnonymous: false,
      acl: "user alice\ntopic readwrite a/#\nuser bob\ntopic readwrite #\n",
    });
  });
  after(async () => {
    for (const c of live) c.end(true);
    RawClient.destroyAll();
    await b.close();
  });

  it("MQTT.js: CONNECT -> AUTH 0x18 -> AUTH 0x18 -> CONNACK 0x00 with the method and the server signature", async () => {
    const s = new ScramClient("alice", "wonder land");
    const c = mqtt.connect(`mqtt://127.0.0.1:${b.port}`, {
      protocolVersion: 5, clientId: "mqttjs-scram", reconnectPeriod: 0, connectTimeout: 5000,
      properties: { authenticationMethod: M, authenticationData: s.first() },
    });
    live.add(c);
    c.handleAuth = (packet, cb) => {
      assert.equal(packet.reasonCode, 0x18);
      assert.equal(packet.properties?.authenticationMethod, M); // [MQTT-4.12.0-5]
      cb(undefined, { cmd: "auth", reasonCode: 0x18, properties: { authenticationMethod: M, authenticationData: s.final(packet.properties!.authenticationData!) } });
    };
    const connack = await new Promise<IConnackPacket>((resolve, reject) => {
      c.once("connect", resolve);
      c.once("error", reject);
    });
    assert.equal(connack.reasonCode, 0);
    assert.equal(connack.properties?.authenticationMethod, M);
    assert.equal(s.verify(connack.properties?.authenticationData), true, "the server proved it knows alice's credential");
    // authenticated as alice: her ACL applies
    await c.subscribeAsync("a/#", { qos: 1 });
    const got = new Promise<string>((r) => c.once("message", (t) => r(t)));
    await c.publishAsync("a/hi", "x", { qos: 1 });
    assert.equal(await got, "a/hi");
    await assert.rejects(c.publishAsync("b/no", "x", { qos: 1 }), (e) => (e as { code?: number }).code === 0x87);
  });

  it("a wrong password and an unknown user fail alike: the same exchange, CONNACK 0x86", async () => {
    for (const [user, pwd] of [["alice", "wrong"], ["nobody", "x"]]) {
      const s = new ScramClient(user, pwd);
      const { client, auth } = await begin(b.port, `bad-${user}`, s);
      assert.equal(auth.reasonCode, 0x18);
      const a = ScramClient.parse(auth.properties!.authenticationData!);
      assert.equal(a.i, "4096");
      assert.equal(Buffer.from(a.s, "base64").length, 16);
      sendAuth(client, 0x18, s.final(auth.properties!.authenticationData!));
      const connack = await client.expectPacket("connack");
      assert.equal(connack.reasonCode, 0x86);
      await client.waitClose();
    }
    // an unknown user's salt is the same every time, as a real user's is
    const salts = [];
    for (let i = 0; i < 2; i++) {
      const { client, auth } = await begin(b.port, `probe-${i}`, new ScramClient("ghost", "x"));
      salts.push(ScramClient.parse(auth.properties!.authenticationData!).s);
      client.destroy();
    }
    assert.equal(salts[0], salts[1]);
  });

  it("a method the server does not offer: CONNACK 0x8C and close [MQTT-4.12.0-1]", async () => {
    const r = await connectV5(b.port, "other-method", { properties: { authenticationMethod: "SCRAM-SHA-1", authenticationData: Buffer.from("n,,n=a,r=x") } });
    assert.equal(r.connack.reasonCode, 0x8c);
    await r.client.waitClose();
  });

  it("only AUTH or DISCONNECT before CONNACK [MQTT-3.1.2-30]; AUTH with another method is a protocol error", async () => {
    const s = new ScramClient("bob", "bpw");
    const one = await begin(b.port, "eager", s);
    one.client.sendPacket({ cmd: "publish", topic: "x", payload: Buffer.from("too soon"), qos: 0, retain: false, dup: false });
    assert.equal((await one.client.expectPacket("connack")).reasonCode, 0x82);
    const two = await begin(b.port, "switcher", new ScramClient("bob", "bpw"));
    sendAuth(two.client, 0x18, Buffer.from("x"), "PLAIN");
    assert.equal((await two.client.expectPacket("connack")).reasonCode, 0x82);
    const three = await begin(b.port, "leaver", new ScramClient("bob", "bpw"));
    three.client.sendPacket({ cmd: "disconnect" });
    await three.client.waitClose();
  });

  it("re-authentication: AUTH 0x19 -> 0x18 -> 0x18 -> AUTH 0x00 with the server signature; traffic goes on meanwhile", async () => {
    const s = new ScramClient("bob", "bpw");
    const { client, auth } = await begin(b.port, "reauth", s);
    sendAuth(client, 0x18, s.final(auth.properties!.authenticationData!));
    assert.equal((await client.expectPacket("connack")).reasonCode, 0);
    await client.subscribe("r/#", { qos: 0 });
    const again = new ScramClient("bob", "bpw");
    sendAuth(client, 0x19, again.first()); // [MQTT-4.12.1-1]
    const challenge = await client.expectPacket("auth");
    assert.equal(challenge.reasonCode, 0x18);
    client.sendPacket({ cmd: "publish", topic: "r/during", payload: Buffer.from("m"), qos: 0, retain: false, dup: false });
    assert.deepEqual((await drainPublishes(client, 200)).map((p) => p.topic), ["r/during"]);
    sendAuth(client, 0x18, again.final(challenge.properties!.authenticationData!));
    const done = await client.expectPacket("auth");
    assert.equal(done.reasonCode, 0);
    assert.equal(done.properties?.authenticationMethod, M);
    assert.equal(again.verify(done.properties?.authenticationData), true);
    client.sendPacket({ cmd: "pingreq" });
    await client.expectPacket("pingresp");
  });

  it("a failed re-authentication ends the connection: DISCONNECT 0x87 [MQTT-4.12.1-2]; so does another user", async () => {
    for (const [user, pwd] of [["bob", "not bob's"], ["alice", "wonder land"]]) {
      const s = new ScramClient("bob", "bpw");
      const { client, auth } = await begin(b.port, `refail-${user}`, s);
      sendAuth(client, 0x18, s.final(auth.properties!.authenticationData!));
      assert.equal((await client.expectPacket("connack")).reasonCode, 0);
      const bad = new ScramClient(user, pwd);
      sendAuth(client, 0x19, bad.first());
      const ch = await client.expectPacket("auth");
      sendAuth(client, 0x18, bad.final(ch.properties!.authenticationData!));
      assert.equal((await client.expectPacket("disconnect")).reasonCode, 0x87);
      await client.waitClose();
    }
  });

  it("re-authentication with another method, or by a client that did not use one: protocol error 0x82", async () => {
    const s = new ScramClient("bob", "bpw");
    const { client, auth } = await begin(b.port, "remethod", s);
    sendAuth(client, 0x18, s.final(auth.properties!.authenticationData!));
    await client.expectPacket("connack");
    sendAuth(client, 0x19, Buffer.from("x"), "OTHER");
    assert.equal((await client.expectPacket("disconnect")).reasonCode, 0x82);
    const plain = await connectV5(b.port, "plain", { username: "bob", password: Buffer.from("bpw") });
    assert.equal(plain.connack.reasonCode, 0, "the same user logs in with its password too");
    sendAuth(plain.client, 0x19, Buffer.from("x"));
    assert.equal((await plain.client.expectPacket("disconnect")).reasonCode, 0x82); // [MQTT-4.12.0-7]
  });
});
