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

export function dispatch(c: Client, p: Packet): Promise<void> | void {
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
    case "auth":
      // enhanced authentication is not offered (no Authentication Method accepted at CONNECT)
      throw new MqttError(RC.PROTOCOL_ERROR, "AUTH without an authentication method"); // [MQTT-4.12.0-1]
    // CONNACK, SUBACK, UNSUBACK, PINGRESP are server-to-client only: refused by the decoder
  }
}
