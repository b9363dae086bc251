/**
 * DISCONNECT from the client: a normal close discards the will [MQTT-3.14.4-3]; MQTT 5
 * reason 0x04 asks for it to be published. MQTT 5 may change the session expiry here, but not
 * from 0 to non-zero [MQTT-3.14.2-2].
 */
import type { DisconnectPacket } from "../../protocol/codec.ts";
import { MqttError, RC } from "../../protocol/reason-codes.ts";
import type { Client } from "../client.ts";

export function handleDisconnect(c: Client, p: DisconnectPacket): void {
  const s = c.session!;
  const newExpiry = p.properties?.sessionExpiryInterval;
  if (newExpiry !== undefined) {
    if (c.connectExpiry === 0 && newExpiry !== 0) {
      throw new MqttError(RC.PROTOCOL_ERROR, "session expiry changed from 0 on DISCONNECT");
    }
    s.expiryInterval = Math.min(newExpiry, c.ctx.config.maxSessionExpiry);
  }
  const withWill = c.version === 5 && p.reasonCode === RC.DISCONNECT_WITH_WILL;
  if (!withWill) c.will = undefined;
  c.shutdown(withWill, "client disconnected");
}
