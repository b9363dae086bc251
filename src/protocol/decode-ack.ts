/**
 * Decoders of the small fixed-layout packets a client sends: PUBACK, PUBREC, PUBREL, PUBCOMP
 * (the acknowledgement hot path: a plain 2-byte body costs one object and nothing else),
 * PINGREQ, DISCONNECT and AUTH. Bytes after the last field are a Malformed Packet, and so is a
 * 3.1/3.1.1 acknowledgement whose Remaining Length is not 2. A reason code outside the
 * packet's list is a Protocol Error (the packet parses; the value is not allowed).
 */
import type { AuthPacket, DisconnectPacket, PingreqPacket, PubackPacket, PubcompPacket, PubrecPacket, PubrelPacket } from "./packets.ts";
import { ALLOWED, readProperties } from "./properties.ts";
import { Cursor, malformed, protocolError } from "./reader.ts";

type Ack = PubackPacket | PubcompPacket | PubrecPacket | PubrelPacket;
const CMD = ["", "", "", "", "puback", "pubrec", "pubrel", "pubcomp"] as const;
const NAME = ["", "", "", "", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP"];

/** §3.4.2.1 (PUBACK) and §3.5.2.1 (PUBREC) share one list, §3.6.2.1 / §3.7.2.1 another. */
const PUBACK_CODES = new Set([0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]);
const PUBREL_CODES = new Set([0x00, 0x92]);
/** §3.14.2.1, both directions (a client using a server's code is still understood). */
const DISCONNECT_CODES = new Set([
  0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8b, 0x8d, 0x8e, 0x8f, 0x90, 0x93, 0x94, 0x95,
  0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f, 0xa0, 0xa1, 0xa2,
]);
const AUTH_CODES = new Set([0x00, 0x18, 0x19]);

export function decodeAck(frame: Uint8Array, bodyStart: number, version: number, type: 4 | 5 | 6 | 7): Ack {
  const len = frame.length - bodyStart;
  const cmd = CMD[type];
  if (len === 2) return { cmd, messageId: (frame[bodyStart] << 8) | frame[bodyStart + 1] };
  if (version !== 5 || len < 2) malformed(`${NAME[type]} with a Remaining Length of ${len}, not 2`);
  const messageId = (frame[bodyStart] << 8) | frame[bodyStart + 1];
  const reasonCode = frame[bodyStart + 2];
  // [MQTT-3.4.2-1] [MQTT-3.5.2-1] [MQTT-3.6.2-1] [MQTT-3.7.2-1] one of the packet's reason codes
  if (!(type <= 5 ? PUBACK_CODES : PUBREL_CODES).has(reasonCode)) {
    protocolError(`${NAME[type]} with reason code 0x${reasonCode.toString(16)}`);
  }
  // "If the Remaining Length is less than 4 there is no Property Length" (§3.4.2.2.1)
  if (len === 3) return { cmd, messageId, reasonCode };
  const c = new Cursor(frame, bodyStart + 3, frame.length, NAME[type]);
  const properties = readProperties(c, ALLOWED.ack, NAME[type]);
  c.done();
  return { cmd, messageId, reasonCode, properties };
}

const PINGREQ: PingreqPacket = Object.freeze({ cmd: "pingreq" });

export function decodePingreq(frame: Uint8Array, bodyStart: number): PingreqPacket {
  if (frame.length !== bodyStart) malformed(`PINGREQ with a Remaining Length of ${frame.length - bodyStart}, not 0`);
  return PINGREQ; // nothing to carry: one shared object
}

export function decodeDisconnect(frame: Uint8Array, bodyStart: number, version: number): DisconnectPacket {
  const len = frame.length - bodyStart;
  if (version !== 5) {
    if (len !== 0) malformed(`DISCONNECT with a Remaining Length of ${len}, not 0`);
    return { cmd: "disconnect" };
  }
  // Remaining Length 0: reason 0x00 and no properties; 1: no Property Length (§3.14.2.2.1)
  if (len === 0) return { cmd: "disconnect", reasonCode: 0 };
  const reasonCode = frame[bodyStart];
  if (!DISCONNECT_CODES.has(reasonCode)) protocolError(`DISCONNECT with reason code 0x${reasonCode.toString(16)}`); // [MQTT-3.14.2-1]
  if (len === 1) return { cmd: "disconnect", reasonCode };
  const c = new Cursor(frame, bodyStart + 1, frame.length, "DISCONNECT");
  const properties = readProperties(c, ALLOWED.disconnect, "DISCONNECT");
  c.done();
  return { cmd: "disconnect", reasonCode, properties };
}

export function decodeAuth(frame: Uint8Array, bodyStart: number): AuthPacket {
  // Remaining Length 0: Success without properties; otherwise reason code AND Property Length
  // (§3.15.2.2.1 lets both be omitted together, not one of them)
  if (frame.length === bodyStart) return { cmd: "auth", reasonCode: 0 };
  const c = new Cursor(frame, bodyStart, frame.length, "AUTH");
  const reasonCode = c.u8("reason code");
  if (!AUTH_CODES.has(reasonCode)) protocolError(`AUTH with reason code 0x${reasonCode.toString(16)}`); // [MQTT-3.15.2-1]
  const properties = readProperties(c, ALLOWED.auth, "AUTH");
  c.done();
  return { cmd: "auth", reasonCode, properties };
}
