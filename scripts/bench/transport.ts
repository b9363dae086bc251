/**
 * The socket layer under the load generator: node:net (Bun, Deno, Node) or Bun.connect (Bun
 * only; usually cheaper per read). Both present the same tiny interface. Callers hand `write`
 * a buffer they will not touch again.
 *
 * `--wire tls` and `--wire ws` put MQTT over TLS (node:tls, the broker's certificate not
 * checked: a throwaway one) or over WebSocket (node:net, the upgrade and RFC 6455 framing done
 * here: each write one binary frame, masked with the all-zero key, which is a valid key that
 * spares the generator the XOR; the broker still unmasks every byte).
 */
import net from "node:net";
import tls from "node:tls";

export const WIRES = ["tcp", "tls", "ws"] as const;
export type Wire = typeof WIRES[number];

export interface ConnHandlers {
  data(chunk: Uint8Array): void;
  close(): void;
}

export interface Conn {
  write(data: Uint8Array): void;
  /** Bytes accepted by write() that the kernel has not taken yet. */
  buffered(): number;
  destroy(): void;
}

export type TransportKind = "net" | "bun";

export type Connector = (host: string, port: number, handlers: ConnHandlers) => Promise<Conn>;

/** A node:net or node:tls socket as a Conn, once `ready` ("connect" / "secureConnect") fires. */
function nodeConn(s: net.Socket, ready: "connect" | "secureConnect", h: ConnHandlers): Promise<Conn> {
  return new Promise((resolve, reject) => {
    let open = false;
    s.on("data", (chunk: Uint8Array) => h.data(chunk));
    s.on("close", () => h.close());
    s.on("error", (err: Error) => {
      if (!open) reject(err);
    });
    s.once(ready, () => {
      open = true;
      resolve({
        write: (d) => void s.write(d),
        buffered: () => s.writableLength,
        destroy: () => s.destroy(),
      });
    });
  });
}

function connectNet(host: string, port: number, h: ConnHandlers): Promise<Conn> {
  return nodeConn(net.connect({ host, port, noDelay: true }), "connect", h);
}

/** The subset of Bun's socket API used here (declared locally so `deno check` passes). */
interface BunSocket {
  data: BunConn;
  write(d: Uint8Array): number;
  end(): void;
  terminate(): void;
}
interface BunApi {
  connect(o: {
    hostname: string;
    port: number;
    data: BunConn;
    socket: {
      binaryType: "uint8array";
      data(s: BunSocket, d: Uint8Array): void;
      drain(s: BunSocket): void;
      close(s: BunSocket): void;
      error(s: BunSocket, e: Error): void;
      connectError(s: BunSocket, e: Error): void;
    };
  }): Promise<BunSocket>;
}

class BunConn implements Conn {
  socket: BunSocket | null = null;
  private queue: Uint8Array[] = [];
  private queued = 0;
  closed = false;

  constructor(readonly h: ConnHandlers) {}

  write(d: Uint8Array): void {
    if (this.closed || this.socket === null) return;
    if (this.queued > 0) {
      this.queue.push(d);
      this.queued += d.length;
      return;
    }
    const n = this.socket.write(d);
    if (n < d.length) {
      const rest = d.subarray(Math.max(0, n));
      this.queue.push(rest);
      this.queued += rest.length;
    }
  }

  drain(): void {
    const s = this.socket;
    while (s !== null && this.queue.length > 0 && !this.closed) {
      const d = this.queue[0];
      const n = s.write(d);
      if (n < d.length) {
        const rest = d.subarray(Math.max(0, n));
        this.queued -= d.length - rest.length;
        this.queue[0] = rest;
        return;
      }
      this.queue.shift();
      this.queued -= d.length;
    }
  }

  buffered(): number {
    return this.queued;
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket?.terminate();
  }
}

const bunHandlers = {
  binaryType: "uint8array" as const,
  data(s: BunSocket, d: Uint8Array): void {
    s.data.h.data(d);
  },
  drain(s: BunSocket): void {
    s.data.drain();
  },
  close(s: BunSocket): void {
    const c = s.data;
    c.closed = true;
    c.h.close();
  },
  error(_s: BunSocket, _e: Error): void {},
  connectError(_s: BunSocket, _e: Error): void {},
};

export function bunApi(): BunApi | undefined {
  return (globalThis as { Bun?: BunApi }).Bun;
}

function connectBun(host: string, port: number, h: ConnHandlers): Promise<Conn> {
  const api = bunApi();
  if (api === undefined) return Promise.reject(new Error("Bun.connect is not available in this runtime"));
  const conn = new BunConn(h);
  return api.connect({ hostname: host, port, data: conn, socket: bunHandlers }).then((s) => {
    conn.socket = s;
    return conn;
  });
}

function connectTls(host: string, port: number, h: ConnHandlers): Promise<Conn> {
  const s = tls.connect({ host, port, rejectUnauthorized: false });
  s.setNoDelay(true);
  return nodeConn(s, "secureConnect", h);
}

/** RFC 6455 client frame header for a binary frame of n bytes, mask key 0 (see the top). */
function frameHeader(n: number): Uint8Array {
  if (n < 126) return Uint8Array.of(0x82, 0x80 | n, 0, 0, 0, 0);
  if (n < 65536) return Uint8Array.of(0x82, 0x80 | 126, n >> 8, n & 255, 0, 0, 0, 0);
  const h = new Uint8Array(14);
  h[0] = 0x82;
  h[1] = 0x80 | 127;
  new DataView(h.buffer).setUint32(6, n); // < 4 GiB
  return h;
}

/** Server frames (unmasked) in, the payloads of binary and continuation frames out. */
class WsReader {
  private pending: Uint8Array | undefined;

  constructor(private readonly out: (payload: Uint8Array) => void) {}

  push(chunk: Uint8Array): void {
    let b = chunk;
    if (this.pending !== undefined) {
      b = new Uint8Array(this.pending.length + chunk.length);
      b.set(this.pending);
      b.set(chunk, this.pending.length);
      this.pending = undefined;
    }
    let p = 0;
    while (b.length - p >= 2) {
      let len = b[p + 1] & 0x7f;
      let at = p + 2;
      if (len === 126) {
        if (b.length - p < 4) break;
        len = (b[p + 2] << 8) | b[p + 3];
        at = p + 4;
      } else if (len === 127) {
        if (b.length - p < 10) break;
        len = new DataView(b.buffer, b.byteOffset + p + 6, 4).getUint32(0);
        at = p + 10;
      }
      if (b.length < at + len) break;
      const op = b[p] & 0x0f;
      if (op === 2 || op === 0) this.out(b.subarray(at, at + len));
      p = at + len;
    }
    if (p < b.length) this.pending = b.slice(p);
  }
}

function connectWs(host: string, port: number, h: ConnHandlers): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, noDelay: true });
    let open = false;
    let head = new Uint8Array(0);
    const reader = new WsReader((payload) => h.data(payload));
    s.on("data", (chunk: Uint8Array) => {
      if (open) return reader.push(chunk);
      const all = new Uint8Array(head.length + chunk.length);
      all.set(head);
      all.set(chunk, head.length);
      head = all;
      let end = -1;
      for (let i = 3; i < all.length && end < 0; i++) {
        if (all[i] === 10 && all[i - 1] === 13 && all[i - 2] === 10 && all[i - 3] === 13) end = i + 1;
      }
      if (end < 0) return;
      const status = new TextDecoder().decode(all.subarray(0, end)).split("\r\n")[0];
      if (!status.startsWith("HTTP/1.1 101")) return void s.destroy(new Error(`WebSocket upgrade refused: ${status}`));
      open = true;
      if (end < all.length) reader.push(all.subarray(end));
      resolve({
        write: (d) => {
          s.write(frameHeader(d.length));
          s.write(d);
        },
        buffered: () => s.writableLength,
        destroy: () => s.destroy(),
      });
    });
    s.on("close", () => h.close());
    s.on("error", (err: Error) => {
      if (!open) reject(err);
    });
    s.once("connect", () => {
      s.write(
        `GET /mqtt HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          "Sec-WebSocket-Key: Y29saWJyaS1iZW5jaC0xNg==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
      );
    });
  });
}

export function connector(kind: TransportKind, wire: Wire = "tcp"): Connector {
  if (wire === "tls") return connectTls;
  if (wire === "ws") return connectWs;
  return kind === "bun" ? connectBun : connectNet;
}

/** Bun.connect under Bun, node:net elsewhere. */
export function defaultTransport(): TransportKind {
  return bunApi() !== undefined ? "bun" : "net";
}
