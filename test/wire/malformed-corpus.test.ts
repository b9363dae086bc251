/**
 * A raw-byte corpus of malformed and forbidden packets, every packet type a client can send
 * (and the ones it cannot): bad Remaining Length, reserved flags, bad UTF-8, truncated and
 * duplicated properties, properties not allowed in the packet, bytes left over. Each entry has
 * its expected outcome per protocol version:
 *   "close"  the connection is closed without a packet (3.1/3.1.1 always [MQTT-4.8.0-1];
 *            5.0 when the CONNECT is unreadable before its version is known)
 *   0x81...  MQTT 5: the reason code, on a CONNACK when the CONNECT itself is bad, on a
 *            DISCONNECT otherwise [MQTT-4.13.1-1]
 * 3.1 (MQIsdp) runs each entry as 3.1.1 does unless the entry says otherwise. After every
 * entry a bystander connected from the start still gets its own QoS 1 message back.
 *
 * Malformed (0x81): cannot be parsed, wrong data type, property not valid for the packet
 * (§2.2.2.2), ill-formed UTF-8 [MQTT-1.5.4-1] / U+0000 [MQTT-1.5.4-2]. Protocol Error (0x82):
 * parses, but the value or the packet is not allowed, where the text says so (a property
 * given twice: "It is a Protocol Error to include ... more than once").
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { type TestBroker, useBroker } from "../helpers/broker.ts";
import { bytes, expectSilentClose, frame, str, u16, varint } from "../helpers/frames.ts";
import { connectV3, connectV4, connectV5, payloadText, RawClient } from "../helpers/raw-client.ts";

type V = 3 | 4 | 5;
type Outcome = "close" | number;

interface Entry {
  rule: string;
  what: string;
  /** The CONNECT itself is the bad packet (sent first on a fresh connection). */
  connect?: boolean;
  /** Expected per version; undefined: the entry does not apply. v3 defaults to v4, null skips it. */
  v3?: Outcome | null;
  v4?: Outcome;
  v5?: Outcome;
  bytes: (v: V) => number[];
}

// --- UTF-8 that is not allowed [MQTT-1.5.4-1] [MQTT-1.5.4-2] -------------------------------
const BAD = [0x61, 0xc3, 0x28]; // a lead byte without its continuation
const NUL = [0x61, 0x00, 0x62]; // U+0000
const SURROGATE = [0x61, 0xed, 0xa0, 0x80]; // U+D800 encoded
const OVERLONG = [0xc0, 0xaf]; // '/' in two bytes
const TOO_HIGH = [0xf4, 0x90, 0x80, 0x80]; // above U+10FFFF

// --- raw properties (5.0) -----------------------------------------------------------------
const pu32 = (id: number, n: number) => [id, (n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
const pu16 = (id: number, n: number) => [id, n >> 8, n & 255];
const pstr = (id: number, s: string | number[]) => [id, ...str(s)];
const puser = (k: string | number[], v: string | number[]) => [0x26, ...str(k), ...str(v)];
const props = (p: number[]) => [...varint(p.length), ...p];

const pkt = (first: number, body: number[]) => [...frame(first, body)];

/** A CONNECT: `flags` (default clean session), optional 5.0 properties, then `rest` after the id. */
function connect(v: V, o: { header?: number; flags?: number; props?: number[]; rawProps?: number[]; id?: string | number[]; rest?: number[] } = {}) {
  const body = [...str(v === 3 ? "MQIsdp" : "MQTT"), v, o.flags ?? 0x02, ...u16(0)];
  if (v === 5) body.push(...(o.rawProps ?? props(o.props ?? [])));
  body.push(...str(o.id ?? "corpus-c"), ...(o.rest ?? []));
  return pkt(o.header ?? 0x10, body);
}

/** Will fields after the client id (5.0: will properties first). */
const will = (v: V, topic: string | number[] = "w/t", willProps: number[] = []) =>
  [...(v === 5 ? props(willProps) : []), ...str(topic), ...str("bye")];

function publish(v: V, o: { first?: number; topic?: string | number[]; pid?: number; props?: number[]; rawProps?: number[] } = {}) {
  const body = [...str(o.topic ?? "corpus/t")];
  if (o.pid !== undefined) body.push(...u16(o.pid));
  if (v === 5) body.push(...(o.rawProps ?? props(o.props ?? [])));
  body.push(...bytes("x"));
  return pkt(o.first ?? 0x30, body);
}

function subscribe(v: V, o: { first?: number; pid?: number; props?: number[]; rawProps?: number[]; filters?: Array<[string | number[], number]>; tail?: number[] } = {}) {
  const body = [...u16(o.pid ?? 1)];
  if (v === 5) body.push(...(o.rawProps ?? props(o.props ?? [])));
  for (const [f, opts] of o.filters ?? [["corpus/f", 1]]) body.push(...str(f), opts);
  body.push(...(o.tail ?? []));
  return pkt(o.first ?? 0x82, body);
}

function unsubscribe(v: V, o: { first?: number; pid?: number; props?: number[]; filters?: Array<string | number[]>; tail?: number[] } = {}) {
  const body = [...u16(o.pid ?? 1)];
  if (v === 5) body.push(...props(o.props ?? []));
  for (const f of o.filters ?? ["corpus/f"]) body.push(...str(f));
  body.push(...(o.tail ?? []));
  return pkt(o.first ?? 0xa2, body);
}

/** Malformed in every version: closed (3.x), 0x81 (5.0). */
const mal = (rule: string, what: string, b: (v: V) => number[], more: Partial<Entry> = {}): Entry =>
  ({ rule, what, v4: "close", v5: 0x81, bytes: b, ...more });
/** MQTT 5 only. */
const only5 = (rule: string, what: string, code: number, b: (v: V) => number[], more: Partial<Entry> = {}): Entry =>
  ({ rule, what, v5: code, bytes: b, ...more });

const CONNECT: Entry[] = ([
  mal("[MQTT-2.2.2-2]", "CONNECT with reserved fixed header flags (0x11)", (v) => connect(v, { header: 0x11 })),
  mal("[MQTT-1.5.5-1]", "CONNECT whose Remaining Length runs over 4 bytes", () => [0x10, 0xff, 0xff, 0xff, 0xff, 0x7f], { v5: "close" }),
  mal("[MQTT-1.5.5-1]", "CONNECT whose Remaining Length is not in its shortest form", (v) => [0x10, 0x80 | 10, 0x00, ...connect(v).slice(2, 12)], { v5: "close" }),
  mal("[MQTT-3.1.2-3]", "the reserved connect flag set", (v) => connect(v, { flags: 0x03 })),
  mal("3.1.1 [MQTT-3.1.2-13], 5.0 [MQTT-3.1.2-11]", "will QoS 1 without the will flag", (v) => connect(v, { flags: 0x0a })),
  mal("3.1.1 [MQTT-3.1.2-15], 5.0 [MQTT-3.1.2-13]", "will retain without the will flag", (v) => connect(v, { flags: 0x22 })),
  mal("3.1.1 [MQTT-3.1.2-14], 5.0 [MQTT-3.1.2-12]", "will QoS 3", (v) => connect(v, { flags: 0x1e, rest: will(v) })),
  { rule: "[MQTT-3.1.2-22]", what: "password flag without the user name flag", v4: "close", bytes: (v) => connect(v, { flags: 0x42, rest: str("pw") }) },
  mal("[MQTT-3.1.2-16] / leftover", "a user name present while its flag is 0", (v) => connect(v, { rest: str("user") })),
  mal("[MQTT-3.1.2-18] / leftover", "a password present while its flag is 0", (v) => connect(v, { flags: 0x82, rest: [...str("u"), ...str("pw")] })),
  mal("leftover", "one byte after the last field", (v) => connect(v, { rest: [0] })),
  mal("[MQTT-3.1.2-9]", "will flag set, will fields missing", (v) => connect(v, { flags: 0x06 })),
  mal("§3.1.3", "client identifier longer than the packet", (v) => pkt(0x10, connect(v).slice(2, -10).concat(u16(20), bytes("abc")))),
  mal("[MQTT-1.5.4-1] [MQTT-3.1.3-4]", "client identifier not UTF-8", (v) => connect(v, { id: BAD })),
  mal("[MQTT-1.5.4-2]", "client identifier with U+0000", (v) => connect(v, { id: NUL })),
  mal("[MQTT-1.5.4-1]", "client identifier with an encoded surrogate", (v) => connect(v, { id: SURROGATE })),
  mal("[MQTT-1.5.4-1]", "client identifier above U+10FFFF", (v) => connect(v, { id: TOO_HIGH })),
  mal("[MQTT-1.5.4-1]", "user name with an overlong encoding", (v) => connect(v, { flags: 0x82, rest: str(OVERLONG) })),
  mal("[MQTT-1.5.4-1]", "will topic not UTF-8", (v) => connect(v, { flags: 0x06, rest: will(v, BAD) })),
  mal("[MQTT-1.5.4-2]", "will topic with U+0000", (v) => connect(v, { flags: 0x06, rest: will(v, NUL) })),
  mal("[MQTT-1.5.4-1]", "protocol name not UTF-8", (v) => pkt(0x10, [...str([0x4d, 0xff]), ...connect(v).slice(v === 3 ? 10 : 8)])),
  only5("[MQTT-1.5.5-1]", "CONNECT Property Length not in its shortest form", 0x81, (v) => connect(v, { rawProps: [0x80, 0x00] }), { connect: true }),
  only5("§3.1.2.11.2", "Session Expiry Interval twice", 0x82, (v) => connect(v, { props: [...pu32(0x11, 1), ...pu32(0x11, 2)] })),
  only5("§3.1.2.11.3", "Receive Maximum twice", 0x82, (v) => connect(v, { props: [...pu16(0x21, 5), ...pu16(0x21, 6)] })),
  only5("§2.2.2.2", "a property not allowed in CONNECT (Topic Alias)", 0x81, (v) => connect(v, { props: pu16(0x23, 1) })),
  only5("§2.2.2.2", "an unknown property identifier (0x7f)", 0x81, (v) => connect(v, { props: [0x7f, 0] })),
  only5("§2.2.2.1", "Property Length longer than the packet", 0x81, (v) => connect(v, { rawProps: [50, ...pu32(0x11, 1)] })),
  only5("§2.2.2.2", "a property value cut by the Property Length", 0x81, (v) => connect(v, { rawProps: [3, 0x11, 0, 0], id: "" })),
  only5("[MQTT-1.5.4-1]", "user property value not UTF-8", 0x81, (v) => connect(v, { props: puser("k", BAD) })),
  only5("[MQTT-1.5.4-2]", "user property name with U+0000", 0x81, (v) => connect(v, { props: puser(NUL, "v") })),
  only5("[MQTT-1.5.4-1]", "authentication method not UTF-8", 0x81, (v) => connect(v, { props: pstr(0x15, BAD) })),
  only5("§3.1.2.11.7", "Request Problem Information 2", 0x82, (v) => connect(v, { props: [0x17, 2] })),
  only5("§3.1.2.11.10", "Authentication Data without an Authentication Method", 0x82, (v) => connect(v, { props: [0x16, ...str("x")] })),
  only5("[MQTT-1.5.4-1]", "will Content Type not UTF-8", 0x81, (v) => connect(v, { flags: 0x06, rest: will(v, "w/t", pstr(0x03, BAD)) })),
  only5("[MQTT-1.5.4-1]", "will Response Topic not UTF-8", 0x81, (v) => connect(v, { flags: 0x06, rest: will(v, "w/t", pstr(0x08, SURROGATE)) })),
  only5("§2.2.2.2", "a property not allowed in will properties (Session Expiry)", 0x81, (v) => connect(v, { flags: 0x06, rest: will(v, "w/t", pu32(0x11, 1)) })),
  only5("§3.1.3.2.3", "will Payload Format Indicator twice", 0x82, (v) => connect(v, { flags: 0x06, rest: will(v, "w/t", [0x01, 1, 0x01, 0]) })),
  only5("§2.2.2.1", "will Property Length longer than the packet", 0x81, (v) => connect(v, { flags: 0x06, rest: [40, 0x01, 1] })),
] as Entry[]).map((e) => ({ ...e, connect: true }));

const PUBLISH: Entry[] = [
  mal("[MQTT-3.3.1-4]", "PUBLISH with QoS 3", (v) => publish(v, { first: 0x36, pid: 1 })),
  mal("[MQTT-3.3.1-2]", "DUP set on a QoS 0 PUBLISH", (v) => publish(v, { first: 0x38 })),
  mal("[MQTT-1.5.4-1] [MQTT-3.3.2-1]", "topic name not UTF-8", (v) => publish(v, { topic: BAD })),
  mal("[MQTT-1.5.4-2]", "topic name with U+0000", (v) => publish(v, { topic: NUL })),
  mal("[MQTT-1.5.4-1]", "topic name with an encoded surrogate", (v) => publish(v, { topic: SURROGATE })),
  mal("§3.3.2.1", "topic name longer than the packet", () => pkt(0x30, [...u16(50), ...bytes("abc")])),
  mal("§3.3.2.2", "QoS 1 PUBLISH cut before its packet identifier", () => pkt(0x32, [...str("t"), 0])),
  mal("[MQTT-2.3.1-1] (5.0 [MQTT-2.2.1-3])", "QoS 1 PUBLISH with packet identifier 0", (v) => publish(v, { first: 0x32, pid: 0 })),
  mal("[MQTT-1.5.5-1]", "Remaining Length over 4 bytes", () => [0x30, 0x80, 0x80, 0x80, 0x80, 0x01]),
  mal("[MQTT-1.5.5-1]", "Remaining Length not in its shortest form", () => [0x30, 0x85, 0x00, ...str("t"), 0x78]),
  only5("§2.2.2.1", "PUBLISH Property Length longer than the packet", 0x81, (v) => publish(v, { rawProps: [40, 0x01, 0] })),
  only5("§3.3.2.3.3", "Message Expiry Interval twice", 0x82, (v) => publish(v, { props: [...pu32(0x02, 5), ...pu32(0x02, 6)] })),
  only5("§2.2.2.2", "a property not allowed in PUBLISH (Session Expiry)", 0x81, (v) => publish(v, { props: pu32(0x11, 1) })),
  only5("[MQTT-1.5.4-1]", "user property value not UTF-8", 0x81, (v) => publish(v, { props: puser("k", BAD) })),
  only5("[MQTT-1.5.4-1]", "Content Type not UTF-8", 0x81, (v) => publish(v, { props: pstr(0x03, OVERLONG) })),
  only5("[MQTT-1.5.4-2]", "Response Topic with U+0000", 0x81, (v) => publish(v, { props: pstr(0x08, NUL) })),
  only5("§2.2.2.2", "Message Expiry Interval cut by the Property Length", 0x81, (v) => publish(v, { rawProps: [3, 0x02, 0, 0] })),
];

/** PUBACK, PUBREC, PUBREL, PUBCOMP: the same cases for each. */
const ACKS: Entry[] = ([[4, "PUBACK", 0x05], [5, "PUBREC", 0x05], [6, "PUBREL", 0x10], [7, "PUBCOMP", 0x10]] as const).flatMap(
  ([t, name, badCode]) => {
    const first = (t << 4) | (t === 6 ? 2 : 0);
    const ack5 = (p: number[]) => pkt(first, [0, 1, 0, ...props(p)]);
    return [
      mal(`[MQTT-2.2.2-2]${t === 6 ? " [MQTT-3.6.1-1]" : ""}`, `${name} with reserved flags ${t === 6 ? "0000" : "0001"}`, () => pkt(t === 6 ? 0x60 : first | 1, [0, 1])),
      mal("§2.2.1", `${name} cut inside its packet identifier`, () => pkt(first, [0])),
      mal("leftover", `${name} with a byte left over`, (v) => v === 5 ? pkt(first, [0, 1, 0, 0, 0]) : pkt(first, [0, 1, 0])),
      only5("§2.2.2.2", `a property not allowed in ${name} (Session Expiry)`, 0x81, () => ack5(pu32(0x11, 1))),
      only5(`§3.${t}.2.2.2`, `${name} Reason String twice`, 0x82, () => ack5([...pstr(0x1f, "a"), ...pstr(0x1f, "b")])),
      only5("[MQTT-1.5.4-1]", `${name} Reason String not UTF-8`, 0x81, () => ack5(pstr(0x1f, BAD))),
      only5("§2.2.2.1", `${name} Property Length longer than the packet`, 0x81, () => pkt(first, [0, 1, 0, 30, 0x1f])),
      only5(`[MQTT-3.${t}.2-1]`, `${name} with reason code 0x${badCode.toString(16)} (not one of its codes)`, 0x82, () => pkt(first, [0, 1, badCode])),
      ...(t === 6 ? [mal("[MQTT-3.6.1-1]", "PUBREL with the DUP flag (0x6A): only MQTT 3.1 may", () => pkt(0x6a, [0, 1]), { v3: null })] : []),
    ];
  },
);

const SUBSCRIBE: Entry[] = [
  mal("[MQTT-3.8.1-1]", "SUBSCRIBE with flags 0000", (v) => subscribe(v, { first: 0x80 })),
  mal("[MQTT-3.8.1-1]", "SUBSCRIBE with the DUP flag (0x8A): only MQTT 3.1 may", (v) => subscribe(v, { first: 0x8a }), { v3: null }),
  mal("[MQTT-1.5.4-1] [MQTT-3.8.3-1]", "topic filter not UTF-8", (v) => subscribe(v, { filters: [[BAD, 0]] })),
  mal("[MQTT-1.5.4-2]", "topic filter with U+0000", (v) => subscribe(v, { filters: [[NUL, 0]] })),
  mal("[MQTT-1.5.4-1]", "topic filter with an encoded surrogate (second filter)", (v) => subscribe(v, { filters: [["ok/f", 0], [SURROGATE, 0]] })),
  mal("§3.8.3", "topic filter longer than the packet", (v) => subscribe(v, { filters: [], tail: [...u16(40), ...bytes("ab")] })),
  mal("§3.8.3", "topic filter without its options byte", (v) => subscribe(v, { filters: [], tail: str("no/options") })),
  mal("[MQTT-3-8.3-4] (5.0 [MQTT-3.8.3-5])", "reserved bits set in the options", (v) => subscribe(v, { filters: [["f", v === 5 ? 0xc1 : 0x05]] })),
  { rule: "[MQTT-3-8.3-4] (5.0 §3.8.3.1)", what: "requested QoS 3", v4: "close", v5: 0x82, bytes: (v) => subscribe(v, { filters: [["f", 3]] }) },
  mal("[MQTT-2.3.1-1] (5.0 [MQTT-2.2.1-3])", "SUBSCRIBE with packet identifier 0", (v) => subscribe(v, { pid: 0 })),
  only5("§3.8.2.1.2", "Subscription Identifier twice", 0x82, (v) => subscribe(v, { props: [0x0b, 1, 0x0b, 2] })),
  only5("§2.2.2.2", "a property not allowed in SUBSCRIBE (Payload Format Indicator)", 0x81, (v) => subscribe(v, { props: [0x01, 1] })),
  only5("[MQTT-1.5.4-1]", "SUBSCRIBE user property not UTF-8", 0x81, (v) => subscribe(v, { props: puser(BAD, "v") })),
  only5("[MQTT-1.5.5-1]", "Subscription Identifier over 4 bytes", 0x81, (v) => subscribe(v, { props: [0x0b, 0x80, 0x80, 0x80, 0x80, 0x01] })),
  only5("§2.2.2.1", "SUBSCRIBE Property Length longer than the packet", 0x81, (v) => subscribe(v, { rawProps: [60, 0x0b, 1] })),
];

const UNSUBSCRIBE: Entry[] = [
  mal("[MQTT-3.10.1-1]", "UNSUBSCRIBE with flags 0000", (v) => unsubscribe(v, { first: 0xa0 })),
  mal("[MQTT-3.10.1-1]", "UNSUBSCRIBE with the DUP flag (0xAA): only MQTT 3.1 may", (v) => unsubscribe(v, { first: 0xaa }), { v3: null }),
  mal("[MQTT-1.5.4-1] [MQTT-3.10.3-1]", "topic filter not UTF-8", (v) => unsubscribe(v, { filters: [BAD] })),
  mal("[MQTT-1.5.4-2]", "topic filter with U+0000", (v) => unsubscribe(v, { filters: ["ok", NUL] })),
  mal("§3.10.3", "topic filter longer than the packet", (v) => unsubscribe(v, { filters: [], tail: [...u16(30), 0x61] })),
  mal("[MQTT-2.3.1-1] (5.0 [MQTT-2.2.1-3])", "UNSUBSCRIBE with packet identifier 0", (v) => unsubscribe(v, { pid: 0 })),
  only5("§2.2.2.2", "a property not allowed in UNSUBSCRIBE (Subscription Identifier)", 0x81, (v) => unsubscribe(v, { props: [0x0b, 1] })),
  only5("[MQTT-1.5.4-1]", "UNSUBSCRIBE user property name not UTF-8", 0x81, (v) => unsubscribe(v, { props: puser(TOO_HIGH, "v") })),
];

const OTHERS: Entry[] = [
  mal("[MQTT-2.2.2-2]", "PINGREQ with reserved flags", () => [0xc1, 0]),
  mal("leftover", "PINGREQ with a byte left over", () => [0xc0, 1, 0]),
  mal("[MQTT-2.2.2-2]", "DISCONNECT with reserved flags", () => [0xe1, 0]),
  mal("leftover", "DISCONNECT with a byte left over", (v) => v === 5 ? [0xe0, 3, 0, 0, 0] : [0xe0, 1, 0]),
  only5("§2.2.2.2", "a property not allowed in DISCONNECT (Payload Format Indicator)", 0x81, () => [0xe0, 4, 0, ...props([0x01, 1])]),
  only5("§3.14.2.2.2", "DISCONNECT Session Expiry Interval twice", 0x82, () => [0xe0, 12, 0, ...props([...pu32(0x11, 0), ...pu32(0x11, 0)])]),
  only5("[MQTT-1.5.4-1]", "DISCONNECT Reason String not UTF-8", 0x81, () => pkt(0xe0, [0, ...props(pstr(0x1f, BAD))])),
  only5("[MQTT-3.14.2-1]", "DISCONNECT with reason code 0x05", 0x82, () => [0xe0, 1, 0x05]),
  only5("§2.2.2.1", "DISCONNECT Property Length longer than the packet", 0x81, () => [0xe0, 3, 0, 20, 0x11]),
  { rule: "[MQTT-2.2.1]", what: "AUTH (packet type 15, reserved before 5.0)", v4: "close", bytes: () => [0xf0, 0] },
  only5("[MQTT-2.2.2-2]", "AUTH with reserved flags", 0x81, () => [0xf1, 0]),
  only5("§3.15.2.2.1", "AUTH with a reason code and no Property Length", 0x81, () => [0xf0, 1, 0x18]),
  only5("[MQTT-3.15.2-1]", "AUTH with reason code 0x05", 0x82, () => [0xf0, 2, 0x05, 0]),
  only5("[MQTT-1.5.4-1]", "AUTH Authentication Method not UTF-8", 0x81, () => pkt(0xf0, [0x18, ...props(pstr(0x15, BAD))])),
  only5("§2.2.2.2", "a property not allowed in AUTH (Session Expiry)", 0x81, () => pkt(0xf0, [0x18, ...props(pu32(0x11, 1))])),
  mal("[MQTT-2.2.1]", "reserved packet type 0", () => [0x00, 0]),
  { rule: "§2.1.2", what: "CONNACK from a client", v4: "close", v5: 0x82, bytes: () => [0x20, 2, 0, 0] },
  { rule: "§2.1.2", what: "SUBACK from a client", v4: "close", v5: 0x82, bytes: () => [0x90, 3, 0, 1, 0] },
  { rule: "§2.1.2", what: "UNSUBACK from a client", v4: "close", v5: 0x82, bytes: () => [0xb0, 2, 0, 1] },
  { rule: "§2.1.2", what: "PINGRESP from a client", v4: "close", v5: 0x82, bytes: () => [0xd0, 0] },
  { rule: "[MQTT-3.1.0-2]", what: "a second CONNECT", v4: "close", v5: 0x82, bytes: (v) => connect(v) },
];

const corpus: Entry[] = [...CONNECT, ...PUBLISH, ...ACKS, ...SUBSCRIBE, ...UNSUBSCRIBE, ...OTHERS];
const NAME = { 3: "3.1", 4: "3.1.1", 5: "5.0" } as const;
const show = (o: Outcome) => o === "close" ? "closed without a packet" : `0x${o.toString(16)}`;

describe("wire: malformed-packet corpus", () => {
  let b: TestBroker;
  let bystander: RawClient;
  useBroker((x) => (b = x));
  let n = 0;

  async function bystanderWorks() {
    if (!bystander) {
      bystander = (await connectV5(b.port, "corpus-bystander", { keepalive: 0 })).client;
      await bystander.subscribe("corpus/ok", { qos: 1 });
    }
    assert.equal(bystander.closed, false, "the bystander connection was closed too");
    const label = `still here ${++n}`;
    await bystander.publish("corpus/ok", label, { qos: 1 });
    const got = await bystander.waitForPacket("publish");
    assert.equal(payloadText(got), label);
    bystander.sendPacket({ cmd: "puback", messageId: got.messageId });
  }

  corpus.forEach((e, i) => {
    for (const v of [3, 4, 5] as const) {
      const want = v === 3 ? (e.v3 === undefined ? e.v4 : e.v3) : v === 4 ? e.v4 : e.v5;
      if (want === undefined || want === null) continue;
      it(`${NAME[v]} ${e.connect ? "CONNECT: " : ""}${e.what}: ${show(want)} ${e.rule}`, async () => {
        await bystanderWorks();
        let c: RawClient;
        if (e.connect) {
          c = await RawClient.connect(b.port);
          c.setProtocolVersion(v);
        } else {
          const connectFn = v === 3 ? connectV3 : v === 4 ? connectV4 : connectV5;
          const r = await connectFn(b.port, `corpus-${i}-${v}`, { keepalive: 0 });
          assert.equal(r.connack.reasonCode ?? r.connack.returnCode, 0);
          c = r.client;
        }
        c.send(Uint8Array.from(e.bytes(v)));
        if (want === "close") {
          await expectSilentClose(c);
        } else {
          const p = await c.nextPacket();
          assert.equal(p.cmd, e.connect ? "connack" : "disconnect", `got ${p.cmd}`);
          const rc = (p as { reasonCode?: number }).reasonCode;
          assert.equal(rc, want, `reason code 0x${rc?.toString(16)}, expected 0x${want.toString(16)}`);
          await c.waitClose();
        }
        await bystanderWorks();
      });
    }
  });
});
