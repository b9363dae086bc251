import type { PubcompPacket } from "../../protocol/codec.ts";
import type { Client } from "../client.ts";

/** PUBCOMP: QoS 2 delivery complete. */
export function handlePubcomp(c: Client, p: PubcompPacket): void {
  c.session?.acknowledge(p.messageId!, "released");
}
