/**
 * DISCONNECT from the client: a normal close discards the will [MQTT-3.14.4-3]; any other MQTT 5
 * reason (0x04, or an error) leaves it to be published. MQTT 5 may change the session expiry
 * here, but not from 0 (as sent on CONNECT) to non-zero (§3.14.2.2.2: protocol error 0x82, and
 * then not a valid DISCONNECT, so the will is published).
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
  // only a normal disconnection (0x00, also when the reason code is omitted) discards the will
  // [MQTT-3.14.4-3]; 0x04 asks for it, and an error reason (0x80 and up) is an abnormal end
  // whose will is published too [MQTT-3.1.2-8]. A 3.1.1 DISCONNECT always discards it
  // [MQTT-3.1.2-10].
  const withWill = c.version === 5 && (p.reasonCode ?? 0) !== RC.SUCCESS;
  c.shutdown(withWill, "client disconnected");
}
