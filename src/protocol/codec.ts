/**
 * Splits a byte stream into frames (enforcing the maximum packet size from the fixed header,
 * before buffering a whole oversized packet), decodes frames into packets and encodes packets.
 *
 * Decoding is hand-written for every packet a client sends (publish-codec.ts, decode-*.ts):
 * mqtt-packet's parser accepts too much (ill-formed UTF-8, bytes left over, properties not
 * allowed in the packet, will QoS 3) for a strict broker. Encoding of the server's packets
 * goes through mqtt-packet, this file being its only importer, except where its output is not
 * the shortest form the specification asks for (acknowledgements and DISCONNECT, see encode).
 */
import mqtt from "mqtt-packet";
import type { Packet as MqttPacket } from "mqtt-packet";
import { MqttError, RC } from "./reason-codes.ts";
import { decodePublish } from "./publish-codec.ts";
import { decodeConnect } from "./decode-connect.ts";
import { decodeAck, decodeAuth, decodeDisconnect, decodePingreq } from "./decode-ack.ts";
import { decodeSubscribe, decodeUnsubscribe } from "./decode-subscribe.ts";
import { malformed } from "./reader.ts";
import type { Packet } from "./packets.ts";

export type * from "./packets.ts";
export { Framer, type FrameConsumer, framerStats } from "./framer.ts";

/** A packet the server sends (PUBLISH excepted: publish-codec.ts). */
export type OutPacket = Exclude<MqttPacket, { cmd: "publish" }>;

/** The protocol level byte of a CONNECT frame, or -1 when it cannot be read. */
export function connectProtocolLevel(frame: Uint8Array, bodyStart: number): number {
  const p = bodyStart;
  if (frame.length < p + 2) return -1;
  const nameLen = (frame[p] << 8) | frame[p + 1];
  const at = p + 2 + nameLen;
  return at < frame.length ? frame[at] & 0x7f : -1;
}

const SERVER_ONLY = ["", "", "CONNACK", "", "", "", "", "", "", "SUBACK", "", "UNSUBACK", "", "PINGRESP"];

/**
 * The fixed header flags each packet type must carry [MQTT-2.2.2-1] [MQTT-2.2.2-2]: 0010 for
 * PUBREL, SUBSCRIBE, UNSUBSCRIBE ([MQTT-3.6.1-1] [MQTT-3.8.1-1] [MQTT-3.10.1-1]), 0000
 * otherwise. MQTT 3.1 had the DUP flag on a re-sent PUBREL, SUBSCRIBE or UNSUBSCRIBE (its
 * §2.1), which MQIsdp clients still set (0x6A, 0x8A, 0xAA): accepted from them alone.
 */
function checkFlags(first: number, version: number): void {
  const type = first >> 4;
  const flags = first & 15;
  const want = type === 6 || type === 8 || type === 10 ? 2 : 0;
  if (flags === want || (version === 3 && want === 2 && flags === 10)) return;
  malformed(`packet type ${type} with fixed header flags ${flags.toString(2).padStart(4, "0")}`);
}

/** Decode one complete frame. Throws MqttError(0x81 malformed / 0x82 protocol error). */
export function decode(frame: Uint8Array, bodyStart: number, version: number): Packet {
  const type = frame[0] >> 4;
  if (type === 3) return decodePublish(frame, bodyStart, version);
  // the acknowledgement hot path first: no further branching for a plain PUBACK
  if (type >= 4 && type <= 7) {
    if ((frame[0] & 15) !== (type === 6 ? 2 : 0)) checkFlags(frame[0], version);
    return decodeAck(frame, bodyStart, version, type as 4 | 5 | 6 | 7);
  }
  if (type === 0 || (type === 15 && version !== 5)) malformed(`reserved packet type ${type}`); // [MQTT-2.2.1]
  if (SERVER_ONLY[type]) {
    throw new MqttError(RC.PROTOCOL_ERROR, `${SERVER_ONLY[type]} is not sent by clients`);
  }
  checkFlags(frame[0], version);
  switch (type) {
    case 1: return decodeConnect(frame, bodyStart);
    case 8: return decodeSubscribe(frame, bodyStart, version);
    case 10: return decodeUnsubscribe(frame, bodyStart, version);
    case 12: return decodePingreq(frame, bodyStart);
    case 14: return decodeDisconnect(frame, bodyStart, version);
    default: return decodeAuth(frame, bodyStart);
  }
}

function noProperties(p: OutPacket): boolean {
  const props = (p as { properties?: object }).properties;
  if (props === undefined) return true;
  for (const _ in props) return false;
  return true;
}

/**
 * Encode any non-PUBLISH packet (PUBLISH: publish-codec.ts). MQTT 5 acknowledgements and
 * DISCONNECT without properties are written in their shortest form, which mqtt-packet does
 * not: reason 0x00 is omitted (Remaining Length 2 for PUBACK/PUBREC/PUBREL/PUBCOMP
 * [MQTT-3.4.2.1] and siblings, 0 for DISCONNECT §3.14.2.1), and a non-zero reason goes without
 * a Property Length (§3.4.2.2.1, §3.14.2.2.1).
 */
export function encode(packet: OutPacket, version: number): Uint8Array {
  if (version === 5 && noProperties(packet)) {
    const rc = (packet as { reasonCode?: number }).reasonCode ?? 0;
    switch (packet.cmd) {
      case "puback": case "pubrec": case "pubrel": case "pubcomp": {
        const type = packet.cmd === "puback" ? 4 : packet.cmd === "pubrec" ? 5 : packet.cmd === "pubrel" ? 6 : 7;
        return encodeAck(type, packet.messageId ?? 0, rc);
      }
      case "disconnect":
        return rc === 0 ? Uint8Array.of(0xe0, 0) : Uint8Array.of(0xe0, 1, rc);
    }
  }
  return mqtt.generate(packet, { protocolVersion: version === 3 ? 3 : version === 5 ? 5 : 4 });
}

/** PUBACK/PUBREC/PUBREL/PUBCOMP without properties: 4 bytes, or 5 with a non-zero reason. */
function encodeAck(type: 4 | 5 | 6 | 7, pid: number, reasonCode = 0): Uint8Array {
  const first = (type << 4) | (type === 6 ? 2 : 0); // PUBREL has flags 0010 [MQTT-3.6.1-1]
  return reasonCode === 0
    ? Uint8Array.of(first, 2, pid >> 8, pid & 255)
    : Uint8Array.of(first, 3, pid >> 8, pid & 255, reasonCode);
}

export const PINGRESP = Uint8Array.of(0xd0, 0);
