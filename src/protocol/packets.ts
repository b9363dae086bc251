/**
 * The packets a client sends, as the decoders (decode-*.ts, publish-codec.ts) hand them to the
 * session handlers. Server-to-client packets are encoded from mqtt-packet's types (codec.ts).
 */
import type { MessageProperties, QoS } from "../message.ts";
import type { PublishPacket } from "./publish-codec.ts";
import type { UserProperties } from "./properties.ts";

export type { PublishPacket } from "./publish-codec.ts";
export type { UserProperties } from "./properties.ts";

export interface ConnectProperties {
  sessionExpiryInterval?: number;
  receiveMaximum?: number;
  maximumPacketSize?: number;
  topicAliasMaximum?: number;
  /** 0 or 1 (anything else was refused as a protocol error). */
  requestResponseInformation?: number;
  requestProblemInformation?: number;
  authenticationMethod?: string;
  authenticationData?: Uint8Array;
  userProperties?: UserProperties;
}

export interface WillProperties extends MessageProperties {
  willDelayInterval?: number;
  messageExpiryInterval?: number;
}

export interface ConnectWill {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties?: WillProperties;
}

export interface ConnectPacket {
  cmd: "connect";
  /** "MQTT" or "MQIsdp". */
  protocolId: string;
  protocolVersion: number;
  clean: boolean;
  keepalive: number;
  clientId: string;
  will?: ConnectWill;
  username?: string;
  password?: Uint8Array;
  properties?: ConnectProperties;
}

export interface AckProperties {
  reasonString?: string;
  userProperties?: UserProperties;
}

interface Ack<C extends string> {
  cmd: C;
  messageId: number;
  /** MQTT 5 only; absent means 0x00. */
  reasonCode?: number;
  properties?: AckProperties;
}

export type PubackPacket = Ack<"puback">;
export type PubrecPacket = Ack<"pubrec">;
export type PubrelPacket = Ack<"pubrel">;
export type PubcompPacket = Ack<"pubcomp">;

export interface Subscription {
  topic: string;
  qos: QoS;
  /** MQTT 5 subscription options. */
  nl?: boolean;
  rap?: boolean;
  rh?: 0 | 1 | 2;
}

export interface SubscribePacket {
  cmd: "subscribe";
  messageId: number;
  subscriptions: Subscription[];
  properties?: { subscriptionIdentifier?: number; userProperties?: UserProperties };
}

export interface UnsubscribePacket {
  cmd: "unsubscribe";
  messageId: number;
  unsubscriptions: string[];
  properties?: { userProperties?: UserProperties };
}

export interface DisconnectPacket {
  cmd: "disconnect";
  /** MQTT 5 only; absent means 0x00. */
  reasonCode?: number;
  properties?: { sessionExpiryInterval?: number; reasonString?: string; serverReference?: string; userProperties?: UserProperties };
}

export interface AuthPacket {
  cmd: "auth";
  reasonCode: number;
  properties?: { authenticationMethod?: string; authenticationData?: Uint8Array; reasonString?: string; userProperties?: UserProperties };
}

export interface PingreqPacket {
  cmd: "pingreq";
}

export type Packet =
  | ConnectPacket
  | PublishPacket
  | PubackPacket
  | PubrecPacket
  | PubrelPacket
  | PubcompPacket
  | SubscribePacket
  | UnsubscribePacket
  | PingreqPacket
  | DisconnectPacket
  | AuthPacket;
