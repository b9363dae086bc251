/**
 * The bytes of forwarded messages between nodes: one batch per target node per tick, each
 * message a compact binary record (no JSON on the hot path: MQTT 5 properties, rare, are the
 * only JSON part). Runtime-agnostic (Uint8Array, DataView), so any bus can carry it.
 *
 * Record: flags u8 | id str | topic str | receivedAt f64 | [expiresAt f64] | [publisher str]
 *         | [properties: u32 length + JSON] | [shares: u16 count + str...] | payload u32 + bytes
 * str = u16 length + UTF-8. flags: bit 0 retain, bits 1-2 QoS, bit 3 plain, bit 4 publisher,
 * bit 5 expiresAt, bit 6 properties, bit 7 shares.
 */
import type { MessageProperties, QoS, StoredMessage } from "../message.ts";
import type { Forward } from "./bus.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

class Writer {
  buf = new Uint8Array(1024);
  view = new DataView(this.buf.buffer);
  pos = 0;

  private need(n: number) {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const b = new Uint8Array(size);
    b.set(this.buf.subarray(0, this.pos));
    this.buf = b;
    this.view = new DataView(b.buffer);
  }

  u8(v: number) {
    this.need(1);
    this.buf[this.pos++] = v;
  }

  u16(v: number) {
    this.need(2);
    this.view.setUint16(this.pos, v);
    this.pos += 2;
  }

  u32(v: number) {
    this.need(4);
    this.view.setUint32(this.pos, v);
    this.pos += 4;
  }

  f64(v: number) {
    this.need(8);
    this.view.setFloat64(this.pos, v);
    this.pos += 8;
  }

  str(s: string) {
    const n = s.length;
    this.need(2 + n * 3);
    const at = this.pos + 2;
    let i = 0;
    // ASCII by hand (topics and ids nearly always are), the rest through the encoder
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 127) break;
      this.buf[at + i] = c;
    }
    let len = i;
    if (i < n) len = i + enc.encodeInto(s.slice(i), this.buf.subarray(at + i)).written;
    this.view.setUint16(this.pos, len);
    this.pos = at + len;
  }

  bytes(b: Uint8Array) {
    this.u32(b.length);
    this.need(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  take(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }
}

class Reader {
  pos = 0;
  readonly view: DataView;
  constructor(readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  u8() {
    return this.buf[this.pos++];
  }
  u16() {
    const v = this.view.getUint16(this.pos);
    this.pos += 2;
    return v;
  }
  u32() {
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }
  f64() {
    const v = this.view.getFloat64(this.pos);
    this.pos += 8;
    return v;
  }
  str() {
    const n = this.u16();
    const at = this.pos;
    this.pos += n;
    let s = "";
    for (let i = 0; i < n; i++) {
      const c = this.buf[at + i];
      if (c > 127) return dec.decode(this.buf.subarray(at, at + n));
      s += String.fromCharCode(c);
    }
    return s;
  }
  /** A view into the batch (the caller copies it if it keeps it beyond the tick). */
  bytes() {
    const n = this.u32();
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
}

/** Properties as JSON: correlation data (binary) as base64. */
function propsJson(p: MessageProperties): string {
  if (p.correlationData === undefined) return JSON.stringify(p);
  let bin = "";
  for (const c of p.correlationData) bin += String.fromCharCode(c);
  return JSON.stringify({ ...p, correlationData: btoa(bin) });
}

function propsParse(json: string): MessageProperties {
  const p = JSON.parse(json) as MessageProperties & { correlationData?: string };
  if (typeof p.correlationData === "string") {
    const bin = atob(p.correlationData);
    const b = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) b[i] = bin.charCodeAt(i);
    return { ...p, correlationData: b };
  }
  return p as MessageProperties;
}

/** A batch encoder for one target node. */
export class ForwardBatch {
  private w = new Writer();
  count = 0;

  add(m: StoredMessage, publisher: string | undefined, plain: boolean, shares?: string[]): void {
    const w = this.w;
    let flags = (m.retain ? 1 : 0) | (m.qos << 1) | (plain ? 8 : 0);
    if (publisher !== undefined) flags |= 16;
    if (m.expiresAt !== undefined) flags |= 32;
    if (m.properties !== undefined) flags |= 64;
    if (shares !== undefined && shares.length > 0) flags |= 128;
    w.u8(flags);
    w.str(m.id);
    w.str(m.topic);
    w.f64(m.receivedAt);
    if (m.expiresAt !== undefined) w.f64(m.expiresAt);
    if (publisher !== undefined) w.str(publisher);
    if (m.properties !== undefined) w.bytes(enc.encode(propsJson(m.properties)));
    if (flags & 128) {
      w.u16(shares!.length);
      for (const s of shares!) w.str(s);
    }
    w.bytes(m.payload);
    this.count++;
  }

  bytes(): Uint8Array {
    return this.w.take();
  }
}

export function encodeForwards(list: Forward[]): Uint8Array {
  const b = new ForwardBatch();
  for (const f of list) b.add(f.msg, f.publisher, f.plain, f.shares);
  return b.bytes();
}

export function decodeForwards(buf: Uint8Array): Forward[] {
  const r = new Reader(buf);
  const out: Forward[] = [];
  while (r.pos < buf.length) {
    const flags = r.u8();
    const msg: StoredMessage = {
      id: r.str(),
      topic: r.str(),
      receivedAt: r.f64(),
      qos: ((flags >> 1) & 3) as QoS,
      retain: (flags & 1) === 1,
      payload: undefined as unknown as Uint8Array,
    };
    if (flags & 32) msg.expiresAt = r.f64();
    const f: Forward = { msg, plain: (flags & 8) !== 0 };
    if (flags & 16) f.publisher = r.str();
    if (flags & 64) msg.properties = propsParse(dec.decode(r.bytes()));
    if (flags & 128) {
      const n = r.u16();
      f.shares = [];
      for (let i = 0; i < n; i++) f.shares.push(r.str());
    }
    msg.payload = r.bytes();
    out.push(f);
  }
  return out;
}
