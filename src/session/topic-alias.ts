/**
 * MQTT 5 Topic Aliases, both directions, one connection at a time: mappings live on the Client
 * and die with it [MQTT-3.3.2-7]; the two directions are independent (§3.3.2.3.4).
 *
 * Client to server: aliases 1..config.topicAliasMaximum (advertised in CONNACK) are accepted
 * [MQTT-3.3.2-12]; a PUBLISH with a topic and an alias (re)defines the mapping.
 * Server to client: the broker assigns aliases 1..(the client's Topic Alias Maximum) to the
 * first topics it sends [MQTT-3.1.2-26]; none at all when the client gave 0 or nothing
 * [MQTT-3.1.2-27]. A repeated topic then costs two bytes (empty topic name + alias).
 */
import { MqttError, RC } from "../protocol/reason-codes.ts";

/** Resolve the topic of an incoming PUBLISH; throws MqttError (DISCONNECT) when it cannot. */
export function resolveInbound(
  map: Map<number, string> | undefined,
  max: number,
  topic: string,
  alias: number | undefined,
  version: number,
): { topic: string; map?: Map<number, string> } {
  if (alias === undefined) {
    if (topic === "") {
      // §3.3.2.1: a zero-length topic name without a Topic Alias is a protocol error
      throw new MqttError(version === 5 ? RC.PROTOCOL_ERROR : RC.MALFORMED_PACKET, "empty topic without a topic alias");
    }
    return { topic };
  }
  // [MQTT-3.3.2-8] alias 0 / [MQTT-3.2.2-17] [MQTT-3.3.2-9] above our Topic Alias Maximum:
  // DISCONNECT 0x94 (§3.3.4)
  if (alias === 0 || alias > max) {
    throw new MqttError(RC.TOPIC_ALIAS_INVALID, `topic alias ${alias} outside 1..${max}`);
  }
  if (topic !== "") {
    // a topic with an alias sets or replaces the mapping (§3.3.2.3.4)
    (map ??= new Map()).set(alias, topic);
    return { topic, map };
  }
  const t = map?.get(alias);
  if (t === undefined) {
    // an alias in range that this connection never mapped [MQTT-3.3.2-7] (mappings do not
    // outlive the connection): a Protocol Error (§3.3.4), 0x94 being for the value itself
    throw new MqttError(RC.PROTOCOL_ERROR, `topic alias ${alias} was never defined on this connection`);
  }
  return { topic: t, map };
}

/** Server-to-client aliases of one connection. */
export class OutAliases {
  private readonly map = new Map<string, number>();
  constructor(readonly max: number) {}

  /**
   * The alias to use for a topic: > 0 an existing mapping (send an empty topic name), < 0 a new
   * mapping -alias (send the topic and the alias; commit() once the packet is really sent),
   * 0 none (all aliases taken: send the topic alone).
   */
  lookup(topic: string): number {
    const a = this.map.get(topic);
    if (a !== undefined) return a;
    return this.map.size < this.max ? -(this.map.size + 1) : 0;
  }

  commit(topic: string, alias: number): void {
    this.map.set(topic, alias);
  }
}
