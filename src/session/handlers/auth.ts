/**
 * AUTH from the client (MQTT 5 enhanced authentication, §4.12): the next step of the exchange a
 * CONNECT started (reason 0x18), or a re-authentication (0x19 starts it, 0x18 continues it).
 * The steps themselves are in session/authenticate.ts.
 */
import type { AuthPacket } from "../../protocol/codec.ts";
import { MqttError, RC } from "../../protocol/reason-codes.ts";
import type { Client } from "../client.ts";
import { continueAuth } from "../authenticate.ts";

export function handleAuth(c: Client, p: AuthPacket): Promise<void> {
  const a = c.auth;
  // [MQTT-4.12.0-7] no Authentication Method in CONNECT: the client must not send AUTH
  if (a === undefined) throw new MqttError(RC.PROTOCOL_ERROR, "AUTH without an authentication method in CONNECT");
  // [MQTT-4.12.0-5] [MQTT-4.12.1-1] every AUTH carries the method the connection authenticated with
  const method = p.properties?.authenticationMethod;
  if (method !== a.method) {
    throw new MqttError(RC.PROTOCOL_ERROR, `AUTH with authentication method ${JSON.stringify(method)}, not ${JSON.stringify(a.method)}`);
  }
  const rc = p.reasonCode ?? 0;
  if (!c.connected) {
    // [MQTT-4.12.0-3] before CONNACK the client answers only with 0x18 Continue authentication
    if (rc !== 0x18 || a.exchange === undefined) throw new MqttError(RC.PROTOCOL_ERROR, `AUTH 0x${rc.toString(16)} during CONNECT`);
  } else if (rc === 0x19) {
    if (a.exchange !== undefined) throw new MqttError(RC.PROTOCOL_ERROR, "re-authentication while one is in progress");
  } else if (rc !== 0x18 || a.exchange === undefined) {
    throw new MqttError(RC.PROTOCOL_ERROR, `AUTH 0x${rc.toString(16)} without a re-authentication in progress`);
  }
  return continueAuth(c, p);
}
