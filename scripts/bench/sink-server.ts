/**
 * The "sink": a trivial MQTT-speaking server used to measure the load generator's own ceiling.
 * It acknowledges CONNECT/SUBSCRIBE, answers the QoS 1/2 handshakes, and copies each PUBLISH
 * frame byte for byte to every subscriber whose filter matches. Filters: an exact topic, a topic
 * whose last level is '+', or '#'. No sessions, no queues, no packet id rewriting.
 *
 * Usage: bun scripts/bench/sink-server.ts <port>
 */
import net from "node:net";
import process from "node:process";
import { Buffer } from "node:buffer";
import { FrameReader } from "./frame-reader.ts";

interface Peer {
  /** Takes ownership of `bytes`. */
  send(bytes: Uint8Array): void;
  parts: Uint8Array[];
  filters: string[];
}

const byFilter = new Map<string, Peer[]>();
const dirty: Peer[] = [];

function queue(p: Peer, bytes: Uint8Array): void {
  if (p.parts.length === 0) dirty.push(p);
  p.parts.push(bytes);
}

function flush(): void {
  for (const p of dirty) {
    p.send(p.parts.length === 1 ? p.parts[0].slice() : Buffer.concat(p.parts));
    p.parts = [];
  }
  dirty.length = 0;
}

function route(topic: string, frame: Uint8Array): void {
  const exact = byFilter.get(topic);
  if (exact !== undefined) for (const s of exact) queue(s, frame);
  const slash = topic.lastIndexOf("/");
  if (slash >= 0) {
    const plus = byFilter.get(topic.slice(0, slash + 1) + "+");
    if (plus !== undefined) for (const s of plus) queue(s, frame);
  }
  const all = byFilter.get("#");
  if (all !== undefined) for (const s of all) queue(s, frame);
}

const latin1 = new TextDecoder("latin1");

function handle(p: Peer, type: number, flags: number, buf: Uint8Array, start: number, end: number): void {
  switch (type) {
    case 1: // CONNECT
      queue(p, new Uint8Array([0x20, 2, 0, 0]));
      return;
    case 3: {
      const tlen = (buf[start] << 8) | buf[start + 1];
      const topic = latin1.decode(buf.subarray(start + 2, start + 2 + tlen));
      const header = end - start < 128 ? 2 : end - start < 16384 ? 3 : 4;
      route(topic, buf.subarray(start - header, end));
      const qos = (flags >> 1) & 3;
      if (qos > 0) {
        const i = start + 2 + tlen;
        queue(p, new Uint8Array([qos === 1 ? 0x40 : 0x50, 2, buf[i], buf[i + 1]]));
      }
      return;
    }
    case 5: // PUBREC from a subscriber
      queue(p, new Uint8Array([0x62, 2, buf[start], buf[start + 1]]));
      return;
    case 6: // PUBREL from a publisher
      queue(p, new Uint8Array([0x70, 2, buf[start], buf[start + 1]]));
      return;
    case 8: {
      const granted: number[] = [];
      let i = start + 2;
      while (i < end) {
        const len = (buf[i] << 8) | buf[i + 1];
        const filter = latin1.decode(buf.subarray(i + 2, i + 2 + len));
        granted.push(buf[i + 2 + len] & 3);
        i += 3 + len;
        const list = byFilter.get(filter) ?? [];
        list.push(p);
        byFilter.set(filter, list);
        p.filters.push(filter);
      }
      queue(p, new Uint8Array([0x90, 2 + granted.length, buf[start], buf[start + 1], ...granted]));
      return;
    }
    case 12: // PINGREQ
      queue(p, new Uint8Array([0xd0, 0]));
      return;
    default: // PUBACK, PUBCOMP, DISCONNECT: nothing to do
      return;
  }
}

function forget(p: Peer): void {
  for (const f of p.filters) {
    const list = byFilter.get(f);
    if (list === undefined) continue;
    const rest = list.filter((x) => x !== p);
    if (rest.length === 0) byFilter.delete(f);
    else byFilter.set(f, rest);
  }
  p.filters = [];
}

/** The subset of Bun.listen used here, declared locally so that `deno check` passes. */
interface BunSocket {
  data: { peer: Peer; reader: FrameReader; queue: Uint8Array[] };
  write(d: Uint8Array): number;
}
interface BunListen {
  listen(o: {
    hostname: string;
    port: number;
    socket: {
      binaryType: "uint8array";
      open(s: BunSocket): void;
      data(s: BunSocket, d: Uint8Array): void;
      drain(s: BunSocket): void;
      close(s: BunSocket): void;
      error(s: BunSocket, e: Error): void;
    };
  }): unknown;
}

function connection(send: (b: Uint8Array) => void): { peer: Peer; reader: FrameReader } {
  const peer: Peer = { send, parts: [], filters: [] };
  const reader = new FrameReader((type, flags, buf, start, end) => handle(peer, type, flags, buf, start, end));
  return { peer, reader };
}

/** Bun.listen: writes may be partial; the rest waits for `drain`. */
function writeOrQueue(s: BunSocket, b: Uint8Array): void {
  const q = s.data.queue;
  if (q.length > 0) {
    q.push(b);
    return;
  }
  const n = s.write(b);
  if (n < b.length) q.push(b.subarray(Math.max(0, n)));
}

function listenBun(api: BunListen, port: number): void {
  api.listen({
    hostname: "127.0.0.1",
    port,
    socket: {
      binaryType: "uint8array",
      open(s) {
        s.data = { ...connection((b) => writeOrQueue(s, b)), queue: [] };
      },
      data(s, d) {
        s.data.reader.push(d);
        flush();
      },
      drain(s) {
        const q = s.data.queue;
        while (q.length > 0) {
          const b = q[0];
          const n = s.write(b);
          if (n < b.length) {
            q[0] = b.subarray(Math.max(0, n));
            return;
          }
          q.shift();
        }
      },
      close(s) {
        forget(s.data.peer);
      },
      error() {},
    },
  });
}

function listenNet(port: number): void {
  const server = net.createServer({ noDelay: true }, (sock) => {
    const { peer, reader } = connection((b) => void sock.write(b));
    sock.on("data", (chunk: Uint8Array) => {
      reader.push(chunk);
      flush();
    });
    sock.on("error", () => sock.destroy());
    sock.on("close", () => forget(peer));
  });
  server.listen(port, "127.0.0.1");
}

const port = Number(process.argv[2]);
const bun = (globalThis as { Bun?: BunListen }).Bun;
if (bun !== undefined && process.env.SINK_TRANSPORT !== "net") listenBun(bun, port);
else listenNet(port);
console.log(`sink listening on 127.0.0.1:${port}`);
process.on("SIGTERM", () => process.exit(0));
