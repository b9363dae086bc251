/**
 * Reading the MQTT data types (§1.5) out of a received frame, for the hand-written decoders.
 * Every read is bounded by the packet (or by the property block it belongs to): a field that
 * runs past it is a Malformed Packet, and so is a UTF-8 Encoded String that is not well-formed
 * UTF-8 (surrogates and overlong forms included) [MQTT-1.5.4-1] or that holds U+0000
 * [MQTT-1.5.4-2]. A BOM (EF BB BF) is a character like any other and is kept [MQTT-1.5.4-3].
 */
import { MqttError, RC } from "./reason-codes.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function malformed(why: string): never {
  throw new MqttError(RC.MALFORMED_PACKET, why);
}

export function protocolError(why: string): never {
  throw new MqttError(RC.PROTOCOL_ERROR, why);
}

/**
 * Topics are nearly always short ASCII: decoding those by hand skips the TextDecoder call,
 * which under Deno is an op round trip costing ~12 % of a QoS 0 fan-in profile.
 */
function readAscii(b: Uint8Array, start: number, end: number): string | undefined {
  if (end - start > 256) return undefined;
  for (let i = start; i < end; i++) {
    const c = b[i];
    if (c >= 0x80 || c === 0) return undefined;
  }
  return String.fromCharCode.apply(null, b.subarray(start, end) as unknown as number[]);
}

/** The characters of b[start, end), which must be well-formed UTF-8 without U+0000. */
export function readUtf8(b: Uint8Array, start: number, end: number, what: string): string {
  const ascii = readAscii(b, start, end);
  if (ascii !== undefined) return ascii;
  let s: string;
  try {
    s = utf8.decode(b.subarray(start, end));
  } catch {
    malformed(`${what} is not well-formed UTF-8`); // [MQTT-1.5.4-1]
  }
  if (s.includes("\u0000")) malformed(`${what} contains U+0000`); // [MQTT-1.5.4-2]
  return s;
}

/** A Variable Byte Integer at b[p] (§1.5.5): [value, bytes used]. */
export function readVarInt(b: Uint8Array, p: number, end = b.length): [number, number] {
  let v = 0, mul = 1, n = 0;
  for (;;) {
    if (p + n >= end) malformed("truncated variable byte integer");
    const c = b[p + n++];
    v += (c & 127) * mul;
    if ((c & 128) === 0) {
      if (c === 0 && n > 1) malformed("variable byte integer not in its shortest form"); // [MQTT-1.5.5-1]
      return [v, n];
    }
    mul *= 128;
    if (n === 4) malformed("variable byte integer longer than 4 bytes");
  }
}

/**
 * A read position in one packet. `end` is the packet's end, or the end of the property block
 * being read (see properties.ts). For the packets off the hot path (CONNECT, SUBSCRIBE, ...).
 */
export class Cursor {
  constructor(readonly b: Uint8Array, public p: number, public end: number, readonly packet: string) {}

  need(n: number, what: string): void {
    if (this.p + n > this.end) malformed(`${this.packet} ends inside its ${what}`);
  }

  u8(what: string): number {
    this.need(1, what);
    return this.b[this.p++];
  }

  u16(what: string): number {
    this.need(2, what);
    const v = (this.b[this.p] << 8) | this.b[this.p + 1];
    this.p += 2;
    return v;
  }

  u32(what: string): number {
    this.need(4, what);
    const b = this.b, p = this.p;
    this.p += 4;
    return ((b[p] << 24) >>> 0) + (b[p + 1] << 16) + (b[p + 2] << 8) + b[p + 3];
  }

  varint(what: string): number {
    if (this.p >= this.end) malformed(`${this.packet} ends inside its ${what}`);
    const [v, n] = readVarInt(this.b, this.p, this.end);
    this.p += n;
    return v;
  }

  /** A UTF-8 Encoded String (§1.5.4). */
  str(what: string): string {
    const l = this.u16(what);
    this.need(l, what);
    const s = readUtf8(this.b, this.p, this.p + l, `${this.packet} ${what}`);
    this.p += l;
    return s;
  }

  /** Binary Data (§1.5.6), copied: it may outlive the read buffer it came in. */
  bin(what: string): Uint8Array {
    const l = this.u16(what);
    this.need(l, what);
    const v = this.b.slice(this.p, this.p + l);
    this.p += l;
    return v;
  }

  get left(): number {
    return this.end - this.p;
  }

  /** Bytes after the last field are a malformed packet. */
  done(): void {
    if (this.p !== this.end) malformed(`${this.end - this.p} bytes left over at the end of the ${this.packet}`);
  }
}
