/**
 * CONNECT decoder (§3.1). Everything that breaks the packet's format is a Malformed Packet:
 * for 3.1/3.1.1 the connection is closed without a CONNACK [MQTT-3.1.4-1], MQTT 5 gets
 * CONNACK 0x81 first (Client.fail). Checks that need the broker's configuration or the
 * meaning of a value (protocol name against level, Receive Maximum 0, ...) are in
 * session/handlers/connect.ts.
 */
import type { QoS } from "../message.ts";
import type { ConnectPacket, ConnectProperties, ConnectWill, WillProperties } from "./packets.ts";
import { ALLOWED, readProperties } from "./properties.ts";
import { Cursor, malformed } from "./reader.ts";

export function decodeConnect(frame: Uint8Array, bodyStart: number): ConnectPacket {
  if ((frame[0] & 15) !== 0) malformed("CONNECT with reserved fixed header flags set"); // [MQTT-2.2.2-2]
  const c = new Cursor(frame, bodyStart, frame.length, "CONNECT");
  const protocolId = c.str("protocol name");
  // the top bit is the bridge flag some brokers (Mosquitto bridges) set; the level is below it
  const level = c.u8("protocol level") & 0x7f;
  const flags = c.u8("connect flags");
  if (flags & 0x01) malformed("CONNECT reserved flag is set"); // [MQTT-3.1.2-3]
  const willFlag = (flags & 0x04) !== 0;
  const willQos = (flags >> 3) & 3;
  const willRetain = (flags & 0x20) !== 0;
  const passwordFlag = (flags & 0x40) !== 0;
  const userFlag = (flags & 0x80) !== 0;
  if (!willFlag && willQos !== 0) {
    malformed("will QoS set without the will flag"); // 3.1.1 [MQTT-3.1.2-13], 5.0 [MQTT-3.1.2-11]
  }
  if (!willFlag && willRetain) {
    malformed("will retain set without the will flag"); // 3.1.1 [MQTT-3.1.2-15], 5.0 [MQTT-3.1.2-13]
  }
  if (willQos === 3) malformed("will QoS 3"); // 3.1.1 [MQTT-3.1.2-14], 5.0 [MQTT-3.1.2-12]
  if (level !== 5 && passwordFlag && !userFlag) {
    // 3.1.1 [MQTT-3.1.2-22]; MQTT 5 allows a password without a user name (§3.1.2.9)
    malformed("password flag set without the user name flag");
  }
  const keepalive = c.u16("keep alive");
  const properties = level === 5
    ? readProperties(c, ALLOWED.connect, "CONNECT") as ConnectProperties | undefined
    : undefined;
  const clientId = c.str("client identifier"); // [MQTT-3.1.3-4]
  let will: ConnectWill | undefined;
  if (willFlag) {
    const wp = level === 5 ? readProperties(c, ALLOWED.will, "CONNECT will properties") as WillProperties | undefined : undefined;
    const topic = c.str("will topic"); // [MQTT-3.1.3-10] (5.0: [MQTT-3.1.3-11])
    const payload = c.bin("will payload");
    will = { topic, payload, qos: willQos as QoS, retain: willRetain, properties: wp };
  }
  const username = userFlag ? c.str("user name") : undefined; // [MQTT-3.1.3-11] (5.0: [MQTT-3.1.3-12])
  const password = passwordFlag ? c.bin("password") : undefined;
  // a field whose flag is 0 must not be there [MQTT-3.1.2-16] [MQTT-3.1.2-18]: extra bytes
  // after the last announced field make the packet malformed
  c.done();
  return { cmd: "connect", protocolId, protocolVersion: level, clean: (flags & 0x02) !== 0, keepalive, clientId, will, username, password, properties };
}
