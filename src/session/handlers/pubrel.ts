import type { PubrelPacket } from "../../protocol/codec.ts";
import { RC } from "../../protocol/reason-codes.ts";
import type { Client } from "../client.ts";

/**
 * PUBREL: the publisher releases an incoming QoS 2 message; forget its packet id and answer
 * PUBCOMP [MQTT-4.3.3-9]. An unknown id still gets PUBCOMP (MQTT 5: 0x92).
 */
export function handlePubrel(c: Client, p: PubrelPacket): void | Promise<void> {
  const s = c.session!;
  const pid = p.messageId!;
  c.liveQos2?.delete(pid); // frees a Receive Maximum slot (handlers/publish.ts)
  const known = s.incomingQos2.delete(pid);
  if (known && s.persistent) {
    return c.ctx.persistence.removeIncomingQos2(s.clientId, pid).then(
      () => c.sendAck(7, pid),
      () => c.sendAck(7, pid), // the id is gone from memory; a stale stored id only costs a PUBREC
    );
  }
  c.sendAck(7, pid, known || c.version !== 5 ? 0 : RC.PACKET_ID_NOT_FOUND);
}
