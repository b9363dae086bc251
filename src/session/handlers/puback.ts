import type { PubackPacket } from "../../protocol/codec.ts";
import type { Client } from "../client.ts";

/** PUBACK: QoS 1 delivery complete; free the window slot [MQTT-4.3.2-?]. */
export function handlePuback(c: Client, p: PubackPacket): void {
  c.session?.acknowledge(p.messageId!, "sent");
}
