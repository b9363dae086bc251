/**
 * The bytes of forwarded messages between nodes: one batch per target node per tick, each
 * message a compact binary record (no JSON on the hot path: MQTT 5 properties, rare, are the
 * only JSON part). Runtime-agnostic (Uint8Array, DataView), so any bus can carry it.
 *
 * Strings that repeat within a batch (topics, publishers, the node part of message ids) are
 * written once and referred to by number afterwards: the receiver decodes each once per batch,
 * and hands the router the same string object for every message on one topic (its hash is
 * computed once). Measured on the receiving side this is what decoding cost most.
 *
 * A message that came from a 3.1/3.1.1 publisher travels as the PUBLISH frame it arrived in
 * (payload at its end), so that the receiving node hands it to its 3.1/3.1.1 subscribers
 * verbatim, as the publishing node does for its own (protocol/publish-codec.ts reuseWire):
 * nothing is encoded again per message on either side.
 *
 * Record: flags u16 | id: ref(prefix) + str(rest) | topic ref | receivedAt f64
 *         | [expiresAt f64] | [publisher ref] | [properties: u32 length + JSON]
 *         | [shares: u16 count + str...] | payload u32 + bytes, or (bit 8) frame u32 + bytes
 *         then the payload's length u32 (the payload is the frame's last bytes)
 * str = u16 length + UTF-8; ref = u16 index into the batch's strings, or 0xFFFF followed by a
 * str that becomes the next index. flags: bit 0 retain, bits 1-2 QoS, bit 3 plain, bit 4
 * publisher, bit 5 expiresAt, bit 6 properties, bit 7 shares, bit 8 frame.
 */
import type { MessageProperties, QoS, StoredMessage } from "../message.ts";
import type { Forward } from "./bus.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const NEW = 0xffff;
/** Strings remembered per batch (past it, strings are written out again). */
const TABLE_MAX = 0xfff0;

class Writer {
  buf = new Uint8Array(1024);
  view = new DataView(this.buf.buffer);
  pos = 0;

  /** Room for n more bytes (called once per record with an upper bound). */
  need(n: number) {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const b = new Uint8Array(size);
    b.set(this.buf.subarray(0, this.pos));
    this.buf = b;
    this.view = new DataView(b.buffer);
  }

  u8(v: number) {
    this.buf[this.pos++] = v;
  }

  u16(v: number) {
    this.buf[this.pos++] = v >> 8;
    this.buf[this.pos++] = v & 255;
  }

  u32(v: number) {
    this.view.setUint32(this.pos, v);
    this.pos += 4;
  }

  f64(v: number) {
    this.view.setFloat64(this.pos, v);
    this.pos += 8;
  }

  /** UTF-8 of s from `from` on, with a u16 length; `need` must have allowed 2 + 3 x length. */
  str(s: string, from = 0) {
    const n = s.length - from;
    const at = this.pos + 2;
    let i = 0;
    // ASCII by hand (topics and ids nearly always are), the rest through the encoder
    for (; i < n; i++) {
      const c = s.charCodeAt(from + i);
      if (c > 127) break;
      this.buf[at + i] = c;
    }
    let len = i;
    if (i < n) len = i + enc.encodeInto(s.slice(from + i), this.buf.subarray(at + i)).written;
    this.buf[this.pos] = len >> 8;
    this.buf[this.pos + 1] = len & 255;
    this.pos = at + len;
  }

  bytes(b: Uint8Array) {
    this.u32(b.length);
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
  readonly strings: string[] = [];
  constructor(readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  u8() {
    return this.buf[this.pos++];
  }
  u16() {
    const v = (this.buf[this.pos] << 8) | this.buf[this.pos + 1];
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
  ref() {
    const i = this.u16();
    if (i !== NEW) return this.strings[i];
    const s = this.str();
    this.strings.push(s);
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
  private strings = new Map<string, number>();
  /**
   * The last id prefix, topic and publisher referred to, with their indexes: consecutive
   * messages mostly share them (one node's ids; a publisher's run on one topic), and a string
   * compared is cheaper than one sliced off and hashed.
   */
  private lastPrefix = "";
  private lastPrefixRef = -1;
  private lastTopic = "";
  private lastTopicRef = -1;
  private lastPublisher = "";
  private lastPublisherRef = -1;
  count = 0;

  /** A string by reference: its index when written before, else written now; the index. */
  private ref(s: string): number {
    const w = this.w;
    const i = this.strings.get(s);
    if (i !== undefined) {
      w.u16(i);
      return i;
    }
    w.u16(NEW);
    w.str(s);
    const n = this.strings.size;
    this.strings.set(s, n);
    return n;
  }

  add(m: StoredMessage, publisher: string | undefined, plain: boolean, shares?: string[]): void {
    const w = this.w;
    const id = m.id;
    const props = m.properties === undefined ? undefined : enc.encode(propsJson(m.properties));
    const frame = m.wire;
    let room = 44 + 3 * (id.length + m.topic.length) + (frame !== undefined ? frame.length : m.payload.length);
    if (publisher !== undefined) room += 3 * publisher.length;
    if (props !== undefined) room += props.length;
    if (shares !== undefined) for (const s of shares) room += 2 + 3 * s.length;
    w.need(room);
    let flags = (m.retain ? 1 : 0) | (m.qos << 1) | (plain ? 8 : 0);
    if (publisher !== undefined) flags |= 16;
    if (m.expiresAt !== undefined) flags |= 32;
    if (props !== undefined) flags |= 64;
    if (shares !== undefined && shares.length > 0) flags |= 128;
    if (frame !== undefined) flags |= 256;
    w.u16(flags);
    if (this.lastPrefixRef >= 0 && id.length > this.lastPrefix.length && id.startsWith(this.lastPrefix)) {
      w.u16(this.lastPrefixRef);
      w.str(id, this.lastPrefix.length);
    } else {
      const cut = id.lastIndexOf(":") + 1; // "<node>#<incarnation>:<seq>": the node part repeats
      const prefix = id.slice(0, cut);
      this.lastPrefixRef = this.ref(prefix);
      this.lastPrefix = prefix;
      w.str(id, cut);
    }
    if (this.lastTopicRef >= 0 && m.topic === this.lastTopic) w.u16(this.lastTopicRef);
    else {
      this.lastTopicRef = this.ref(m.topic);
      this.lastTopic = m.topic;
    }
    w.f64(m.receivedAt);
    if (m.expiresAt !== undefined) w.f64(m.expiresAt);
    if (publisher !== undefined) {
      if (this.lastPublisherRef >= 0 && publisher === this.lastPublisher) w.u16(this.lastPublisherRef);
      else {
        this.lastPublisherRef = this.ref(publisher);
        this.lastPublisher = publisher;
      }
    }
    if (props !== undefined) w.bytes(props);
    if (flags & 128) {
      w.u16(shares!.length);
      for (const s of shares!) w.str(s);
    }
    if (frame === undefined) w.bytes(m.payload);
    else {
      w.bytes(frame);
      w.u32(m.payload.length);
    }
    this.count++;
    if (this.strings.size >= TABLE_MAX) {
      // a very mixed batch: start over, as the reader does
      this.strings.clear();
      this.lastPrefixRef = this.lastTopicRef = this.lastPublisherRef = -1;
    }
  }

  /** Bytes written so far. */
  get size(): number {
    return this.w.pos;
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
    const flags = r.u16();
    const prefix = r.ref();
    const rest = r.str();
    const msg: StoredMessage = {
      id: prefix.length === 0 ? rest : prefix + rest,
      topic: r.ref(),
      receivedAt: r.f64(),
      qos: ((flags >> 1) & 3) as QoS,
      retain: (flags & 1) === 1,
      payload: undefined as unknown as Uint8Array,
    };
    if (flags & 32) msg.expiresAt = r.f64();
    const f: Forward = { msg, plain: (flags & 8) !== 0 };
    if (flags & 16) f.publisher = r.ref();
    if (flags & 64) msg.properties = propsParse(dec.decode(r.bytes()));
    if (flags & 128) {
      const n = r.u16();
      f.shares = [];
      for (let i = 0; i < n; i++) f.shares.push(r.str());
    }
    if (flags & 256) {
      const frame = r.bytes();
      msg.payload = frame.subarray(frame.length - r.u32());
      msg.wire = frame;
    } else msg.payload = r.bytes();
    out.push(f);
    if (r.strings.length >= TABLE_MAX) r.strings.length = 0; // as the writer does
  }
  return out;
}
