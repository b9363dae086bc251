/**
 * A raw WebSocket client for MQTT-over-WebSocket wire tests, on node:net / node:tls (so it runs
 * under both `deno test` and `bun test`): it does the HTTP upgrade itself and then writes
 * frames exactly as told — one MQTT packet split across frames, several in one frame, a
 * message fragmented into continuation frames, a text frame — and can stop reading
 * (`socket.pause()`) to play a slow consumer. Incoming binary payloads are one byte stream
 * decoded with mqtt-packet's parser.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import net from "node:net";
import tls from "node:tls";
import { generate, type Packet, parser } from "mqtt-packet";
import type { PacketCmd, PacketOf, ProtocolVersion } from "./raw-client.ts";

export interface WsConnectOptions {
  /** Offered subprotocols (default ["mqtt"]); [] offers none. */
  protocols?: string[];
  /** wss://: the CA to trust (PEM text). */
  ca?: string;
  timeoutMs?: number;
}

export const OP = { continuation: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 } as const;

const all = new Set<WsClient>();

export class WsClient {
  /** The subprotocol the server selected. */
  protocol = "";
  closed = false;
  /** Close code from the server's close frame, if one came. */
  closeCode: number | undefined;
  readonly packets: Packet[] = [];
  #pending: Buffer = Buffer.alloc(0);
  #listeners = new Set<() => void>();
  #parser: ReturnType<typeof parser>;
  #version: ProtocolVersion = 4;

  #newParser(): ReturnType<typeof parser> {
    const p = parser({ protocolVersion: this.#version });
    p.on("packet", (packet: Packet) => {
      this.packets.push(packet);
      this.#notify();
    });
    return p;
  }

  private constructor(readonly socket: net.Socket, rest: Buffer) {
    this.#parser = this.#newParser();
    socket.on("data", (b: Buffer) => this.#onData(b));
    socket.on("close", () => {
      this.closed = true;
      all.delete(this);
      this.#notify();
    });
    socket.on("error", () => {});
    all.add(this);
    if (rest.length) this.#onData(rest);
  }

  /** Upgrade to ws:// or wss://; rejects with the HTTP status line when the server refuses. */
  static connect(url: string, opts: WsConnectOptions = {}): Promise<WsClient> {
    const u = new URL(url);
    const port = Number(u.port);
    const timeoutMs = opts.timeoutMs ?? 3000;
    const protocols = opts.protocols ?? ["mqtt"];
    return new Promise((resolve, reject) => {
      const socket: net.Socket = u.protocol === "wss:"
        ? tls.connect({ host: u.hostname, port, ca: opts.ca, servername: "localhost" })
        : net.connect({ host: u.hostname, port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no WebSocket upgrade from ${url} within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once("error", (e) => {
        clearTimeout(timer);
        reject(new Error(`WebSocket connect to ${url} failed: ${e.message}`));
      });
      socket.once(u.protocol === "wss:" ? "secureConnect" : "connect", () => {
        socket.setNoDelay(true);
        const lines = [
          `GET ${u.pathname} HTTP/1.1`, `Host: ${u.host}`, "Upgrade: websocket", "Connection: Upgrade",
          `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}`, "Sec-WebSocket-Version: 13",
        ];
        if (protocols.length) lines.push(`Sec-WebSocket-Protocol: ${protocols.join(", ")}`);
        socket.write(lines.join("\r\n") + "\r\n\r\n");
      });
      let head = Buffer.alloc(0);
      const onData = (b: Buffer) => {
        head = Buffer.concat([head, b]);
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        clearTimeout(timer);
        socket.off("data", onData);
        const text = head.subarray(0, end).toString("latin1");
        const status = text.split("\r\n")[0];
        if (!/^HTTP\/1\.1 101/.test(status)) {
          socket.destroy();
          reject(new Error(`WebSocket upgrade refused: ${status}`));
          return;
        }
        const c = new WsClient(socket, head.subarray(end + 4));
        c.protocol = /^sec-websocket-protocol:\s*(.*)$/im.exec(text)?.[1]?.trim() ?? "";
        resolve(c);
      };
      socket.on("data", onData);
    });
  }

  static destroyAll(): void {
    for (const c of [...all]) c.socket.destroy();
  }

  /** One frame, masked as a client must. */
  sendFrame(payload: Uint8Array, opcode: number = OP.binary, fin = true): void {
    const n = payload.length;
    const head = n < 126 ? Buffer.from([0, 0x80 | n]) : n < 65536 ? Buffer.from([0, 0x80 | 126, n >> 8, n & 255]) : (() => {
      const h = Buffer.alloc(10);
      h[1] = 0x80 | 127;
      h.writeBigUInt64BE(BigInt(n), 2);
      return h;
    })();
    head[0] = (fin ? 0x80 : 0) | opcode;
    const mask = randomBytes(4);
    const body = Buffer.from(payload);
    for (let i = 0; i < n; i++) body[i] ^= mask[i & 3];
    this.socket.write(Buffer.concat([head, mask, body]));
  }

  /** MQTT packets encoded with mqtt-packet (a CONNECT sets the version for the rest). */
  encode(packet: Packet): Uint8Array {
    if (packet.cmd === "connect") {
      this.#version = packet.protocolVersion as ProtocolVersion ?? 4;
      this.#parser = this.#newParser(); // decode what comes back in this version
    }
    return generate(packet, { protocolVersion: this.#version });
  }

  /** Each packet in its own binary frame. */
  sendPacket(packet: Packet): void {
    this.sendFrame(this.encode(packet));
  }

  #onData(b: Buffer): void {
    this.#pending = this.#pending.length ? Buffer.concat([this.#pending, b]) : b;
    for (;;) {
      const f = this.#pending;
      if (f.length < 2) return;
      let len = f[1] & 0x7f;
      let at = 2;
      if (len === 126) {
        if (f.length < 4) return;
        len = f.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (f.length < 10) return;
        len = Number(f.readBigUInt64BE(2));
        at = 10;
      }
      if (f[1] & 0x80) throw new Error("server frames must not be masked (RFC 6455 §5.1)");
      if (f.length < at + len) return;
      const opcode = f[0] & 0x0f;
      const payload = f.subarray(at, at + len);
      this.#pending = f.subarray(at + len);
      if (opcode === OP.binary || opcode === OP.continuation) this.#parser.parse(Buffer.from(payload));
      else if (opcode === OP.close) {
        // answer the close handshake (RFC 6455 §5.5.1), as a real client does
        this.closeCode = len >= 2 ? payload.readUInt16BE(0) : 1005;
        this.sendFrame(payload.subarray(0, 2), OP.close);
        this.socket.end();
      }
      else if (opcode === OP.ping) this.sendFrame(payload, OP.pong);
      else if (opcode === OP.text) throw new Error("the broker sent a text frame [MQTT-6.0.0-1]");
    }
  }

  #notify(): void {
    for (const l of [...this.#listeners]) l();
  }

  /** Resolves when `test` holds (checked on every packet and on close); rejects after timeoutMs. */
  #until<T>(test: () => T | undefined, what: string, timeoutMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const v = test();
        if (v !== undefined) {
          done();
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new assert.AssertionError({ message: `expected ${what} within ${timeoutMs} ms; got ${JSON.stringify(this.packets.map((p) => p.cmd))}${this.closed ? " and a close" : ""}` }));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#listeners.delete(check);
      };
      this.#listeners.add(check);
      check();
    });
  }

  /** The next not yet taken packet of this type. */
  expectPacket<C extends PacketCmd>(cmd: C, timeoutMs = 3000): Promise<PacketOf<C>> {
    return this.#until(() => {
      const i = this.packets.findIndex((p) => p.cmd === cmd);
      return i < 0 ? undefined : this.packets.splice(i, 1)[0] as PacketOf<C>;
    }, cmd, timeoutMs);
  }

  /** Resolves once the connection is closed (by the server). */
  expectClose(timeoutMs = 3000): Promise<true> {
    return this.#until(() => (this.closed ? true : undefined), "the connection to close", timeoutMs);
  }
}

/** One raw HTTP/1.1 request; resolves with the status code, headers (lower case) and body. */
export function httpRequest(port: number, lines: string[]): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    let data = "";
    socket.on("data", (b: Buffer) => (data += b.toString("latin1")));
    socket.on("error", reject);
    socket.on("connect", () => socket.write(lines.join("\r\n") + "\r\n\r\n"));
    const finish = () => {
      const [head, ...rest] = data.split("\r\n\r\n");
      const [status, ...hs] = head.split("\r\n");
      const headers: Record<string, string> = {};
      for (const h of hs) {
        const i = h.indexOf(":");
        if (i > 0) headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
      }
      resolve({ status: Number(status.split(" ")[1]), headers, body: rest.join("\r\n\r\n") });
    };
    socket.on("end", finish);
    setTimeout(() => {
      socket.destroy();
      if (data) finish();
      else reject(new Error(`no HTTP answer on port ${port}`));
    }, 3000);
  });
}
