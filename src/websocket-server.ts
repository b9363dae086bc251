/**
 * MQTT over WebSocket on any byte-stream listener: the HTTP upgrade (RFC 6455 §4.2) and the
 * framing (src/websocket-frames.ts) as an Acceptor around the core's, the way the PROXY
 * protocol is one (src/proxy-protocol.ts). The Deno adapter puts it on its TCP and node:tls
 * listeners, so ws:// and wss:// get what those have: client certificates and identity,
 * certificate reload, lingering close, and reads that stop with pauseReading.
 *
 * Bounds: the request head is at most MAX_HEAD bytes (431 past it) and must arrive within
 * HANDSHAKE_MS of the connection; a message past maxMessageSize closes with 1009; payload
 * bytes reach the core as they arrive, so nothing else is held per connection.
 */
import { createHash } from "node:crypto";
import { decideUpgrade } from "./websocket-upgrade.ts";
import { CLOSE, closeFrame, FrameDecoder, framed, OP } from "./websocket-frames.ts";
import type { Acceptor, Connection, ConnectionEvents } from "./transport.ts";

export const MAX_HEAD = 8192;
export const HANDSHAKE_MS = 10_000;
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const END = [13, 10, 13, 10];
const enc = new TextEncoder();
const REASONS: Record<number, string> = {
  101: "Switching Protocols", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 426: "Upgrade Required", 431: "Request Header Fields Too Large",
};

export interface WebSocketOptions {
  /** The one path that upgrades ("" = any). */
  path: string;
  /** Largest message (bytes) before the connection is closed with 1009. */
  maxMessageSize: number;
  handshakeMs?: number;
}

interface Request {
  method: string;
  pathname: string;
  headers: Map<string, string>;
}

/** Request line and headers of an HTTP/1.1 request head (without the blank line). */
function parseHead(bytes: Uint8Array): Request | undefined {
  const lines = new TextDecoder("latin1").decode(bytes).split("\r\n");
  const m = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(lines[0]);
  if (!m) return undefined;
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const c = line.indexOf(":");
    if (c <= 0) return undefined;
    const name = line.slice(0, c).trim().toLowerCase();
    const value = line.slice(c + 1).trim();
    const had = headers.get(name);
    headers.set(name, had === undefined ? value : `${had}, ${value}`);
  }
  let target = m[2];
  if (/^https?:\/\//i.test(target)) {
    try {
      target = new URL(target).pathname;
    } catch {
      return undefined;
    }
  }
  const q = target.indexOf("?");
  return { method: m[1], pathname: q < 0 ? target : target.slice(0, q), headers };
}

function endOfHead(b: Uint8Array, from: number): number {
  for (let i = Math.max(0, from - 3); i + 3 < b.length; i++) {
    if (b[i] === END[0] && b[i + 1] === END[1] && b[i + 2] === END[2] && b[i + 3] === END[3]) return i;
  }
  return -1;
}

function response(status: number, headers: Record<string, string>, body = ""): Uint8Array {
  const b = enc.encode(body);
  let text = `HTTP/1.1 ${status} ${REASONS[status] ?? ""}\r\n`;
  for (const [k, v] of Object.entries(headers)) text += `${k}: ${v}\r\n`;
  if (status !== 101) text += `content-length: ${b.length}\r\nconnection: close\r\n`;
  const h = enc.encode(text + "\r\n");
  if (b.length === 0) return h;
  const out = new Uint8Array(h.length + b.length);
  out.set(h);
  out.set(b, h.length);
  return out;
}

export function withWebSocket(inner: Acceptor, opts: WebSocketOptions): Acceptor {
  return {
    accept(conn: Connection): ConnectionEvents {
      let head: Uint8Array | undefined = new Uint8Array(0); // the request so far; undefined once upgraded
      let events: ConnectionEvents | undefined;
      let closing = false;
      const timer = setTimeout(() => {
        if (head !== undefined) refuse(400, {}, "no WebSocket upgrade request within the time allowed\n");
      }, opts.handshakeMs ?? HANDSHAKE_MS);
      const refuse = (status: number, headers: Record<string, string>, body: string) => {
        head = undefined;
        closing = true;
        clearTimeout(timer);
        conn.write(response(status, { "content-type": "text/plain; charset=utf-8", ...headers }, body));
        conn.close();
      };
      /** Our close frame, then the socket's lingering close; nothing is sent after it. */
      const shut = (code: number, reason = "") => {
        if (closing) return;
        closing = true;
        decoder.stop();
        conn.write(closeFrame(code, reason));
        conn.close();
      };
      const ws: Connection = {
        get remote() {
          return conn.remote;
        },
        get identity() {
          return conn.identity;
        },
        get bufferedAmount() {
          return conn.bufferedAmount;
        },
        write(bytes: Uint8Array): boolean {
          if (closing) return false;
          return conn.write(framed(OP.binary, bytes));
        },
        close: () => shut(CLOSE.normal),
        pauseReading: () => conn.pauseReading?.(),
        resumeReading: () => conn.resumeReading?.(),
      };
      const decoder = new FrameDecoder({
        data: (b) => events!.data(b),
        control: (op, payload) => {
          if (op === OP.ping) {
            if (!closing) conn.write(framed(OP.pong, payload));
          } else if (op === OP.close) {
            // the peer closes: answer with its code (RFC 6455 §5.5.1) and close the socket
            const code = payload.length >= 2 ? (payload[0] << 8) | payload[1] : CLOSE.normal;
            shut(code === CLOSE.noStatus ? CLOSE.normal : code);
          }
        },
        fail: (code, reason) => shut(code, reason),
      }, opts.maxMessageSize);

      const upgrade = (bytes: Uint8Array) => {
        let buf = bytes;
        const had = head!.length;
        if (had > 0) {
          buf = new Uint8Array(had + bytes.length);
          buf.set(head!);
          buf.set(bytes, had);
        }
        const end = endOfHead(buf, had);
        if (end < 0) {
          if (buf.length > MAX_HEAD) refuse(431, {}, `the request head is larger than ${MAX_HEAD} bytes\n`);
          else head = buf;
          return;
        }
        if (end > MAX_HEAD) return refuse(431, {}, `the request head is larger than ${MAX_HEAD} bytes\n`);
        const req = parseHead(buf.subarray(0, end));
        if (!req) return refuse(400, {}, "malformed HTTP request\n");
        const d = decideUpgrade(req.method, req.pathname, (h) => req.headers.get(h) ?? null, opts.path);
        if (!d.upgrade) return refuse(d.status, d.headers, d.body);
        const key = req.headers.get("sec-websocket-key") ?? "";
        if (!/^[A-Za-z0-9+/]{22}==$/.test(key)) return refuse(400, {}, "Sec-WebSocket-Key is missing or not 16 bytes in base64\n");
        if (req.headers.get("sec-websocket-version") !== "13") {
          return refuse(426, { "sec-websocket-version": "13" }, "this server speaks WebSocket version 13\n");
        }
        const accept = createHash("sha1").update(key + GUID).digest("base64");
        head = undefined;
        clearTimeout(timer);
        conn.write(response(101, {
          upgrade: "websocket", connection: "Upgrade", "sec-websocket-accept": accept, "sec-websocket-protocol": d.protocol,
        }));
        events = inner.accept(ws);
        if (buf.length > end + 4) decoder.push(buf.subarray(end + 4));
      };

      return {
        data(bytes) {
          if (events !== undefined) decoder.push(bytes);
          else if (head !== undefined) upgrade(bytes);
        },
        drain: () => events?.drain(),
        close(err) {
          clearTimeout(timer);
          closing = true;
          decoder.stop();
          events?.close(err);
        },
      };
    },
  };
}
