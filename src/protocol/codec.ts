/**
 * The only importer of mqtt-packet. Splits a byte stream into frames (enforcing the maximum
 * packet size before buffering a whole oversized packet), decodes frames into packets and
 * encodes packets. PUBLISH goes through the hand-written publish-codec.ts.
 *
 * One mqtt-packet parser is shared by every connection: it is fed exactly one complete frame
 * at a time and emits synchronously, so no per-connection parser state (memory per idle
 * connection matters).
 */
import mqtt from "mqtt-packet";
import type { Packet as MqttPacket } from "mqtt-packet";
import { MqttError, RC } from "./reason-codes.ts";
import { decodePublish, type PublishPacket } from "./publish-codec.ts";

export type { PublishPacket } from "./publish-codec.ts";
export type {
  IConnackPacket as ConnackPacket,
  IConnectPacket as ConnectPacket,
  IDisconnectPacket as DisconnectPacket,
  IPubackPacket as PubackPacket,
  IPubcompPacket as PubcompPacket,
  IPubrecPacket as PubrecPacket,
  IPubrelPacket as PubrelPacket,
  ISubackPacket as SubackPacket,
  ISubscribePacket as SubscribePacket,
  IUnsubackPacket as UnsubackPacket,
  IUnsubscribePacket as UnsubscribePacket,
  IAuthPacket as AuthPacket,
} from "mqtt-packet";

export type Packet = Exclude<MqttPacket, { cmd: "publish" }> | PublishPacket;

// deno-lint-ignore no-explicit-any
type AnyParser = any;
const shared: AnyParser = mqtt.parser({ protocolVersion: 4 });
const SETTINGS: Record<number, { protocolVersion: number }> = {
  3: { protocolVersion: 3 }, 4: { protocolVersion: 4 }, 5: { protocolVersion: 5 },
};
let parsed: MqttPacket | undefined;
let parseError: Error | undefined;
shared.on("packet", (p: MqttPacket) => { parsed = p; });
shared.on("error", (e: Error) => { parseError = e; });

export interface FrameConsumer {
  /** One complete frame; return false to pause (the rest is held until the next push). */
  onFrame(frame: Uint8Array, bodyStart: number): boolean;
}

/**
 * Accumulates bytes and yields complete frames. A frame whose declared size exceeds
 * maxPacketSize is refused from its fixed header alone [MQTT-3.1.2-24] (0x95).
 */
export class Framer {
  private pending: Uint8Array | undefined;
  constructor(public maxPacketSize: number) {}

  /**
   * Calls consumer.onFrame(frame, bodyStart) per complete frame (a method, not a closure: no
   * per-connection function object); throws MqttError on bad framing.
   */
  push(chunk: Uint8Array, consumer: FrameConsumer): void {
    let buf = chunk;
    if (this.pending) {
      const merged = new Uint8Array(this.pending.length + chunk.length);
      merged.set(this.pending);
      merged.set(chunk, this.pending.length);
      buf = merged;
      this.pending = undefined;
    }
    let p = 0;
    const n = buf.length;
    while (p < n) {
      if (n - p < 2) break;
      let len = 0, mul = 1, i = 1, complete = false;
      for (; i <= 4; i++) {
        if (p + i >= n) break;
        const c = buf[p + i];
        len += (c & 127) * mul;
        if ((c & 128) === 0) { complete = true; break; }
        mul *= 128;
      }
      if (!complete) {
        if (i > 4) throw new MqttError(RC.MALFORMED_PACKET, "remaining length longer than 4 bytes");
        break; // need more bytes for the length
      }
      const bodyStart = i + 1;
      const total = bodyStart + len;
      if (total > this.maxPacketSize) {
        throw new MqttError(RC.PACKET_TOO_LARGE, `packet of ${total} bytes exceeds the maximum packet size ${this.maxPacketSize}`);
      }
      if (p + total > n) break;
      if (!consumer.onFrame(buf.subarray(p, p + total), bodyStart)) {
        // consumer paused: keep the rest for later
        p += total;
        if (p < n) this.pending = buf.slice(p);
        return;
      }
      p += total;
    }
    if (p < n) this.pending = buf.slice(p);
  }

  /** Hold bytes without framing them (the consumer is paused); push() frames them later. */
  append(chunk: Uint8Array): void {
    if (!this.pending) {
      this.pending = chunk.slice();
      return;
    }
    const merged = new Uint8Array(this.pending.length + chunk.length);
    merged.set(this.pending);
    merged.set(chunk, this.pending.length);
    this.pending = merged;
  }

  /** Bytes held waiting for the rest of a frame (or paused frames). */
  get buffered(): number {
    return this.pending ? this.pending.length : 0;
  }

  /** Take the held bytes (used to resume after a pause). */
  take(): Uint8Array | undefined {
    const p = this.pending;
    this.pending = undefined;
    return p;
  }
}

/** The protocol level byte of a CONNECT frame, or -1 when it cannot be read. */
export function connectProtocolLevel(frame: Uint8Array, bodyStart: number): number {
  const p = bodyStart;
  if (frame.length < p + 2) return -1;
  const nameLen = (frame[p] << 8) | frame[p + 1];
  const at = p + 2 + nameLen;
  return at < frame.length ? frame[at] & 0x7f : -1;
}

/** Decode one complete frame. Throws MqttError(0x81 malformed / 0x82 protocol error). */
export function decode(frame: Uint8Array, bodyStart: number, version: number): Packet {
  const type = frame[0] >> 4;
  if (type === 3) return decodePublish(frame, bodyStart, version);
  if (type === 0 || (type === 15 && version !== 5)) {
    throw new MqttError(RC.MALFORMED_PACKET, `reserved packet type ${type}`); // [MQTT-2.2.1]
  }
  // Fast path: 3.1.1 acknowledgements (4 bytes, fixed flags)
  if (version !== 5 && frame.length === 4 && (type === 4 || type === 5 || type === 7)) {
    if ((frame[0] & 15) !== 0) throw new MqttError(RC.MALFORMED_PACKET, "reserved flags set"); // [MQTT-2.2.2-2]
    const messageId = (frame[2] << 8) | frame[3];
    return { cmd: type === 4 ? "puback" : type === 5 ? "pubrec" : "pubcomp", messageId } as Packet;
  }
  parsed = undefined;
  parseError = undefined;
  // the parser replaces its settings with each CONNECT it parses: give it ours every time
  shared.settings = SETTINGS[version] ?? SETTINGS[4];
  // mqtt-packet's _resetState() leaves the read offset (_pos) where a failed parse stopped,
  // and the next parse reads its Remaining Length from there: one malformed packet would
  // break every later packet of every connection. Each frame starts at offset 0.
  shared._pos = 0;
  const left = shared.parse(frame);
  const p = parsed as MqttPacket | undefined;
  const err = parseError as Error | undefined;
  if (err || !p || left !== 0) {
    shared._resetState();
    shared._pos = 0;
    const why = err ? err.message : "packet shorter or longer than its remaining length";
    // §3.8.3.1 names these two subscription-option values a Protocol Error, not malformed
    const protocol = err !== undefined && /^Invalid (retain handling|subscribe QoS)/.test(err.message);
    throw new MqttError(protocol ? RC.PROTOCOL_ERROR : RC.MALFORMED_PACKET, why);
  }
  if ((p.cmd === "subscribe" || p.cmd === "unsubscribe") && !p.messageId) {
    // [MQTT-2.3.1-1] (5.0: [MQTT-2.2.1-3]) SUBSCRIBE / UNSUBSCRIBE need a non-zero packet id
    throw new MqttError(RC.MALFORMED_PACKET, `${p.cmd.toUpperCase()} with packet identifier 0`);
  }
  return p as Packet;
}

/** Encode any non-PUBLISH packet (PUBLISH: publish-codec.ts). */
export function encode(packet: Exclude<MqttPacket, { cmd: "publish" }>, version: number): Uint8Array {
  return mqtt.generate(packet, { protocolVersion: version === 3 ? 3 : version === 5 ? 5 : 4 });
}

export const PINGRESP = Uint8Array.of(0xd0, 0);
