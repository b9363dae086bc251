/**
 * PUBLISH from a client: topic alias resolution, validation, retained store, routing, and the
 * QoS 1/2 acknowledgement once everything the message needs is stored.
 */
import type { PublishPacket } from "../../protocol/codec.ts";
import { MqttError, RC } from "../../protocol/reason-codes.ts";
import { topicNameError } from "../../routing/topic.ts";
import type { StoredMessage } from "../../persistence/persistence.ts";
import type { Client } from "../client.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true });

function resolveTopic(c: Client, p: PublishPacket): string {
  const alias = p.properties?.topicAlias;
  if (alias === undefined) {
    if (p.topic === "") {
      throw new MqttError(c.version === 5 ? RC.PROTOCOL_ERROR : RC.MALFORMED_PACKET, "empty topic without a topic alias");
    }
    return p.topic;
  }
  // [MQTT-3.3.2-8] alias 0 or above our Topic Alias Maximum
  if (alias === 0 || alias > c.ctx.config.topicAliasMaximum) {
    throw new MqttError(RC.TOPIC_ALIAS_INVALID, `topic alias ${alias} outside 1..${c.ctx.config.topicAliasMaximum}`);
  }
  const map = c.inAliases ??= new Map();
  if (p.topic !== "") {
    map.set(alias, p.topic); // [MQTT-3.3.2-?] a topic with an alias (re)defines the mapping
    return p.topic;
  }
  const t = map.get(alias);
  if (t === undefined) throw new MqttError(RC.TOPIC_ALIAS_INVALID, `topic alias ${alias} was never defined`);
  return t;
}

export function handlePublish(c: Client, p: PublishPacket): void | Promise<void> {
  const ctx = c.ctx;
  const cfg = ctx.config;
  const s = c.session!;
  const topic = resolveTopic(c, p);
  const bad = topicNameError(topic);
  if (bad) throw new MqttError(c.version === 5 ? RC.TOPIC_NAME_INVALID : RC.MALFORMED_PACKET, bad); // [MQTT-3.3.2-2]
  if (p.qos > cfg.maximumQoS) {
    throw new MqttError(RC.QOS_NOT_SUPPORTED, `QoS ${p.qos} above the maximum ${cfg.maximumQoS}`); // [MQTT-3.2.2-11]
  }
  if (p.retain && !cfg.retainAvailable) {
    throw new MqttError(RC.RETAIN_NOT_SUPPORTED, "retained messages are not available"); // [MQTT-3.2.2-14]
  }
  const pr = p.properties;
  if (pr?.payloadFormatIndicator && p.payload.length > 0) {
    try {
      utf8.decode(p.payload);
    } catch {
      // [MQTT-3.3.2-4] payload announced as UTF-8 but is not
      if (p.qos === 0) throw new MqttError(RC.PAYLOAD_FORMAT_INVALID, "payload is not valid UTF-8");
      c.sendAck(p.qos === 1 ? 4 : 5, p.messageId!, RC.PAYLOAD_FORMAT_INVALID, "payload is not valid UTF-8");
      return;
    }
  }
  if (p.qos > 0 && c.version === 5 && c.incomingPending + s.incomingQos2.size >= cfg.receiveMaximum &&
    !(p.qos === 2 && s.incomingQos2.has(p.messageId!))) {
    // [MQTT-3.3.4-9] more unacknowledged QoS 1/2 publishes than our Receive Maximum
    throw new MqttError(RC.RECEIVE_MAXIMUM_EXCEEDED, `more than ${cfg.receiveMaximum} QoS 1/2 publishes unacknowledged`);
  }
  if (p.qos === 2 && s.incomingQos2.has(p.messageId!)) {
    // [MQTT-4.3.3-10] a re-sent PUBLISH before PUBREL is not delivered again
    c.sendAck(5, p.messageId!);
    return;
  }
  ctx.stats.messagesIn++;
  const now = ctx.clock.now();
  const msg: StoredMessage = {
    id: ctx.newMessageId(),
    topic,
    payload: p.payload,
    qos: p.qos,
    retain: p.retain,
    receivedAt: now,
  };
  if (pr) {
    const { topicAlias: _a, messageExpiryInterval, subscriptionIdentifier: _s, ...rest } = pr;
    if (Object.keys(rest).length) msg.properties = rest;
    if (messageExpiryInterval !== undefined) msg.expiresAt = now + messageExpiryInterval * 1000;
  }
  const { matched, done } = ctx.publish(msg, c.clientId);
  if (p.qos === 0) return;
  const pid = p.messageId!;
  const code = matched === 0 && c.version === 5 ? RC.NO_MATCHING_SUBSCRIBERS : RC.SUCCESS;
  if (p.qos === 2) {
    s.incomingQos2.add(pid);
    const stored = s.persistent ? ctx.persistence.addIncomingQos2(s.clientId, pid) : undefined;
    const all = done && stored ? Promise.all([done, stored]) : done ?? stored;
    if (!all) return c.sendAck(5, pid, code);
    c.incomingPending++;
    all.then(() => {
      c.incomingPending--;
      c.sendAck(5, pid, code);
    }, (e) => storageFailed(c, pid, e));
    return;
  }
  if (!done) return c.sendAck(4, pid, code);
  c.incomingPending++;
  done.then(() => {
    c.incomingPending--;
    c.sendAck(4, pid, code);
  }, (e) => storageFailed(c, pid, e));
}

/**
 * The message could not be made durable: it is not acknowledged. The connection is closed so
 * the client re-sends it (DUP) on reconnect, instead of waiting forever for an ack.
 */
function storageFailed(c: Client, pid: number, e: unknown) {
  c.incomingPending--;
  c.session?.incomingQos2.delete(pid);
  c.ctx.log.error("message not acknowledged: storage failed", { clientId: c.clientId, packetId: pid, error: String(e) });
  c.disconnect(RC.UNSPECIFIED_ERROR, "storage unavailable, message not accepted");
}
