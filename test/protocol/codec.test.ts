/**
 * The codec on its own: the server's packets in their shortest form (issue 10 item 5), and the
 * hand-written decoders keeping what a client sent (user properties in order, a Payload Format
 * Indicator as its byte, subscription options). The wire tests (malformed-corpus, strict) check
 * the same over sockets; these pin the exact bytes.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { decode, encode } from "../../src/protocol/codec.ts";
import type { ConnectPacket, SubscribePacket } from "../../src/protocol/packets.ts";
import { frame, str, u16 } from "../helpers/frames.ts";

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");

describe("protocol: encode — shortest forms (MQTT 5)", () => {
  const cases: Array<[string, Parameters<typeof encode>[0], string]> = [
    ["PUBACK 0x00, no properties: Remaining Length 2 (§3.4.2.1)", { cmd: "puback", messageId: 258, reasonCode: 0 }, "40 02 01 02"],
    ["PUBACK 0x10, no properties: no Property Length (§3.4.2.2.1)", { cmd: "puback", messageId: 1, reasonCode: 0x10 }, "40 03 00 01 10"],
    ["PUBACK with empty properties is the same", { cmd: "puback", messageId: 1, reasonCode: 0x10, properties: {} }, "40 03 00 01 10"],
    ["PUBREC 0x99: no Property Length (§3.5.2.2.1)", { cmd: "pubrec", messageId: 7, reasonCode: 0x99 }, "50 03 00 07 99"],
    ["PUBREL 0x92: flags 0010, no Property Length (§3.6.2.2.1)", { cmd: "pubrel", messageId: 7, reasonCode: 0x92 }, "62 03 00 07 92"],
    ["PUBCOMP 0x00: Remaining Length 2 (§3.7.2.1)", { cmd: "pubcomp", messageId: 7, reasonCode: 0 }, "70 02 00 07"],
    ["PUBACK 0x80 with a Reason String keeps its properties", { cmd: "puback", messageId: 1, reasonCode: 0x80, properties: { reasonString: "x" } }, "40 08 00 01 80 04 1f 00 01 78"],
    ["DISCONNECT 0x00, no properties: Remaining Length 0 (§3.14.2.1)", { cmd: "disconnect", reasonCode: 0 }, "e0 00"],
    ["DISCONNECT 0x8E, no properties: Remaining Length 1 (§3.14.2.2.1)", { cmd: "disconnect", reasonCode: 0x8e }, "e0 01 8e"],
    ["DISCONNECT 0x8E with a Reason String", { cmd: "disconnect", reasonCode: 0x8e, properties: { reasonString: "x" } }, "e0 06 8e 04 1f 00 01 78"],
    ["SUBACK always has its Property Length (§3.9.2.1)", { cmd: "suback", messageId: 1, granted: [1] }, "90 04 00 01 00 01"],
    ["UNSUBACK always has its Property Length (§3.11.2.1)", { cmd: "unsuback", messageId: 1, granted: [0] }, "b0 04 00 01 00 00"],
    ["CONNACK always has its Property Length (§3.2.2.3)", { cmd: "connack", sessionPresent: false, reasonCode: 0 }, "20 03 00 00 00"],
  ];
  for (const [what, packet, want] of cases) {
    it(what, () => assert.equal(hex(encode(packet, 5)), want));
  }

  it("3.1.1: acknowledgements are 4 bytes, CONNACK 4, DISCONNECT never has a body", () => {
    assert.equal(hex(encode({ cmd: "puback", messageId: 3 }, 4)), "40 02 00 03");
    assert.equal(hex(encode({ cmd: "pubrel", messageId: 3 }, 4)), "62 02 00 03");
    assert.equal(hex(encode({ cmd: "connack", sessionPresent: true, returnCode: 0 }, 4)), "20 02 01 00");
  });
});

describe("protocol: decode keeps what the client sent", () => {
  it("5.0 CONNECT: properties, will properties, user properties in order, Payload Format Indicator as its byte", () => {
    const props = [0x11, 0, 0, 0, 60, 0x26, ...str("b"), ...str("1"), 0x26, ...str("a"), ...str("2"), 0x26, ...str("b"), ...str("3")];
    const willProps = [0x01, 56, 0x18, 0, 0, 0, 5, 0x03, ...str("text/x")];
    const body = [
      ...str("MQTT"), 5, 0xc6 | 0x08, ...u16(30), props.length, ...props, ...str("dec-1"),
      willProps.length, ...willProps, ...str("w/t"), ...str("bye"), ...str("user"), ...str("pw"),
    ];
    const f = frame(0x10, body);
    const p = decode(f, 2, 5) as ConnectPacket;
    assert.equal(p.clientId, "dec-1");
    assert.equal(p.keepalive, 30);
    assert.equal(p.properties?.sessionExpiryInterval, 60);
    assert.deepEqual(p.properties?.userProperties, [["b", "1"], ["a", "2"], ["b", "3"]]);
    assert.equal(p.will?.qos, 1);
    assert.equal(p.will?.properties?.payloadFormatIndicator, 56);
    assert.equal(p.will?.properties?.willDelayInterval, 5);
    assert.equal(p.will?.properties?.contentType, "text/x");
    assert.equal(p.username, "user");
    assert.deepEqual([...p.password!], [...new TextEncoder().encode("pw")]);
  });

  it("5.0 SUBSCRIBE: options and the subscription identifier", () => {
    const f = frame(0x82, [...u16(9), 2, 0x0b, 7, ...str("a/+"), 0x2d, ...str("b"), 0x00]);
    const p = decode(f, 2, 5) as SubscribePacket;
    assert.equal(p.properties?.subscriptionIdentifier, 7);
    assert.deepEqual(p.subscriptions, [
      { topic: "a/+", qos: 1, nl: true, rap: true, rh: 2 },
      { topic: "b", qos: 0, nl: false, rap: false, rh: 0 },
    ]);
  });

  it("a UTF-8 BOM in a string is kept, not stripped [MQTT-1.5.4-3]", () => {
    const f = frame(0xa2, [...u16(1), ...str([0xef, 0xbb, 0xbf, 0x61])]);
    const p = decode(f, 2, 4) as { unsubscriptions: string[] };
    assert.equal(p.unsubscriptions[0], "\ufeffa");
  });
});

describe("protocol: decode — topic names of consecutive PUBLISH packets", () => {
  const publish = (topic: number[]) => frame(0x30, [...str(topic), 0x78]);
  const topicOf = (b: Uint8Array) => (decode(b, 2, 4) as { topic: string }).topic;
  const ascii = (s: string) => [...new TextEncoder().encode(s)];

  it("the same bytes give the same topic, other bytes of the same length another one", () => {
    assert.equal(topicOf(publish(ascii("a/b/c"))), "a/b/c");
    assert.equal(topicOf(publish(ascii("a/b/c"))), "a/b/c");
    assert.equal(topicOf(publish(ascii("a/b/d"))), "a/b/d");
    assert.equal(topicOf(publish(ascii("x/b/d"))), "x/b/d");
    assert.equal(topicOf(publish(ascii("a/b"))), "a/b");
    assert.equal(topicOf(publish(ascii("é/b"))), "é/b");
    assert.equal(topicOf(publish(ascii("é/c"))), "é/c");
  });

  it("a malformed topic right after a valid one of the same length is still refused [MQTT-1.5.4-1] [MQTT-1.5.4-2]", () => {
    assert.equal(topicOf(publish(ascii("ab"))), "ab");
    assert.throws(() => topicOf(publish([0xc3, 0x28])), /UTF-8/);
    assert.throws(() => topicOf(publish([0x61, 0x00])), /U\+0000/);
    assert.equal(topicOf(publish(ascii("ab"))), "ab");
  });
});
