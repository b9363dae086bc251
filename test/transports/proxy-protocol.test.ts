/**
 * PROXY protocol v1 and v2 on mqtt:// listeners: the header parser on its own (HAProxy's
 * proxy-protocol.txt formats), an in-process broker fed raw headers, and a real broker process
 * behind a real HAProxy (`send-proxy-v2` and `send-proxy`), with clients connecting from other
 * loopback addresses (127.0.0.x), so the address the broker sees and logs can only be the
 * client's if the header was read.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { formatIPv6, parseProxyHeader, ProxyHeaderError } from "../../src/proxy-protocol.ts";
import { startBroker, type TestBroker } from "../helpers/broker.ts";
import { startBrokerProcess, type BrokerProcess } from "../helpers/broker-process.ts";
import { connectV4, RawClient } from "../helpers/raw-client.ts";
import { type HaproxyBroker, mosquittoPub, startHaproxy } from "../helpers/system.ts";

const SLOW = { timeout: 30_000 };
const enc = (s: string) => new TextEncoder().encode(s);
const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

/** A v2 header: PROXY (or LOCAL) command, family byte, address block, then TLV bytes. */
function v2(command: 0 | 1, family: number, block: number[], tlv: number[] = []): Uint8Array {
  const len = block.length + tlv.length;
  return Uint8Array.from([...SIG, 0x20 | command, family, len >> 8, len & 255, ...block, ...tlv]);
}
const port16 = (p: number) => [p >> 8, p & 255];
const ipv4Block = (src: number[], dst: number[], sport: number, dport: number) => [...src, ...dst, ...port16(sport), ...port16(dport)];

describe("PROXY protocol header parser", () => {
  it("v1 TCP4 / TCP6 / UNKNOWN: the client address and port, and where the MQTT bytes start", () => {
    const line = "PROXY TCP4 192.0.2.10 198.51.100.1 56324 1883\r\n";
    const h = parseProxyHeader(enc(line + "\x10\x0c"));
    assert.deepEqual(h, { length: line.length, source: { address: "192.0.2.10", port: 56324 } });
    assert.deepEqual(parseProxyHeader(enc("PROXY TCP6 2001:db8::1 2001:db8::2 40000 1883\r\n"))?.source, {
      address: "2001:db8::1",
      port: 40000,
    });
    // UNKNOWN: the proxy could not tell; the socket's own peer stays
    assert.deepEqual(parseProxyHeader(enc("PROXY UNKNOWN\r\n")), { length: 15 });
  });

  it("v1 arriving byte by byte is incomplete until its CRLF", () => {
    const line = enc("PROXY TCP4 10.1.2.3 10.0.0.1 1000 1883\r\n");
    for (let i = 1; i < line.length; i++) assert.equal(parseProxyHeader(line.subarray(0, i)), undefined, `at ${i} bytes`);
    assert.equal(parseProxyHeader(line)?.source?.address, "10.1.2.3");
  });

  it("v2 PROXY over IPv4 and IPv6 (TLVs skipped), LOCAL and UNSPEC keep the socket's peer", () => {
    const h4 = parseProxyHeader(v2(1, 0x11, ipv4Block([203, 0, 113, 7], [10, 0, 0, 1], 4242, 1883), [0x02, 0, 2, 0x61, 0x62]));
    assert.deepEqual(h4, { length: 16 + 12 + 5, source: { address: "203.0.113.7", port: 4242 } });
    const src6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
    const h6 = parseProxyHeader(v2(1, 0x21, [...src6, ...new Array(16).fill(0), ...port16(5555), ...port16(1883)]));
    assert.deepEqual(h6?.source, { address: "2001:db8::5", port: 5555 });
    assert.deepEqual(parseProxyHeader(v2(0, 0x00, [])), { length: 16 }); // LOCAL: a health check
    assert.deepEqual(parseProxyHeader(v2(1, 0x00, [])), { length: 16 }); // UNSPEC
    const whole = v2(1, 0x11, ipv4Block([1, 2, 3, 4], [5, 6, 7, 8], 1, 2));
    for (let i = 0; i < whole.length; i++) assert.equal(parseProxyHeader(whole.subarray(0, i)), undefined, `at ${i} bytes`);
  });

  it("anything else is refused as soon as it cannot be a header", () => {
    const bad: Array<[string, Uint8Array]> = [
      ["an MQTT CONNECT", Uint8Array.from([0x10, 0x0c, 0, 4])],
      ["HTTP", enc("GET / HTTP/1.1\r\n")],
      ["a v1 prefix gone wrong", enc("PROXI")],
      ["an IPv4 address out of range", enc("PROXY TCP4 999.0.0.1 10.0.0.1 1 2\r\n")],
      ["a port out of range", enc("PROXY TCP4 1.2.3.4 5.6.7.8 70000 1883\r\n")],
      ["a missing field", enc("PROXY TCP4 1.2.3.4 5.6.7.8 1883\r\n")],
      ["LF without CR", enc("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n")],
      ["a v1 line past 107 bytes", enc("PROXY TCP4 " + "1".repeat(120))],
      ["a v2 signature gone wrong", Uint8Array.from([0x0d, 0x0a, 0x0d, 0x0a, 0x01])],
      ["v2 with version 1", Uint8Array.from([...SIG, 0x11, 0x11, 0, 12, ...new Array(12).fill(0)])],
      ["v2 with command 2", Uint8Array.from([...SIG, 0x22, 0x11, 0, 12, ...new Array(12).fill(0)])],
      ["a v2 IPv4 block too short", v2(1, 0x11, [1, 2, 3, 4])],
    ];
    for (const [what, bytes] of bad) assert.throws(() => parseProxyHeader(bytes), ProxyHeaderError, what);
  });

  it("IPv6 addresses in RFC 5952 form", () => {
    const a = (...g: number[]) => Uint8Array.from(g.flatMap((x) => [x >> 8, x & 255]));
    assert.equal(formatIPv6(a(0, 0, 0, 0, 0, 0, 0, 1)), "::1");
    assert.equal(formatIPv6(a(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)), "2001:db8::1");
    assert.equal(formatIPv6(a(1, 0, 0, 2, 0, 0, 0, 3)), "1:0:0:2::3"); // the longest run
    assert.equal(formatIPv6(a(1, 0, 2, 3, 4, 5, 6, 7)), "1:0:2:3:4:5:6:7"); // one zero group stays
    assert.equal(formatIPv6(a(0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001)), "::ffff:10.0.0.1");
  });
});

describe("--proxy-protocol on an in-process broker", () => {
  let b: TestBroker;
  before(async () => {
    b = await startBroker({ proxyProtocol: true, logLevel: "warn" });
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });
  const clientOf = (id: string) => [...b.broker.clients].find((c) => c.clientId === id);
  const connectBytes = (id: string) => Uint8Array.from([0x10, 12 + id.length, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 60, 0, id.length, ...enc(id)]);

  it("v2 header and CONNECT in one segment: the core sees the address from the header", async () => {
    const c = await RawClient.connect(b.port);
    c.send(Buffer.concat([v2(1, 0x11, ipv4Block([203, 0, 113, 7], [10, 0, 0, 1], 4242, 1883)), connectBytes("pp-v2")]));
    assert.equal((await c.expectPacket("connack")).returnCode, 0);
    assert.deepEqual(clientOf("pp-v2")?.conn.remote, { address: "203.0.113.7", port: 4242 });
    c.destroy();
  });

  it("v1 header in pieces, then CONNECT", async () => {
    const c = await RawClient.connect(b.port);
    c.send(enc("PROXY TCP4 198.51.100."));
    await new Promise((r) => setTimeout(r, 30));
    c.send(enc("99 10.0.0.1 61000 1883\r"));
    await new Promise((r) => setTimeout(r, 30));
    c.send(Buffer.concat([enc("\n"), connectBytes("pp-v1")]));
    assert.equal((await c.expectPacket("connack")).returnCode, 0);
    assert.deepEqual(clientOf("pp-v1")?.conn.remote, { address: "198.51.100.99", port: 61000 });
    c.destroy();
  });

  it("v2 LOCAL (the proxy's own health check) keeps the socket's address", async () => {
    const c = await RawClient.connect(b.port);
    c.send(Buffer.concat([v2(0, 0x00, []), connectBytes("pp-local")]));
    await c.expectPacket("connack");
    assert.equal(clientOf("pp-local")?.conn.remote.address, "127.0.0.1");
    c.destroy();
  });

  it("a connection without a header is closed without an answer, and logged", async () => {
    const before = b.logs.length;
    const { client, connack } = await connectV4(b.port, "pp-none").then(
      (r) => ({ client: r.client, connack: r.connack as unknown }),
      () => ({ client: undefined, connack: undefined }),
    );
    assert.equal(connack, undefined, "a CONNECT without PROXY header was answered");
    client?.destroy();
    assert.equal(clientOf("pp-none")?.connected ?? false, false);
    assert.ok(b.logs.slice(before).some((l) => /WARN connection refused: invalid PROXY protocol header/.test(l)), b.logs.join("\n"));
  });
});

describe("behind a real HAProxy (send-proxy-v2 and send-proxy)", () => {
  let broker: BrokerProcess;
  const proxies: HaproxyBroker[] = [];
  before(async () => {
    broker = await startBrokerProcess(["--proxy-protocol", "--log-level", "debug"]);
    proxies.push(await startHaproxy({ servers: [{ port: broker.port, sendProxy: "v2" }] }));
    proxies.push(await startHaproxy({ servers: [{ port: broker.port, sendProxy: "v1" }] }));
  });
  after(async () => {
    RawClient.destroyAll();
    for (const p of proxies) await p.stop();
    await broker?.stop();
  });

  for (const [i, version] of [[0, "send-proxy-v2"], [1, "send-proxy"]] as const) {
    it(`${version}: the broker logs the client's own address and port, not HAProxy's`, SLOW, async () => {
      const from = `127.0.0.${23 + i}`;
      const id = `via-haproxy-${i}`;
      const { client, connack } = await connectV4(proxies[i].port, id, { localAddress: from });
      assert.equal(connack.returnCode, 0);
      const localPort = client.socket.localPort;
      await broker.proc.waitForLine(new RegExp(`client connected .*clientId="${id}".* address="${from.replace(/\./g, "\\.")}" port=${localPort}\\b`), 5000);
      client.destroy();
    });

    it(`${version}: mosquitto_pub from ${`127.0.0.${33 + i}`} is logged with that address`, SLOW, async () => {
      const from = `127.0.0.${33 + i}`;
      const id = `mosq-haproxy-${i}`;
      await mosquittoPub(proxies[i].port, "pp/t", "hi", { qos: 1, clientId: id, extraArgs: ["-A", from] });
      await broker.proc.waitForLine(new RegExp(`client connected .*clientId="${id}".* address="${from.replace(/\./g, "\\.")}" port=\\d+`), 5000);
    });
  }

  it("a client that bypasses HAProxy is refused", SLOW, async () => {
    await assert.rejects(mosquittoPub(broker.port, "pp/t", "direct", { qos: 1, clientId: "direct" }), /failed/);
    await broker.proc.waitForLine(/connection refused: invalid PROXY protocol header/, 5000);
  });
});
