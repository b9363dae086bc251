/**
 * MQTT over TLS (mqtts://) on the runtime's TLS adapter (Bun.listen tls under bun test,
 * node:tls under deno test), with the real mosquitto_pub / mosquitto_sub and openssl s_client
 * as clients and a throwaway PKI made with openssl: the served certificate, TLS 1.2 / 1.3 only,
 * mutual TLS (a certificate from the CA is required; none, or one from another CA, is refused),
 * the certificate's CN as the user name, and a certificate reload that keeps open connections.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import tls from "node:tls";
import { Buffer } from "node:buffer";
import { generate, type Packet, parser } from "mqtt-packet";
import { startBroker, type TestBroker } from "../helpers/broker.ts";
import { makePki, type Pki, replaceFiles } from "../helpers/certs.ts";
import { ensureBinary, mosquittoPub, mosquittoSub, runCommand } from "../helpers/system.ts";
import { tlsReloadables } from "../../src/listeners.ts";

const SLOW = { timeout: 30_000 };

/** openssl s_client against 127.0.0.1:port: the handshake's outcome as openssl prints it. */
async function handshake(port: number, args: string[]) {
  const r = await runCommand("openssl", ["s_client", "-connect", `127.0.0.1:${port}`, "-servername", "localhost", ...args], {
    input: "",
    timeoutMs: 10_000,
  });
  const out = r.stdout + r.stderr;
  return {
    out,
    verified: /Verify return code: 0 \(ok\)/.test(out),
    protocol: /Protocol\s*:\s*(TLSv[\d.]+)/.exec(out)?.[1] ?? /New, (TLSv[\d.]+)/.exec(out)?.[1],
    subject: /subject=(.*)/.exec(out)?.[1]?.trim(),
  };
}

/** A raw TLS connection that sends an MQTT 3.1.1 CONNECT: did a CONNACK come, did the server close? */
function connectOverTls(port: number, opts: tls.ConnectionOptions): Promise<{ connack: boolean; closed: boolean }> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: "127.0.0.1", port, servername: "localhost", ...opts });
    let connack = false;
    let closed = false;
    s.on("secureConnect", () => s.write(CONNECT));
    s.on("data", (b: Uint8Array) => (connack ||= b[0] === 0x20));
    s.on("error", () => {});
    s.on("close", () => (closed = true));
    setTimeout(() => {
      s.destroy();
      resolve({ connack, closed });
    }, 1500);
  });
}

/** MQTT 3.1.1 over a raw TLS socket: packets out with mqtt-packet, the next one of a kind in. */
async function mqttOverTls(port: number, ca: string) {
  const socket = tls.connect({ host: "127.0.0.1", port, servername: "localhost", ca });
  await new Promise((resolve, reject) => socket.once("secureConnect", resolve).once("error", reject));
  const got: Packet[] = [];
  const waiters: Array<() => void> = [];
  const p = parser({ protocolVersion: 4 });
  p.on("packet", (packet: Packet) => {
    got.push(packet);
    for (const w of waiters.splice(0)) w();
  });
  socket.on("data", (b: Buffer) => p.parse(b));
  return {
    socket,
    send: (packet: object) => socket.write(generate(packet as Packet)),
    async next(cmd: string): Promise<Packet & { topic?: string }> {
      const deadline = Date.now() + 5000;
      for (;;) {
        const i = got.findIndex((x) => x.cmd === cmd);
        if (i >= 0) return got.splice(i, 1)[0];
        if (Date.now() > deadline) throw new assert.AssertionError({ message: `no ${cmd} within 5 s` });
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 100);
        });
      }
    },
  };
}

/** CONNECT, MQTT 3.1.1, client id "t", clean session, keepalive 60. */
const CONNECT = Uint8Array.from([0x10, 13, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 60, 0, 1, 0x74]);

describe("MQTT over TLS (mqtts://)", () => {
  let pki: Pki;
  let b: TestBroker;
  let tlsPort = 0; // server certificate only
  let mtlsPort = 0; // client certificate required, its CN is the user name
  let n = 0;
  const uid = (s: string) => `${s}-${++n}`;
  const trust = () => ["--cafile", pki.ca];
  const asClient = (c = pki.client) => ["--cafile", pki.ca, "--cert", c.cert, "--key", c.key];

  before(async () => {
    await ensureBinary("mosquitto_pub", "mosquitto-clients");
    await ensureBinary("openssl", "openssl");
    pki = await makePki();
    b = await startBroker({
      logLevel: "warn",
      certfile: pki.server.cert,
      keyfile: pki.server.key,
      cafile: pki.ca,
      listen: [
        "mqtts://127.0.0.1:0",
        "mqtts://127.0.0.1:0?require-certificate=true&use-identity-as-username=true",
      ],
    });
    tlsPort = b.listeners[1].listener.port;
    mtlsPort = b.listeners[2].listener.port;
  });
  after(async () => {
    await b?.close();
    pki?.remove();
  });

  for (const v5 of [false, true]) {
    it(`mosquitto_sub and mosquitto_pub --cafile, ${v5 ? "MQTT 5" : "3.1.1"}: QoS 1 round trip over TLS`, SLOW, async () => {
      const t = uid("tls/rt");
      const sub = mosquittoSub(tlsPort, t, { count: 2, qos: 1, v5, extraArgs: trust() });
      await sub.ready;
      await mosquittoPub(tlsPort, t, "over-tls", { qos: 1, v5, extraArgs: trust() });
      // and from the plain TCP listener of the same broker: one broker, several transports
      await mosquittoPub(b.port, t, "from-tcp", { qos: 1, v5 });
      assert.deepEqual((await sub).map((m) => [m.payload, m.qos]), [["over-tls", 1], ["from-tcp", 1]]);
    });
  }

  it("serves the --certfile certificate, verified by the CA", SLOW, async () => {
    const h = await handshake(tlsPort, ["-CAfile", pki.ca]);
    assert.ok(h.verified, h.out);
    assert.match(h.subject ?? "", /CN\s*=\s*localhost/);
  });

  it("TLS 1.2 and 1.3 are accepted; TLS 1.0 and 1.1 are refused", SLOW, async () => {
    for (const [flag, ok] of [["-tls1_3", true], ["-tls1_2", true], ["-tls1_1", false], ["-tls1", false]] as const) {
      // SECLEVEL=0 lets this openssl offer the old versions at all
      const h = await handshake(tlsPort, ["-CAfile", pki.ca, flag, "-cipher", "DEFAULT@SECLEVEL=0"]);
      if (ok) assert.equal(h.protocol, flag === "-tls1_3" ? "TLSv1.3" : "TLSv1.2", `${flag}: ${h.out}`);
      else assert.ok(!h.verified || /alert|error/i.test(h.out), `${flag} was accepted:\n${h.out}`);
      if (!ok) assert.match(h.out, /alert protocol version|no protocols available|unsupported protocol|handshake failure/i);
    }
  });

  it("mutual TLS: a client certificate signed by --cafile is accepted", SLOW, async () => {
    const t = uid("mtls/ok");
    const sub = mosquittoSub(tlsPort, t, { count: 1, qos: 1, extraArgs: trust() });
    await sub.ready;
    await mosquittoPub(mtlsPort, t, "with-cert", { qos: 1, extraArgs: asClient() });
    assert.deepEqual((await sub).map((m) => m.payload), ["with-cert"]);
  });

  it("the certificate's CN reaches the core as Connection.identity and, with use-identity-as-username, as the user name", SLOW, async () => {
    const id = uid("mtls-live");
    // the CONNECT's own user name is replaced by the certificate's identity
    const sub = mosquittoSub(mtlsPort, uid("mtls/live"), { clientId: id, qos: 1, extraArgs: [...asClient(), "-u", "claimed-name"], timeoutMs: 8000 });
    await sub.ready;
    const c = [...b.broker.clients].find((x) => x.clientId === id);
    assert.ok(c, "the client is not connected");
    assert.equal(c.conn.identity, "device-42");
    assert.equal(c.username, "device-42");
    // a client on the TLS listener without client certificates has no identity
    const other = uid("tls-live");
    const sub2 = mosquittoSub(tlsPort, uid("tls/live"), { clientId: other, qos: 1, extraArgs: [...trust(), "-u", "alice"], timeoutMs: 8000 });
    await sub2.ready;
    const c2 = [...b.broker.clients].find((x) => x.clientId === other)!;
    assert.equal(c2.conn.identity, undefined);
    assert.equal(c2.username, "alice");
    await sub.stop();
    await sub2.stop();
  });

  it("a certificate's SAN is the identity when it has no CN", SLOW, async () => {
    const noCn = await pki.issue("no-cn", "/O=Colibri tests", ["subjectAltName=DNS:sensor-7.example"]);
    const id = uid("mtls-san");
    const sub = mosquittoSub(mtlsPort, uid("mtls/san"), { clientId: id, qos: 1, extraArgs: asClient(noCn), timeoutMs: 8000 });
    await sub.ready;
    assert.equal([...b.broker.clients].find((x) => x.clientId === id)?.username, "sensor-7.example");
    await sub.stop();
  });

  it("mutual TLS: no client certificate, or one from another CA, is refused", SLOW, async () => {
    const t = uid("mtls/refused");
    const sub = mosquittoSub(tlsPort, t, { qos: 1, extraArgs: trust(), timeoutMs: 2500 });
    await sub.ready;
    await assert.rejects(mosquittoPub(mtlsPort, t, "no-cert", { qos: 1, extraArgs: trust() }), /failed/);
    await assert.rejects(mosquittoPub(mtlsPort, t, "rogue", { qos: 1, extraArgs: asClient(pki.rogueClient) }), /failed/);
    assert.deepEqual(await sub, [], "a refused client's message was delivered");
    // byte level: a CONNECT over TLS without a certificate gets no CONNACK, only a close
    // (BoringSSL fails the handshake; under Deno rustls completes it and node:tls then closes
    // the socket before it reaches the broker); with the certificate, CONNACK
    const ca = fs.readFileSync(pki.ca, "utf8");
    assert.deepEqual(await connectOverTls(mtlsPort, { ca }), { connack: false, closed: true });
    const cert = { ca, cert: fs.readFileSync(pki.client.cert, "utf8"), key: fs.readFileSync(pki.client.key, "utf8") };
    assert.deepEqual(await connectOverTls(mtlsPort, cert), { connack: true, closed: false });
  });

  it("retained messages far beyond the output limit all reach a TLS subscriber that paused reading (sending waits for drain)", SLOW, async () => {
    const base = uid("tls/retained");
    const COUNT = 200;
    const SIZE = 64 * 1024; // 12.8 MB: more than the kernel buffers, far more than --max-output-buffer
    const ca = fs.readFileSync(pki.ca, "utf8");
    const pub = await mqttOverTls(tlsPort, ca);
    pub.send({ cmd: "connect", clientId: uid("ret-pub"), protocolId: "MQTT", protocolVersion: 4, clean: true, keepalive: 30 });
    await pub.next("connack");
    for (let i = 0; i < COUNT; i++) {
      pub.send({ cmd: "publish", topic: `${base}/${i}`, payload: Buffer.alloc(SIZE, i & 255), qos: 1, messageId: i + 1, retain: true, dup: false });
    }
    for (let i = 0; i < COUNT; i++) await pub.next("puback");
    const sub = await mqttOverTls(tlsPort, ca);
    sub.send({ cmd: "connect", clientId: uid("ret-sub"), protocolId: "MQTT", protocolVersion: 4, clean: true, keepalive: 30 });
    await sub.next("connack");
    sub.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: `${base}/#`, qos: 0 }] });
    sub.socket.pause();
    await new Promise((r) => setTimeout(r, 500));
    sub.socket.resume();
    const topics = new Set<string>();
    for (let i = 0; i < COUNT; i++) topics.add((await sub.next("publish")).topic as string);
    assert.equal(topics.size, COUNT);
    pub.socket.destroy();
    sub.socket.destroy();
  });

  it("a certificate reload: new connections get the new certificate, open ones stay connected", SLOW, async () => {
    // a separate broker: this one's certificate files are overwritten
    const dir = fs.mkdtempSync(`${pki.dir}/reload-`);
    const own = { cert: `${dir}/server.crt`, key: `${dir}/server.key` };
    replaceFiles(own, pki.server);
    const r = await startBroker({ logLevel: "warn", certfile: own.cert, keyfile: own.key, listen: ["mqtts://127.0.0.1:0"] });
    try {
      const port = r.listeners[1].listener.port;
      const t = uid("reload/t");
      const sub = mosquittoSub(port, t, { count: 1, qos: 1, extraArgs: trust(), timeoutMs: 10_000 });
      await sub.ready;
      const next = await pki.newCa("ca2");
      replaceFiles(own, next.server);
      assert.ok((await handshake(port, ["-CAfile", pki.ca])).verified, "the files changed before the reload");
      for (const item of tlsReloadables(r.listeners)) await item.reload();
      const after = await handshake(port, ["-CAfile", next.ca]);
      assert.ok(after.verified, `the new certificate is not served:\n${after.out}`);
      assert.ok(!(await handshake(port, ["-CAfile", pki.ca])).verified, "the old certificate is still served");
      // the subscriber connected before the reload still gets messages
      await mosquittoPub(port, t, "after-reload", { qos: 1, extraArgs: ["--cafile", next.ca] });
      assert.deepEqual((await sub).map((m) => m.payload), ["after-reload"]);
    } finally {
      await r.close();
    }
  });
});
