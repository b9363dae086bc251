/**
 * MQTT 3.1.1 packet encoders for the load generator. Each returns a fresh Uint8Array; the hot
 * path (PUBLISH) builds a template once and patches it in place (see publish-template.ts).
 */

const utf8 = new TextEncoder();

/** Bytes needed for an MQTT "remaining length" varint. */
export function varintSize(n: number): number {
  return n < 128 ? 1 : n < 16384 ? 2 : n < 2097152 ? 3 : 4;
}

/** Writes a remaining-length varint at `pos`; returns the position after it. */
export function writeVarint(buf: Uint8Array, pos: number, n: number): number {
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    buf[pos++] = b;
  } while (n > 0);
  return pos;
}

function writeString(buf: Uint8Array, pos: number, bytes: Uint8Array): number {
  buf[pos] = bytes.length >> 8;
  buf[pos + 1] = bytes.length & 0xff;
  buf.set(bytes, pos + 2);
  return pos + 2 + bytes.length;
}

function packet(firstByte: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + varintSize(body.length) + body.length);
  out[0] = firstByte;
  out.set(body, writeVarint(out, 1, body.length));
  return out;
}

export interface ConnectOptions {
  clientId: string;
  clean: boolean;
  /** Seconds; 0 disables keep-alive. */
  keepAlive: number;
}

export function encodeConnect(o: ConnectOptions): Uint8Array {
  const id = utf8.encode(o.clientId);
  const body = new Uint8Array(10 + 2 + id.length);
  body.set([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, o.clean ? 0x02 : 0x00, o.keepAlive >> 8, o.keepAlive & 0xff]);
  writeString(body, 10, id);
  return packet(0x10, body);
}

export interface SubscriptionRequest {
  filter: string;
  qos: 0 | 1 | 2;
}

export function encodeSubscribe(packetId: number, subs: readonly SubscriptionRequest[]): Uint8Array {
  const filters = subs.map((s) => utf8.encode(s.filter));
  const size = 2 + filters.reduce((n, f) => n + 3 + f.length, 0);
  const body = new Uint8Array(size);
  body[0] = packetId >> 8;
  body[1] = packetId & 0xff;
  let pos = 2;
  for (let i = 0; i < subs.length; i++) {
    pos = writeString(body, pos, filters[i]);
    body[pos++] = subs[i].qos;
  }
  return packet(0x82, body);
}

/** A PUBLISH frame plus the offsets the generator patches before each send. */
export interface PublishFrame {
  bytes: Uint8Array;
  /** Offset of the packet identifier (-1 at QoS 0). */
  packetIdOffset: number;
  /** Offset of the first payload byte. */
  payloadOffset: number;
}

export function encodePublish(topic: string, qos: 0 | 1 | 2, payload: Uint8Array): PublishFrame {
  const t = utf8.encode(topic);
  const bodyLen = 2 + t.length + (qos > 0 ? 2 : 0) + payload.length;
  const bytes = new Uint8Array(1 + varintSize(bodyLen) + bodyLen);
  bytes[0] = 0x30 | (qos << 1);
  let pos = writeVarint(bytes, 1, bodyLen);
  pos = writeString(bytes, pos, t);
  let packetIdOffset = -1;
  if (qos > 0) {
    packetIdOffset = pos;
    pos += 2;
  }
  bytes.set(payload, pos);
  return { bytes, packetIdOffset, payloadOffset: pos };
}

/** PUBACK 0x40, PUBREC 0x50, PUBREL 0x62, PUBCOMP 0x70: all four bytes long. */
export const PUBACK = 0x40;
export const PUBREC = 0x50;
export const PUBREL = 0x62;
export const PUBCOMP = 0x70;

export const DISCONNECT = new Uint8Array([0xe0, 0]);
