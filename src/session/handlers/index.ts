/** CONNECT-first dispatch to one handler per packet type (the decoder refuses server-only types). */
import type { Packet } from "../../protocol/codec.ts";
import { MqttError, RC } from "../../protocol/reason-codes.ts";
import type { Client } from "../client.ts";
import { handleConnect } from "./connect.ts";
import { handlePublish } from "./publish.ts";
import { handlePuback } from "./puback.ts";
import { handlePubrec } from "./pubrec.ts";
import { handlePubrel } from "./pubrel.ts";
import { handlePubcomp } from "./pubcomp.ts";
import { handleSubscribe } from "./subscribe.ts";
import { handleUnsubscribe } from "./unsubscribe.ts";
import { handleDisconnect } from "./disconnect.ts";
import { handleAuth } from "./auth.ts";

export function dispatch(c: Client, p: Packet): Promise<void> | void {
  if (!c.connected && p.cmd !== "connect") return beforeConnack(c, p);
  switch (p.cmd) {
    case "connect": return handleConnect(c, p);
    case "publish": return handlePublish(c, p);
    case "puback": return handlePuback(c, p);
    case "pubrec": return handlePubrec(c, p);
    case "pubrel": return handlePubrel(c, p);
    case "pubcomp": return handlePubcomp(c, p);
    case "subscribe": return handleSubscribe(c, p);
    case "unsubscribe": return handleUnsubscribe(c, p);
    case "pingreq": return c.sendPingresp(); // [MQTT-3.12.4-1]
    case "disconnect": return handleDisconnect(c, p);
    case "auth": return handleAuth(c, p);
    // CONNACK, SUBACK, UNSUBACK, PINGRESP are server-to-client only: refused by the decoder
  }
}

/**
 * A packet while an enhanced authentication exchange runs, before CONNACK: only AUTH and
 * DISCONNECT may come [MQTT-3.1.2-30]; DISCONNECT ends the attempt (no will: not connected).
 */
function beforeConnack(c: Client, p: Packet): Promise<void> | void {
  if (p.cmd === "auth") return handleAuth(c, p);
  if (p.cmd === "disconnect") return c.shutdown(false, "client disconnected during authentication");
  throw new MqttError(RC.PROTOCOL_ERROR, `${p.cmd.toUpperCase()} before CONNACK during authentication`);
}
