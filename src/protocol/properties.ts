/**
 * MQTT 5 properties (§2.2.2) of the packets a client sends, PUBLISH excepted (publish-codec.ts
 * reads those on the hot path). The rules, from §2.2.2.2 and each property's description:
 * - an identifier that is unknown or not valid for the packet is a Malformed Packet, and so is
 *   a value not of the property's data type (a field that runs past the property block, a
 *   string that is not UTF-8);
 * - a property other than User Property appearing twice is a Protocol Error ("It is a
 *   Protocol Error to include ... more than once", in every property's description);
 * - values are otherwise kept as sent: the range checks the specification names (Receive
 *   Maximum 0, Request Problem Information 2, ...) are made where the packet is understood.
 * User Properties are kept as [name, value] pairs in arrival order [MQTT-3.3.2-18].
 */
import { type Cursor, malformed, protocolError } from "./reader.ts";

type Kind = "byte" | "u16" | "u32" | "varint" | "string" | "binary" | "pair";

const TABLE: Record<number, [string, Kind]> = {
  0x01: ["payloadFormatIndicator", "byte"],
  0x02: ["messageExpiryInterval", "u32"],
  0x03: ["contentType", "string"],
  0x08: ["responseTopic", "string"],
  0x09: ["correlationData", "binary"],
  0x0b: ["subscriptionIdentifier", "varint"],
  0x11: ["sessionExpiryInterval", "u32"],
  0x12: ["assignedClientIdentifier", "string"],
  0x13: ["serverKeepAlive", "u16"],
  0x15: ["authenticationMethod", "string"],
  0x16: ["authenticationData", "binary"],
  0x17: ["requestProblemInformation", "byte"],
  0x18: ["willDelayInterval", "u32"],
  0x19: ["requestResponseInformation", "byte"],
  0x1a: ["responseInformation", "string"],
  0x1c: ["serverReference", "string"],
  0x1f: ["reasonString", "string"],
  0x21: ["receiveMaximum", "u16"],
  0x22: ["topicAliasMaximum", "u16"],
  0x23: ["topicAlias", "u16"],
  0x24: ["maximumQoS", "byte"],
  0x25: ["retainAvailable", "byte"],
  0x26: ["userProperties", "pair"],
  0x27: ["maximumPacketSize", "u32"],
  0x28: ["wildcardSubscriptionAvailable", "byte"],
  0x29: ["subscriptionIdentifiersAvailable", "byte"],
  0x2a: ["sharedSubscriptionAvailable", "byte"],
};

/** Which properties each client-to-server packet may carry (§3.x.2.2 of each packet). */
export const ALLOWED = {
  connect: new Set([0x11, 0x21, 0x27, 0x22, 0x19, 0x17, 0x26, 0x15, 0x16]),
  will: new Set([0x18, 0x01, 0x02, 0x03, 0x08, 0x09, 0x26]),
  ack: new Set([0x1f, 0x26]),
  subscribe: new Set([0x0b, 0x26]),
  unsubscribe: new Set([0x26]),
  disconnect: new Set([0x11, 0x1f, 0x26, 0x1c]),
  auth: new Set([0x15, 0x16, 0x1f, 0x26]),
} as const;

export type UserProperties = Array<[string, string]>;

/** Decoded properties by name (the names of TABLE); numbers for every integer type. */
export interface Properties {
  userProperties?: UserProperties;
  [name: string]: unknown;
}

/**
 * Read a Property Length and the properties after it; undefined when there are none.
 * `where` names the packet (or "will properties") in error messages.
 */
export function readProperties(c: Cursor, allowed: ReadonlySet<number>, where: string): Properties | undefined {
  const len = c.varint("property length");
  c.need(len, "properties");
  if (len === 0) return undefined;
  const outer = c.end;
  const end = c.p + len;
  c.end = end; // a value running past the property block is malformed, not the next field
  const out: Properties = {};
  while (c.p < end) {
    const id = c.varint("property identifier");
    const entry = TABLE[id];
    // §2.2.2.2: an identifier not valid for the packet type is a Malformed Packet
    if (entry === undefined || !allowed.has(id)) malformed(`property 0x${id.toString(16)} is not allowed in ${where}`);
    const [name, kind] = entry;
    if (kind === "pair") {
      const k = c.str("user property name");
      const v = c.str("user property value");
      (out.userProperties ??= []).push([k, v]);
      continue;
    }
    if (name in out) protocolError(`${where} holds the ${name} property twice`);
    switch (kind) {
      case "byte": out[name] = c.u8(name); break;
      case "u16": out[name] = c.u16(name); break;
      case "u32": out[name] = c.u32(name); break;
      case "varint": out[name] = c.varint(name); break;
      case "string": out[name] = c.str(name); break;
      case "binary": out[name] = c.bin(name); break;
    }
  }
  c.end = outer;
  return out;
}
