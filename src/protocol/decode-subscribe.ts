/**
 * SUBSCRIBE and UNSUBSCRIBE decoders (§3.8, §3.10). Topic filters are UTF-8 Encoded Strings
 * [MQTT-3.8.3-1] [MQTT-3.10.3-1]: one that is not well-formed, or holds U+0000, makes the whole
 * packet malformed. Whether a filter is valid as a filter (wildcards, empty) is decided per
 * filter in the handler (SUBACK 0x8F / 0x80). An empty list of filters is left to the handler
 * too (a protocol error, [MQTT-3.8.3-2] [MQTT-3.10.3-2]).
 */
import type { QoS } from "../message.ts";
import type { SubscribePacket, Subscription, UnsubscribePacket } from "./packets.ts";
import { ALLOWED, readProperties } from "./properties.ts";
import { Cursor, malformed, protocolError } from "./reader.ts";

function packetId(c: Cursor): number {
  const id = c.u16("packet identifier");
  // [MQTT-2.3.1-1] (5.0: [MQTT-2.2.1-3]) SUBSCRIBE / UNSUBSCRIBE need a non-zero packet id
  if (id === 0) malformed(`${c.packet} with packet identifier 0`);
  return id;
}

export function decodeSubscribe(frame: Uint8Array, bodyStart: number, version: number): SubscribePacket {
  const c = new Cursor(frame, bodyStart, frame.length, "SUBSCRIBE");
  const messageId = packetId(c);
  const properties = version === 5 ? readProperties(c, ALLOWED.subscribe, "SUBSCRIBE") : undefined;
  const subscriptions: Subscription[] = [];
  while (c.left > 0) {
    const topic = c.str("topic filter");
    const o = c.u8("subscription options");
    if (version === 5) {
      if (o & 0xc0) malformed(`subscription options 0x${o.toString(16)} with reserved bits set`); // [MQTT-3.8.3-5]
      // §3.8.3.1 names these two a Protocol Error
      if ((o & 3) === 3) protocolError(`subscription to ${topic} with maximum QoS 3`);
      const rh = (o >> 4) & 3;
      if (rh === 3) protocolError(`subscription to ${topic} with retain handling 3`);
      subscriptions.push({ topic, qos: (o & 3) as QoS, nl: (o & 4) !== 0, rap: (o & 8) !== 0, rh: rh as 0 | 1 | 2 });
    } else {
      // [MQTT-3-8.3-4] reserved bits non-zero or QoS 3: malformed
      if (o > 2) malformed(`requested QoS byte 0x${o.toString(16)}`);
      subscriptions.push({ topic, qos: o as QoS });
    }
  }
  return properties ? { cmd: "subscribe", messageId, subscriptions, properties } : { cmd: "subscribe", messageId, subscriptions };
}

export function decodeUnsubscribe(frame: Uint8Array, bodyStart: number, version: number): UnsubscribePacket {
  const c = new Cursor(frame, bodyStart, frame.length, "UNSUBSCRIBE");
  const messageId = packetId(c);
  const properties = version === 5 ? readProperties(c, ALLOWED.unsubscribe, "UNSUBSCRIBE") : undefined;
  const unsubscriptions: string[] = [];
  while (c.left > 0) unsubscriptions.push(c.str("topic filter"));
  return properties ? { cmd: "unsubscribe", messageId, unsubscriptions, properties } : { cmd: "unsubscribe", messageId, unsubscriptions };
}
