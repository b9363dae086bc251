/**
 * The runtime-agnostic WebSocket layer (src/websocket-server.ts, src/websocket-frames.ts) that
 * the Deno adapter puts on its TCP and TLS listeners, driven here byte by byte through an
 * in-memory Connection (so both runners test the same code): the upgrade (RFC 6455 §4.2), the
 * framing rules a server enforces (§5), its bounds, and the core seeing a plain byte stream.
 * The same listener end to end with real clients: websocket.test.ts under deno test.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { MAX_HEAD, withWebSocket } from "../../src/websocket-server.ts";
import { FrameDecoder } from "../../src/websocket-frames.ts";
import type { Connection, ConnectionEvents } from "../../src/transport.ts";

class FakeConn implements Connection {
  readonly remote = { address: "127.0.0.1", port: 5555 };
  out: Buffer = Buffer.alloc(0);
  closed = false;
  bufferedAmount = 0;
  write(bytes: Uint8Array): boolean {
    this.out = Buffer.concat([this.out, Buffer.from(bytes)]);
    return true;
  }
  close(): void {
    this.closed = true;
  }
  /** What was written, as text up to the blank line (the HTTP answer), removing it. */
  takeHead(): string {
    const end = this.out.indexOf("\r\n\r\n");
    assert.ok(end >= 0, `no HTTP answer in ${JSON.stringify(this.out.toString("latin1"))}`);
    const head = this.out.subarray(0, end).toString("latin1");
    this.out = this.out.subarray(end + 4);
    return head;
  }
  /** The server frames written so far: opcode and payload (server frames are not masked). */
  frames(): Array<{ op: number; fin: boolean; payload: Buffer }> {
    const list = [];
    let f = this.out;
    while (f.length >= 2) {
      assert.equal(f[1] & 0x80, 0, "a server frame was masked");
      let len = f[1] & 0x7f, at = 2;
      if (len === 126) (len = f.readUInt16BE(2)), (at = 4);
      else if (len === 127) (len = Number(f.readBigUInt64BE(2))), (at = 10);
      list.push({ op: f[0] & 0x0f, fin: (f[0] & 0x80) !== 0, payload: f.subarray(at, at + len) });
      f = f.subarray(at + len);
    }
    return list;
  }
}

/** A client frame: masked, with the 7-, 16- or 64-bit length form that fits (or the one asked for). */
function frame(op: number, payload: Uint8Array, opts: { fin?: boolean; masked?: boolean; rsv?: number; len64?: boolean; mask?: number[] } = {}): Buffer {
  const n = payload.length;
  const parts: Buffer[] = [];
  const b0 = ((opts.fin ?? true) ? 0x80 : 0) | (opts.rsv ?? 0) | op;
  const m = opts.masked ?? true ? 0x80 : 0;
  if (opts.len64 || n >= 65536) {
    const h = Buffer.alloc(10);
    h[0] = b0;
    h[1] = m | 127;
    h.writeBigUInt64BE(BigInt(n), 2);
    parts.push(h);
  } else if (n >= 126) parts.push(Buffer.from([b0, m | 126, n >> 8, n & 255]));
  else parts.push(Buffer.from([b0, m | n]));
  const body = Buffer.from(payload);
  if (m) {
    const mask = Buffer.from(opts.mask ?? [0x12, 0x34, 0x56, 0x78]);
    for (let i = 0; i < n; i++) body[i] ^= mask[i & 3];
    parts.push(mask);
  }
  parts.push(body);
  return Buffer.concat(parts);
}

const UPGRADE = (extra = "", path = "/mqtt", key = "dGhlIHNhbXBsZSBub25jZQ==") =>
  Buffer.from(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n${extra}\r\n`,
    "latin1",
  );

function open(maxMessageSize = 1000) {
  const conn = new FakeConn();
  const got: Buffer[] = [];
  let accepted: Connection | undefined;
  let closedWith: { err?: Error } | undefined;
  const acceptor = withWebSocket({
    accept(c: Connection): ConnectionEvents {
      accepted = c;
      return { data: (b) => void got.push(Buffer.from(b)), drain() {}, close: (err) => void (closedWith = { err }) };
    },
  }, { path: "/mqtt", maxMessageSize, handshakeMs: 60_000 });
  const events = acceptor.accept(conn);
  return {
    conn, events, got: () => Buffer.concat(got), get accepted() {
      return accepted;
    }, get closedWith() {
      return closedWith;
    },
  };
}

function upgraded(maxMessageSize?: number) {
  const s = open(maxMessageSize);
  s.events.data(UPGRADE());
  assert.match(s.conn.takeHead(), /^HTTP\/1\.1 101 /);
  return s;
}

describe("WebSocket server layer (src/websocket-server.ts)", () => {
  it("the upgrade answers 101 with the RFC 6455 accept key and the mqtt subprotocol; the core gets the connection only then", () => {
    const s = open();
    const req = UPGRADE();
    s.events.data(req.subarray(0, 20));
    assert.equal(s.accepted, undefined, "accepted before the request was complete");
    s.events.data(req.subarray(20));
    const head = s.conn.takeHead();
    assert.match(head, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    // RFC 6455 §1.3's example key and answer
    assert.match(head, /\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=(\r\n|$)/i);
    assert.match(head, /\r\nsec-websocket-protocol: mqtt(\r\n|$)/i); // [MQTT-6.0.0-4]
    const conn = s.accepted as Connection | undefined;
    assert.ok(conn);
    assert.deepEqual(conn.remote, { address: "127.0.0.1", port: 5555 });
  });

  it("bytes after the request head in the same read are the first frames", () => {
    const s = open();
    s.events.data(Buffer.concat([UPGRADE(), frame(2, Buffer.from([0x10, 0x00]))]));
    s.conn.takeHead();
    assert.deepEqual([...s.got()], [0x10, 0x00]);
  });

  it("a bad request gets its HTTP error and a close: wrong path 404, no upgrade 426, version 426, bad key 400, head too large 431", () => {
    const cases: Array<[Buffer, RegExp]> = [
      [UPGRADE("", "/other"), /^HTTP\/1\.1 404 /],
      [Buffer.from("GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n"), /^HTTP\/1\.1 426 [\s\S]*upgrade: websocket/i],
      [Buffer.from(UPGRADE().toString("latin1").replace("Version: 13", "Version: 8"), "latin1"), /^HTTP\/1\.1 426 [\s\S]*sec-websocket-version: 13/i],
      [UPGRADE("", "/mqtt", "short"), /^HTTP\/1\.1 400 /],
      [Buffer.from("NOT HTTP\r\n\r\n"), /^HTTP\/1\.1 400 /],
      [UPGRADE(`X-Pad: ${"a".repeat(MAX_HEAD)}\r\n`), /^HTTP\/1\.1 431 /],
    ];
    for (const [req, expected] of cases) {
      const s = open();
      s.events.data(req);
      assert.match(s.conn.takeHead(), expected);
      assert.equal(s.conn.closed, true);
      assert.equal(s.accepted, undefined);
    }
    // a head that never ends is refused once it passes the bound, not held
    const s = open();
    for (let i = 0; i < 20 && !s.conn.closed; i++) s.events.data(Buffer.alloc(1024, 0x61));
    assert.match(s.conn.takeHead(), /^HTTP\/1\.1 431 /);
  });

  it("frames split at every byte, 16- and 64-bit lengths, fragments and interleaved pings: one byte stream to the core", () => {
    const s = upgraded(100_000);
    const a = Buffer.alloc(300, 1), b = Buffer.alloc(70_000, 2), c = Buffer.from([3, 3, 3]);
    const wire = Buffer.concat([
      frame(2, a),
      frame(2, b.subarray(0, 10), { fin: false, len64: true }),
      frame(9, Buffer.from("hi")), // a ping between fragments
      frame(0, b.subarray(10)),
      frame(2, c),
    ]);
    for (let i = 0; i < wire.length; i += 7) s.events.data(wire.subarray(i, Math.min(wire.length, i + 7)));
    assert.ok(s.got().equals(Buffer.concat([a, b, c])), "the core's byte stream differs");
    const pong = s.conn.frames();
    assert.deepEqual(pong.map((f) => [f.op, f.payload.toString()]), [[10, "hi"]]);
    assert.equal(s.conn.closed, false);
  });

  it("random frames, masks and read boundaries: the core's stream is exactly the payloads (word-wise unmasking at any alignment)", () => {
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    for (let round = 0; round < 20; round++) {
      const s = upgraded(1 << 20);
      const payloads: Buffer[] = [];
      const frames: Buffer[] = [];
      for (let k = 0; k < 30; k++) {
        const p = Buffer.alloc(rnd(3000));
        for (let i = 0; i < p.length; i++) p[i] = rnd(256);
        payloads.push(p);
        frames.push(frame(2, p, { mask: [rnd(256), rnd(256), rnd(256), rnd(256)] }));
      }
      const wire = Buffer.concat(frames);
      for (let i = 0; i < wire.length;) {
        const n = 1 + rnd(5000);
        s.events.data(Buffer.from(wire.subarray(i, i + n))); // a fresh buffer per read, as adapters give
        i += n;
      }
      assert.ok(s.got().equals(Buffer.concat(payloads)), `round ${round}: the stream differs`);
    }
  });

  it("payload passed on before a ping in the same read is not overwritten by what follows (the core may keep views)", () => {
    const views: Uint8Array[] = [];
    const pongs: number[] = [];
    const d = new FrameDecoder({ data: (b) => void views.push(b), control: (op) => void pongs.push(op), fail: () => assert.fail("failed") }, 1 << 20);
    const a = Buffer.alloc(50, 0xaa), c = Buffer.alloc(50, 0xcc);
    d.push(Buffer.concat([frame(2, a), frame(9, Buffer.from("p")), frame(2, c)]));
    assert.deepEqual(pongs, [9]);
    assert.equal(views.length, 2);
    assert.ok(Buffer.from(views[0]).equals(a), "the first chunk was written over");
    assert.ok(Buffer.from(views[1]).equals(c));
  });

  it("the core's writes are binary frames; close() sends close 1000 and nothing after it", () => {
    const s = upgraded();
    s.accepted!.write(Uint8Array.from([0x20, 0x02, 0, 0]));
    s.accepted!.write(new Uint8Array(70_000));
    s.accepted!.close();
    assert.equal(s.accepted!.write(Uint8Array.from([1])), false);
    const f = s.conn.frames();
    assert.deepEqual(f.map((x) => [x.op, x.payload.length]), [[2, 4], [2, 70_000], [8, 2]]);
    assert.equal(f[2].payload.readUInt16BE(0), 1000);
    assert.equal(s.conn.closed, true);
  });

  const violations: Array<[string, Buffer, number]> = [
    ["a text frame [MQTT-6.0.0-1]", frame(1, Buffer.from("hello")), 1003],
    ["an unmasked client frame (RFC 6455 §5.1)", frame(2, Buffer.from([0xc0, 0]), { masked: false }), 1002],
    ["reserved bits without an extension", frame(2, Buffer.from([0xc0, 0]), { rsv: 0x40 }), 1002],
    ["a continuation with no message", frame(0, Buffer.from([1])), 1002],
    ["a new message inside a fragmented one", Buffer.concat([frame(2, Buffer.from([1]), { fin: false }), frame(2, Buffer.from([2]))]), 1002],
    ["a fragmented ping", frame(9, Buffer.from([1]), { fin: false }), 1002],
    ["a ping longer than 125 bytes", frame(9, Buffer.alloc(126)), 1002],
    ["an unknown opcode", frame(3, Buffer.from([1])), 1002],
    ["a message past maxMessageSize, in fragments", Buffer.concat([frame(2, Buffer.alloc(600), { fin: false }), frame(0, Buffer.alloc(600))]), 1009],
    ["a frame announcing 2^60 bytes", Buffer.from([0x82, 0xff, 0x10, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]), 1009],
  ];
  for (const [what, bytes, code] of violations) {
    it(`${what}: close ${code}, and nothing past the violation reaches the core`, () => {
      const s = upgraded(1000);
      const before = s.got().length;
      s.events.data(Buffer.concat([bytes, frame(2, Buffer.from([0xee]))]));
      const f = s.conn.frames();
      assert.equal(f.at(-1)?.op, 8, "no close frame");
      assert.equal(f.at(-1)!.payload.readUInt16BE(0), code);
      assert.equal(s.conn.closed, true);
      assert.ok(!s.got().subarray(before).includes(0xee), "a frame after the violation was passed on");
    });
  }

  it("a close from the client is answered with its code and the socket closes; the core hears of it when the socket is gone", () => {
    const s = upgraded();
    s.events.data(frame(8, Buffer.from([0x03, 0xe9]))); // 1001 going away
    const f = s.conn.frames();
    assert.deepEqual(f.map((x) => [x.op, x.payload.readUInt16BE(0)]), [[8, 1001]]);
    assert.equal(s.conn.closed, true);
    assert.equal(s.closedWith, undefined);
    s.events.close();
    assert.deepEqual(s.closedWith, { err: undefined });
  });

  it("no upgrade request within the time allowed: 400 and closed", async () => {
    const conn = new FakeConn();
    const events = withWebSocket({ accept: () => assert.fail("accepted") }, { path: "", maxMessageSize: 1000, handshakeMs: 30 })
      .accept(conn);
    events.data(Buffer.from("GET /mqtt HTTP/1.1\r\n"));
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(conn.closed, true);
    assert.match(conn.takeHead(), /^HTTP\/1\.1 400 /);
  });
});
