/** UNSUBSCRIBE: remove each filter, UNSUBACK (MQTT 5: 0x00 or 0x11 per filter). */
import type { UnsubscribePacket } from "../../protocol/codec.ts";
import { MqttError, RC } from "../../protocol/reason-codes.ts";
import type { Client } from "../client.ts";

export async function handleUnsubscribe(c: Client, p: UnsubscribePacket): Promise<void> {
  const ctx = c.ctx;
  const s = c.session!;
  if (!p.unsubscriptions || p.unsubscriptions.length === 0) {
    throw new MqttError(RC.PROTOCOL_ERROR, "UNSUBSCRIBE with no topic filters"); // [MQTT-3.10.3-2]
  }
  const existed = ctx.removeSubscriptions(s, p.unsubscriptions);
  const codes = existed.map((e) => (e ? RC.SUCCESS : RC.NO_SUBSCRIPTION_EXISTED));
  const removed = p.unsubscriptions.filter((_f, i) => existed[i]);
  if (s.persistent && removed.length) {
    await ctx.persistence.removeSubscriptions(s.clientId, removed).catch((e) =>
      ctx.sessionWriteFailed(s, "unsubscribe not stored", e)
    );
  }
  if (c.closed) return;
  // [MQTT-3.10.4-4] UNSUBACK even when nothing matched
  if (c.version === 5) c.sendPacket({ cmd: "unsuback", messageId: p.messageId, granted: codes } as never);
  else c.sendPacket({ cmd: "unsuback", messageId: p.messageId } as never);
}
