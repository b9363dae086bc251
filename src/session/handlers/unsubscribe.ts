/** UNSUBSCRIBE: remove each filter, UNSUBACK (MQTT 5: 0x00 or 0x11 per filter). */
import type { UnsubscribePacket } from "../../protocol/codec.ts";
import { MqttError, RC } from "../../protocol/reason-codes.ts";
import { parseShared } from "../../routing/topic.ts";
import type { Client } from "../client.ts";

export async function handleUnsubscribe(c: Client, p: UnsubscribePacket): Promise<void> {
  const ctx = c.ctx;
  const s = c.session!;
  if (!p.unsubscriptions || p.unsubscriptions.length === 0) {
    throw new MqttError(RC.PROTOCOL_ERROR, "UNSUBSCRIBE with no topic filters"); // [MQTT-3.10.3-2]
  }
  const codes: number[] = [];
  const removed: string[] = [];
  for (const filter of p.unsubscriptions) {
    const share = parseShared(filter);
    const existed = s.subscriptions.delete(filter);
    if (existed) {
      ctx.router.remove(s.clientId, filter, share instanceof Error ? undefined : share);
      removed.push(filter);
    }
    codes.push(existed ? RC.SUCCESS : RC.NO_SUBSCRIPTION_EXISTED);
  }
  if (s.persistent && removed.length) {
    await ctx.persistence.removeSubscriptions(s.clientId, removed).catch((e) => {
      ctx.log.error("unsubscribe not stored", { clientId: c.clientId, error: String(e) });
    });
  }
  if (c.closed) return;
  // [MQTT-3.10.4-4] UNSUBACK even when nothing matched
  if (c.version === 5) c.sendPacket({ cmd: "unsuback", messageId: p.messageId, granted: codes } as never);
  else c.sendPacket({ cmd: "unsuback", messageId: p.messageId } as never);
}
