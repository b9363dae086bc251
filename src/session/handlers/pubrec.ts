import type { PubrecPacket } from "../../protocol/codec.ts";
import { RC } from "../../protocol/reason-codes.ts";
import type { Client } from "../client.ts";

/** PUBREC: answer PUBREL [MQTT-4.3.3-4]; an MQTT 5 failure code ends the flow [MQTT-4.3.3-?]. */
export function handlePubrec(c: Client, p: PubrecPacket): void {
  const pid = p.messageId!;
  const failed = (p.reasonCode ?? 0) >= 0x80;
  const known = c.session?.received(pid, failed) ?? false;
  if (failed) return;
  if (known) c.sendPubrel(pid);
  else if (c.version === 5) c.sendAck(6, pid, RC.PACKET_ID_NOT_FOUND);
  else c.sendPubrel(pid);
}
