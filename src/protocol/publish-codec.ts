/**
 * Hand-written PUBLISH decoder and encoder: the hot path. PUBLISH has its own codec because it
 * dominates traffic and because encoding must happen once per distinct wire form and be shared
 * by every subscriber (the packet id is patched into a copy afterwards, see withPacketId).
 */
import type { MessageProperties, QoS } from "../message.ts";
import { MqttError, RC } from "./reason-codes.ts";
import { readUtf8, readVarInt } from "./reader.ts";

const enc = new TextEncoder();

export interface PublishPacket {
  cmd: "publish";
  qos: QoS;
  dup: boolean;
  retain: boolean;
  topic: string;
  /** Packet identifier, QoS > 0 only. */
  messageId?: number;
  payload: Uint8Array;
  properties?: PublishProperties;
  /** The whole frame as received from a 3.1/3.1.1 client (see reuseWire). */
  wire?: Uint8Array;
}

export interface PublishProperties extends MessageProperties {
  messageExpiryInterval?: number;
  topicAlias?: number;
  subscriptionIdentifier?: number | number[];
}

/**
 * The last topic name decoded, and a copy of its bytes: a publisher sends runs on one topic,
 * and the bytes compared are cheaper than a string built (and hashed again by the router, the
 * cluster's routes and the forward batch, which meet the same string object each time).
 * Bytes equal to ones that were checked before are well-formed [MQTT-1.5.4-1] [MQTT-1.5.4-2].
 */
let lastTopic = "";
let lastTopicLen = -1;
const lastTopicBytes = new Uint8Array(256);

function topicAt(frame: Uint8Array, p: number, tlen: number): string {
  if (tlen === lastTopicLen) {
    let i = 0;
    while (i < tlen && frame[p + i] === lastTopicBytes[i]) i++;
    if (i === tlen) return lastTopic;
  }
  const topic = readUtf8(frame, p, p + tlen, "topic name");
  if (tlen <= lastTopicBytes.length) {
    for (let i = 0; i < tlen; i++) lastTopicBytes[i] = frame[p + i];
    lastTopicLen = tlen;
    lastTopic = topic;
  }
  return topic;
}

/** Decode a complete PUBLISH frame (fixed header included; `bodyStart` = first byte after it). */
export function decodePublish(frame: Uint8Array, bodyStart: number, version: number): PublishPacket {
  const h = frame[0];
  const qos = ((h >> 1) & 3) as QoS;
  if (qos === 3 as number) throw new MqttError(RC.MALFORMED_PACKET, "PUBLISH with QoS 3"); // [MQTT-3.3.1-4]
  const dup = (h & 8) !== 0;
  if (qos === 0 && dup) throw new MqttError(RC.MALFORMED_PACKET, "DUP set on a QoS 0 PUBLISH"); // [MQTT-3.3.1-2]
  const end = frame.length;
  let p = bodyStart;
  if (p + 2 > end) throw new MqttError(RC.MALFORMED_PACKET, "PUBLISH too short for its topic length");
  const tlen = (frame[p] << 8) | frame[p + 1];
  p += 2;
  if (p + tlen > end) throw new MqttError(RC.MALFORMED_PACKET, "PUBLISH topic runs past the packet");
  const topic = tlen === 0 ? "" : topicAt(frame, p, tlen);
  p += tlen;
  let messageId: number | undefined;
  if (qos > 0) {
    if (p + 2 > end) throw new MqttError(RC.MALFORMED_PACKET, "PUBLISH too short for its packet id");
    messageId = (frame[p] << 8) | frame[p + 1];
    p += 2;
    if (messageId === 0) throw new MqttError(RC.MALFORMED_PACKET, "packet identifier 0"); // [MQTT-2.3.1-1]
  }
  let properties: PublishProperties | undefined;
  if (version === 5) {
    const [plen, n] = readVarInt(frame, p);
    p += n;
    if (p + plen > end) throw new MqttError(RC.MALFORMED_PACKET, "PUBLISH properties run past the packet");
    if (plen > 0) properties = decodePublishProperties(frame, p, p + plen);
    p += plen;
  }
  const payload = frame.subarray(p);
  const packet: PublishPacket = { cmd: "publish", qos, dup, retain: (h & 1) !== 0, topic, messageId, payload, properties };
  if (version !== 5) packet.wire = frame;
  return packet;
}

function decodePublishProperties(b: Uint8Array, p: number, end: number): PublishProperties {
  const out: PublishProperties = {};
  const seen = new Set<number>();
  const need = (k: number) => {
    if (p + k > end) throw new MqttError(RC.MALFORMED_PACKET, "PUBLISH property runs past its length");
  };
  const str = (what: string) => {
    need(2);
    const l = (b[p] << 8) | b[p + 1];
    p += 2;
    need(l);
    const s = readUtf8(b, p, p + l, what);
    p += l;
    return s;
  };
  while (p < end) {
    const id = b[p++];
    if (id !== 0x26 && id !== 0x0b) {
      // [MQTT-2.2.2-2] a property other than user property appearing twice is a protocol error
      if (seen.has(id)) throw new MqttError(RC.PROTOCOL_ERROR, `property 0x${id.toString(16)} appears twice`);
      seen.add(id);
    }
    switch (id) {
      case 0x01:
        need(1);
        // a Byte: any value is of the right type and is forwarded as sent; only 1 promises
        // UTF-8 (§3.3.2.3.2, checked in handlers/publish.ts)
        out.payloadFormatIndicator = b[p++];
        break;
      case 0x02:
        need(4);
        out.messageExpiryInterval = ((b[p] << 24) >>> 0) + (b[p + 1] << 16) + (b[p + 2] << 8) + b[p + 3];
        p += 4;
        break;
      case 0x03: out.contentType = str("content type"); break;
      case 0x08: {
        const t = str("response topic");
        if (/[+#]/.test(t)) {
          // [MQTT-3.3.2-14] a Response Topic is a topic name: no wildcards
          throw new MqttError(RC.PROTOCOL_ERROR, `response topic ${JSON.stringify(t)} contains a wildcard`);
        }
        out.responseTopic = t;
        break;
      }
      case 0x09: {
        need(2);
        const l = (b[p] << 8) | b[p + 1];
        p += 2;
        need(l);
        out.correlationData = b.slice(p, p + l);
        p += l;
        break;
      }
      case 0x0b: {
        // [MQTT-3.3.4-6] a client must not send a subscription identifier in PUBLISH
        throw new MqttError(RC.PROTOCOL_ERROR, "PUBLISH from a client carries a subscription identifier");
      }
      case 0x23:
        need(2);
        out.topicAlias = (b[p] << 8) | b[p + 1];
        p += 2;
        break;
      case 0x26: {
        const k = str("user property name");
        const v = str("user property value");
        // pairs in arrival order: forwarded unaltered and in order [MQTT-3.3.2-17] [MQTT-3.3.2-18]
        ((out.userProperties ??= []) as Array<[string, string]>).push([k, v]);
        break;
      }
      default:
        throw new MqttError(RC.MALFORMED_PACKET, `property 0x${id.toString(16)} is not allowed in PUBLISH`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Encoding

function varIntSize(n: number): number {
  return n < 128 ? 1 : n < 16384 ? 2 : n < 2097152 ? 3 : 4;
}

function writeVarInt(b: Uint8Array, p: number, n: number): number {
  do {
    let c = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) c |= 128;
    b[p++] = c;
  } while (n > 0);
  return p;
}

export interface PublishWire {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  dup: boolean;
  /** Properties to put on the wire (MQTT 5 only; ignored for 3/4). */
  properties?: PublishProperties;
}

/** Encoded user-property / string pieces, computed once per message. */
function encodeProperties(pr: PublishProperties): Uint8Array {
  const parts: number[] = [];
  const pushStr = (s: string) => {
    const e = encodeUtf8(s);
    parts.push(e.length >> 8, e.length & 255);
    for (let i = 0; i < e.length; i++) parts.push(e[i]);
  };
  // (Number(): records stored before the indicator was kept as sent hold true/false)
  if (pr.payloadFormatIndicator !== undefined) parts.push(0x01, Number(pr.payloadFormatIndicator) & 255);
  if (pr.messageExpiryInterval !== undefined) {
    const v = pr.messageExpiryInterval >>> 0;
    parts.push(0x02, (v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255);
  }
  if (pr.contentType !== undefined) { parts.push(0x03); pushStr(pr.contentType); }
  if (pr.responseTopic !== undefined) { parts.push(0x08); pushStr(pr.responseTopic); }
  if (pr.correlationData !== undefined) {
    const d = pr.correlationData;
    parts.push(0x09, d.length >> 8, d.length & 255);
    for (let i = 0; i < d.length; i++) parts.push(d[i]);
  }
  if (pr.subscriptionIdentifier !== undefined) {
    const ids = Array.isArray(pr.subscriptionIdentifier) ? pr.subscriptionIdentifier : [pr.subscriptionIdentifier];
    for (const id of ids) {
      parts.push(0x0b);
      const tmp = new Uint8Array(4);
      const n = writeVarInt(tmp, 0, id);
      for (let i = 0; i < n; i++) parts.push(tmp[i]);
    }
  }
  if (pr.topicAlias !== undefined) parts.push(0x23, pr.topicAlias >> 8, pr.topicAlias & 255);
  const up = pr.userProperties;
  if (Array.isArray(up)) {
    for (const [k, v] of up) {
      parts.push(0x26);
      pushStr(k);
      pushStr(v);
    }
  } else if (up) {
    for (const [k, v] of Object.entries(up)) {
      for (const one of Array.isArray(v) ? v : [v]) {
        parts.push(0x26);
        pushStr(k);
        pushStr(one);
      }
    }
  }
  return Uint8Array.from(parts);
}

/**
 * Encode a PUBLISH. For QoS > 0 the packet id is written as 0: call patchPacketId on a copy.
 * Returns the bytes and the offset of the packet id (or -1).
 */
export function encodePublish(w: PublishWire, version: number, topicBytes?: Uint8Array): { bytes: Uint8Array; pidOffset: number } {
  const t = topicBytes ?? encodeUtf8(w.topic);
  // (encodeUtf8 is allocation-light for ASCII; the topic is copied into the packet below)
  const props = version === 5 && w.properties ? encodeProperties(w.properties) : undefined;
  const propLen = version === 5 ? (props ? props.length : 0) : -1;
  const remaining = 2 + t.length + (w.qos > 0 ? 2 : 0) + (propLen >= 0 ? varIntSize(propLen) + propLen : 0) +
    w.payload.length;
  const total = 1 + varIntSize(remaining) + remaining;
  const b = new Uint8Array(total);
  b[0] = 0x30 | (w.dup ? 8 : 0) | (w.qos << 1) | (w.retain ? 1 : 0);
  let p = writeVarInt(b, 1, remaining);
  b[p++] = t.length >> 8;
  b[p++] = t.length & 255;
  b.set(t, p);
  p += t.length;
  let pidOffset = -1;
  if (w.qos > 0) {
    pidOffset = p;
    p += 2;
  }
  if (propLen >= 0) {
    p = writeVarInt(b, p, propLen);
    if (props) {
      b.set(props, p);
      p += props.length;
    }
  }
  b.set(w.payload, p);
  return { bytes: b, pidOffset };
}

/**
 * A 3.1/3.1.1 PUBLISH as received, reused for a 3.1/3.1.1 subscriber at the same QoS: the
 * layout (topic, packet id, payload) is the same, only the first byte may differ (DUP, RETAIN).
 * Saves the whole encode on the commonest path; the bytes are copied only when that byte differs.
 */
export function reuseWire(wire: Uint8Array, qos: QoS, retain: boolean): { bytes: Uint8Array; pidOffset: number } {
  const first = 0x30 | (qos << 1) | (retain ? 1 : 0);
  const bytes = wire[0] === first ? wire : wire.slice();
  bytes[0] = first;
  if (qos === 0) return { bytes, pidOffset: -1 };
  let i = 1;
  while (bytes[i] & 128) i++;
  const t = i + 1;
  return { bytes, pidOffset: t + 2 + ((bytes[t] << 8) | bytes[t + 1]) };
}

/** A copy of an encoded PUBLISH with its packet id (and DUP flag) set. */
export function withPacketId(bytes: Uint8Array, pidOffset: number, packetId: number, dup: boolean): Uint8Array {
  const c = bytes.slice();
  c[pidOffset] = packetId >> 8;
  c[pidOffset + 1] = packetId & 255;
  if (dup) c[0] |= 8;
  return c;
}

/** UTF-8 bytes of a string; ASCII by hand (no TextEncoder call, see readAscii). */
export function encodeUtf8(s: string): Uint8Array {
  const n = s.length;
  if (n <= 256) {
    const out = new Uint8Array(n);
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      out[i] = c;
    }
    if (i === n) return out;
  }
  return enc.encode(s);
}
