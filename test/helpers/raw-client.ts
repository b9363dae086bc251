/**
 * A raw-packet MQTT client for black-box wire tests: bytes in, bytes out, over a real
 * TCP socket (node:net, so it runs under both `deno test` and `bun test`).
 *
 *   const { client, connack } = await connectV5(port, "c1");
 *   assert.equal(connack.reasonCode, 0);
 *   client.sendPacket({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "a/#", qos: 1 }] });
 *   const suback = await client.expectPacket("suback");
 *   client.send(new Uint8Array([0xc0, 0x00]));            // PINGREQ, by hand
 *   await client.expectPacket("pingresp");
 *   client.destroy();
 *
 * Incoming bytes are split into frames by the fixed header's Remaining Length, so every
 * received packet keeps its exact bytes (`nextFrame()`), and each frame is decoded with
 * mqtt-packet's parser for the current protocol version (set from the CONNECT sent, or
 * `setProtocolVersion`). A frame the parser rejects is reported with its bytes.
 *
 * Failed expectations throw AssertionError with a message that says what was expected
 * and what arrived, e.g. "expected suback within 2000 ms, got nothing".
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import net from "node:net";
import {
  generate,
  type IConnackPacket,
  type IConnectPacket,
  type IPublishPacket,
  type ISubackPacket,
  type ISubscription,
  type Packet,
  parser,
} from "mqtt-packet";

export type { Packet };
export type ProtocolVersion = 3 | 4 | 5;
export type PacketCmd = Packet["cmd"];
/** The packet type for a command name: PacketOf<"suback"> is ISubackPacket. */
export type PacketOf<C extends PacketCmd> = Extract<Packet, { cmd: C }>;

export const DEFAULT_TIMEOUT_MS = 2000;

/** One received MQTT control packet: its exact bytes, and the decoded packet or why decoding failed. */
export interface Frame {
  bytes: Uint8Array;
  packet?: Packet;
  error?: Error;
}

/** Short, readable description of a packet for assertion messages. */
export function describePacket(p: Packet | Frame | undefined): string {
  if (p === undefined) return "nothing";
  if ("bytes" in p && !("cmd" in p)) {
    return p.packet ? describePacket(p.packet) : `undecodable frame ${hex(p.bytes)} (${p.error?.message})`;
  }
  const json = JSON.stringify(p, (key, value) => {
    if (key === "length") return undefined;
    if (value && typeof value === "object" && value.type === "Buffer" && Array.isArray(value.data)) {
      const b = Buffer.from(value.data);
      return /^[\x20-\x7e]*$/.test(b.toString("latin1")) ? b.toString("latin1") : `<hex ${b.toString("hex")}>`;
    }
    return value;
  });
  return json.length > 400 ? json.slice(0, 400) + "…" : json;
}

export function hex(bytes: Uint8Array): string {
  const s = Buffer.from(bytes).toString("hex").replace(/(..)/g, "$1 ").trim();
  return s.length > 200 ? s.slice(0, 200) + " …" : s;
}

const all = new Set<RawClient>();

export class RawClient {
  readonly socket: net.Socket;
  /** True once the socket is closed (by either side). */
  closed = false;
  /** The socket error, if the connection ended with one (ECONNRESET, ...). */
  socketError: Error | undefined;
  /** Every byte received, in order. */
  readonly received: Uint8Array[] = [];
  #version: ProtocolVersion = 4;
  #pending: Uint8Array = new Uint8Array(0);
  #frames: Frame[] = [];
  #listeners = new Set<() => void>();
  #framingBroken = false;
  #nextId = 0;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on("data", (chunk: Uint8Array) => this.#onData(chunk));
    socket.on("error", (err) => (this.socketError = err));
    socket.on("close", () => {
      this.closed = true;
      all.delete(this);
      this.#notify();
    });
    all.add(this);
  }

  /** Opens a TCP connection; rejects with a clear message if nothing listens. */
  static connect(port: number, host = "127.0.0.1", timeoutMs = DEFAULT_TIMEOUT_MS, localAddress?: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host, localAddress });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`could not connect to ${host}:${port} within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once("error", (err) => {
        clearTimeout(timer);
        socket.destroy();
        reject(new Error(`could not connect to ${host}:${port}: ${err.message}`));
      });
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.removeAllListeners("error");
        resolve(new RawClient(socket));
      });
    });
  }

  /** Destroys every RawClient still open (handy in `after`/`afterEach`). */
  static destroyAll(): void {
    for (const c of [...all]) c.destroy();
  }

  get protocolVersion(): ProtocolVersion {
    return this.#version;
  }

  /** Protocol version used to decode incoming packets and encode outgoing ones. */
  setProtocolVersion(v: ProtocolVersion): void {
    this.#version = v;
  }

  /** Next free packet identifier (1..65535, wrapping). */
  nextMessageId(): number {
    this.#nextId = (this.#nextId % 65535) + 1;
    return this.#nextId;
  }

  // ---- sending ----------------------------------------------------------------

  /** Writes raw bytes. Never throws: writing to a closed socket is silently dropped. */
  send(bytes: Uint8Array): void {
    if (this.closed || this.socket.destroyed) return;
    this.socket.write(bytes, () => {});
  }

  /**
   * Encodes `packet` with mqtt-packet and writes it. A CONNECT also switches this client
   * to its protocol version (default 4). Returns the bytes sent.
   */
  sendPacket(packet: Packet, protocolVersion?: ProtocolVersion): Uint8Array {
    if (packet.cmd === "connect") {
      const v = protocolVersion ?? packet.protocolVersion ?? 4;
      this.#version = v;
      packet = { protocolId: v === 3 ? "MQIsdp" : "MQTT", ...packet, protocolVersion: v };
    }
    const bytes = generate(packet, { protocolVersion: protocolVersion ?? this.#version });
    this.send(bytes);
    return bytes;
  }

  // ---- receiving --------------------------------------------------------------

  #onData(chunk: Uint8Array): void {
    this.received.push(chunk);
    if (this.#framingBroken) return;
    const buf = new Uint8Array(this.#pending.length + chunk.length);
    buf.set(this.#pending);
    buf.set(chunk, this.#pending.length);
    let pos = 0;
    while (buf.length - pos >= 2) {
      // Remaining Length: variable byte integer, at most 4 bytes
      let remaining = 0;
      let multiplier = 1;
      let i = pos + 1;
      let complete = false;
      for (; i < buf.length && i < pos + 5; i++) {
        remaining += (buf[i] & 0x7f) * multiplier;
        multiplier *= 128;
        if ((buf[i] & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete) {
        if (i >= pos + 5) {
          this.#framingBroken = true;
          const bytes = buf.slice(pos, pos + 5);
          this.#frames.push({ bytes, error: new Error("Remaining Length longer than 4 bytes") });
          pos = buf.length;
        }
        break;
      }
      const end = i + 1 + remaining;
      if (end > buf.length) break;
      this.#frames.push(this.#decode(buf.slice(pos, end)));
      pos = end;
    }
    this.#pending = buf.slice(pos);
    this.#notify();
  }

  #decode(bytes: Uint8Array): Frame {
    const frame: Frame = { bytes };
    const p = parser({ protocolVersion: this.#version });
    p.on("packet", (packet: Packet) => (frame.packet ??= packet));
    p.on("error", (err: Error) => (frame.error ??= err));
    try {
      p.parse(Buffer.from(bytes));
    } catch (err) {
      frame.error ??= err as Error;
    }
    if (frame.packet === undefined && frame.error === undefined) frame.error = new Error("parser produced no packet");
    if (frame.error) frame.packet = undefined;
    return frame;
  }

  #notify(): void {
    for (const l of [...this.#listeners]) l();
  }

  /**
   * Resolves with `check()`'s first non-undefined result, re-evaluated whenever data
   * arrives or the socket closes. On timeout rejects with AssertionError(onTimeout()).
   */
  #waitFor<T>(check: () => T | undefined, timeoutMs: number, onTimeout: () => string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const run = () => {
        let v: T | undefined;
        try {
          v = check();
        } catch (err) {
          finish();
          reject(err);
          return;
        }
        if (v !== undefined) {
          finish();
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new assert.AssertionError({ message: onTimeout() }));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.#listeners.delete(run);
      };
      this.#listeners.add(run);
      run();
    });
  }

  #closedNote(): string {
    if (!this.closed) return "";
    return this.socketError ? ` (connection closed: ${this.socketError.message})` : " (the server closed the connection)";
  }

  /** Packets received and not yet read. */
  get unread(): readonly Frame[] {
    return this.#frames;
  }

  /** The next received frame (bytes + decoded packet), without judging it. */
  nextFrame(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Frame> {
    return this.#waitFor(
      () => {
        if (this.#frames.length) return this.#frames.shift();
        if (this.closed) fail(`expected a packet, got nothing${this.#closedNote()}`);
        return undefined;
      },
      timeoutMs,
      () => `expected a packet within ${timeoutMs} ms, got nothing`,
    );
  }

  /** The next packet, decoded. Fails on timeout, on close, or if the bytes do not decode. */
  async nextPacket(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Packet> {
    const frame = await this.nextFrame(timeoutMs);
    if (!frame.packet) fail(`received a packet that does not decode: ${describePacket(frame)}`);
    return frame.packet;
  }

  /** The next packet, which must be a `cmd`. */
  expectPacket<C extends PacketCmd>(cmd: C, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<PacketOf<C>> {
    return this.#waitFor(
      () => {
        const frame = this.#frames.shift();
        if (frame === undefined) {
          if (this.closed) fail(`expected ${cmd}, got nothing${this.#closedNote()}`);
          return undefined;
        }
        if (frame.packet?.cmd !== cmd) fail(`expected ${cmd}, got ${describePacket(frame)}`);
        return frame.packet as PacketOf<C>;
      },
      timeoutMs,
      () => `expected ${cmd} within ${timeoutMs} ms, got nothing`,
    );
  }

  /**
   * The first packet of type `cmd` (and matching `match`, if given), skipping over others,
   * which stay unread in order. Use when unrelated traffic may come first.
   */
  waitForPacket<C extends PacketCmd>(
    cmd: C,
    match: (p: PacketOf<C>) => boolean = () => true,
    timeoutMs = DEFAULT_TIMEOUT_MS,
  ): Promise<PacketOf<C>> {
    return this.#waitFor(
      () => {
        const i = this.#frames.findIndex((f) => f.packet?.cmd === cmd && match(f.packet as PacketOf<C>));
        if (i >= 0) return this.#frames.splice(i, 1)[0].packet as PacketOf<C>;
        if (this.closed) fail(`expected a matching ${cmd}, got ${this.#unreadSummary()}${this.#closedNote()}`);
        return undefined;
      },
      timeoutMs,
      () => `expected a matching ${cmd} within ${timeoutMs} ms, got ${this.#unreadSummary()}`,
    );
  }

  #unreadSummary(): string {
    if (this.#frames.length === 0) return "nothing";
    return this.#frames.map((f) => describePacket(f)).join(", ");
  }

  /** Waits `ms` and fails if any packet arrives meanwhile (a close is not a packet). */
  async expectNoPacket(ms = 300): Promise<void> {
    const arrived = await this.#waitFor<Frame | false>(
      () => (this.#frames.length ? this.#frames[0] : undefined),
      ms,
      () => "",
    ).catch(() => false as const);
    if (arrived) fail(`expected no packet for ${ms} ms, got ${describePacket(arrived)}`);
  }

  /** Resolves when the connection is closed; fails if it is still open after `timeoutMs`. */
  waitClose(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
    return this.#waitFor(
      () => (this.closed ? true : undefined),
      timeoutMs,
      () =>
        `expected the server to close the connection within ${timeoutMs} ms, it stayed open` +
        (this.#frames.length ? `; unread: ${this.#unreadSummary()}` : ""),
    ).then(() => undefined);
  }

  // ---- conveniences -------------------------------------------------------------

  /**
   * SUBSCRIBE and await the SUBACK with the same packet identifier. Other packets that
   * arrive meanwhile (e.g. retained messages) stay unread, in order.
   */
  async subscribe(
    subscriptions: string | ISubscription | ISubscription[],
    opts: { qos?: 0 | 1 | 2; properties?: ISubscribePacketProperties; timeoutMs?: number } = {},
  ): Promise<ISubackPacket> {
    const subs: ISubscription[] = typeof subscriptions === "string"
      ? [{ topic: subscriptions, qos: opts.qos ?? 0 }]
      : Array.isArray(subscriptions)
      ? subscriptions
      : [subscriptions];
    const messageId = this.nextMessageId();
    this.sendPacket({ cmd: "subscribe", messageId, subscriptions: subs, properties: opts.properties });
    return await this.waitForPacket("suback", (p) => p.messageId === messageId, opts.timeoutMs);
  }

  /**
   * PUBLISH and complete the QoS flow: QoS 1 awaits PUBACK, QoS 2 awaits PUBREC, sends
   * PUBREL, awaits PUBCOMP (stops at a PUBREC with a failure reason code). Acks are
   * matched by packet identifier; other packets arriving meanwhile stay unread, in order.
   * Returns the last ack (undefined for QoS 0).
   */
  async publish(
    topic: string,
    payload: string | Uint8Array,
    opts: {
      qos?: 0 | 1 | 2;
      retain?: boolean;
      dup?: boolean;
      properties?: IPublishPacket["properties"];
      timeoutMs?: number;
    } = {},
  ): Promise<Packet | undefined> {
    const qos = opts.qos ?? 0;
    const messageId = qos > 0 ? this.nextMessageId() : undefined;
    this.sendPacket({
      cmd: "publish",
      topic,
      payload: typeof payload === "string" ? payload : Buffer.from(payload),
      qos,
      retain: opts.retain ?? false,
      dup: opts.dup ?? false,
      messageId,
      properties: opts.properties,
    });
    if (qos === 0) return undefined;
    const sameId = (p: Packet) => p.messageId === messageId;
    if (qos === 1) return await this.waitForPacket("puback", sameId, opts.timeoutMs);
    const pubrec = await this.waitForPacket("pubrec", sameId, opts.timeoutMs);
    if (pubrec.reasonCode !== undefined && pubrec.reasonCode >= 0x80) return pubrec;
    this.sendPacket({ cmd: "pubrel", messageId });
    const pubcomp = await this.waitForPacket("pubcomp", sameId, opts.timeoutMs);
    return pubcomp;
  }

  /** Sends DISCONNECT (with a reason code under MQTT 5) and half-closes. */
  disconnect(reasonCode?: number): void {
    this.sendPacket(
      this.#version === 5 ? { cmd: "disconnect", reasonCode: reasonCode ?? 0 } : { cmd: "disconnect" },
    );
    this.end();
  }

  /** Half-closes (FIN); the server may still send. */
  end(): void {
    if (!this.socket.destroyed) this.socket.end();
  }

  /** Closes immediately (no DISCONNECT: for the broker, an abnormal disconnect). */
  destroy(): void {
    this.socket.destroy();
  }
}

type ISubscribePacketProperties = Extract<Packet, { cmd: "subscribe" }>["properties"];

function fail(message: string): never {
  throw new assert.AssertionError({ message });
}

/** CONNECT fields a test may set; `cmd`, `clientId` and `protocolVersion` come from the helper. */
export type ConnectOptions = Partial<Omit<IConnectPacket, "cmd" | "clientId" | "protocolVersion">> & {
  host?: string;
  timeoutMs?: number;
  /** Source address to connect from (any 127.x.y.z works on Linux loopback). */
  localAddress?: string;
};

async function connectWith(
  version: ProtocolVersion,
  port: number,
  clientId: string,
  opts: ConnectOptions,
): Promise<{ client: RawClient; connack: IConnackPacket }> {
  const { host, timeoutMs, localAddress, ...fields } = opts;
  const client = await RawClient.connect(port, host, timeoutMs, localAddress);
  client.sendPacket({ cmd: "connect", clientId, protocolVersion: version, clean: true, keepalive: 60, ...fields });
  try {
    const connack = await client.expectPacket("connack", timeoutMs);
    return { client, connack };
  } catch (err) {
    client.destroy();
    throw err;
  }
}

/** TCP connect, MQTT 5 CONNECT, await CONNACK (whatever its reason code). */
export function connectV5(port: number, clientId: string, opts: ConnectOptions = {}) {
  return connectWith(5, port, clientId, opts);
}

/** TCP connect, MQTT 3.1.1 CONNECT, await CONNACK (whatever its return code). */
export function connectV4(port: number, clientId: string, opts: ConnectOptions = {}) {
  return connectWith(4, port, clientId, opts);
}

/** TCP connect, MQTT 3.1 (MQIsdp) CONNECT, await CONNACK (whatever its return code). */
export function connectV3(port: number, clientId: string, opts: ConnectOptions = {}) {
  return connectWith(3, port, clientId, opts);
}

/** MQTT 3.1.1 or 5.0 CONNECT by version number (tests that run once per version). */
export function connectVersion(v: 4 | 5, port: number, clientId: string, opts: ConnectOptions = {}) {
  return v === 5 ? connectV5(port, clientId, opts) : connectV4(port, clientId, opts);
}

/** A PUBLISH payload as text. */
export const payloadText = (p: PacketOf<"publish">): string => Buffer.from(p.payload).toString();

/** Every PUBLISH that arrives within `ms` (QoS 1 acknowledged, QoS 2 PUBREC'd). */
export async function drainPublishes(c: RawClient, ms = 200): Promise<PacketOf<"publish">[]> {
  const out: PacketOf<"publish">[] = [];
  const deadline = Date.now() + ms;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) return out;
    let p: PacketOf<"publish">;
    try {
      p = await c.waitForPacket("publish", () => true, left);
    } catch {
      return out;
    }
    out.push(p);
    if (p.qos === 1) c.sendPacket({ cmd: "puback", messageId: p.messageId });
    if (p.qos === 2) c.sendPacket({ cmd: "pubrec", messageId: p.messageId });
  }
}

/** A payload of `size` bytes carrying `seq` in its first four bytes (see seqOf). */
export function seqPayload(seq: number, size: number): Uint8Array {
  const b = Buffer.alloc(size, seq & 255);
  b.writeUInt32BE(seq, 0);
  return b;
}

/** The sequence number of a seqPayload. */
export const seqOf = (p: PacketOf<"publish">): number => Buffer.from(p.payload).readUInt32BE(0);
