/**
 * PUBLISH from a client: topic alias resolution, validation, retained store, routing, and the
 * QoS 1/2 acknowledgement once everything the message needs is stored.
 */
import type { PublishPacket } from "../../protocol/codec.ts";
import { MqttError, RC } from "../../protocol/reason-codes.ts";
import { exceedsLevels, topicNameError } from "../../routing/topic.ts";
import type { StoredMessage } from "../../message.ts";
import type { Client } from "../client.ts";
import { resolveInbound } from "../topic-alias.ts";
import { reservedTopic } from "../../auth/auth.ts";
import { LEVEL } from "../memory.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true });

export function handlePublish(c: Client, p: PublishPacket): void | Promise<void> {
  const rate = c.publishRate;
  if (rate !== undefined) {
    const wait = rate.take(c.lastSeen);
    if (wait > 0) return throttle(c, p, wait);
    c.throttledSince = -1;
  }
  return publish(c, p);
}

/**
 * --max-publish-rate: the client is over its rate. Its input waits (the socket is not read
 * meanwhile, so TCP slows the client down) until the token it spent is paid back; a client kept
 * waiting for longer than --publish-rate-grace-ms without a pause is disconnected (MQTT 5:
 * DISCONNECT 0x96 Message rate too high; 3.1.1: closed).
 */
function throttle(c: Client, p: PublishPacket, wait: number): Promise<void> {
  const ctx = c.ctx;
  const now = ctx.clock.now();
  if (c.throttledSince < 0) c.throttledSince = now;
  else if (now - c.throttledSince > ctx.config.publishRateGraceMs) {
    throw new MqttError(RC.MESSAGE_RATE_TOO_HIGH, `publishing faster than ${ctx.config.maxPublishRate} messages/s (--max-publish-rate)`);
  }
  ctx.stats.throttledPublishes++;
  c.conn.pauseReading?.();
  return new Promise<void>((resolve) => ctx.clock.setTimeout(resolve, wait)).then(() => {
    if (c.closed) return;
    c.conn.resumeReading?.();
    return publish(c, p);
  });
}

function publish(c: Client, p: PublishPacket): void | Promise<void> {
  const ctx = c.ctx;
  const cfg = ctx.config;
  const s = c.session!;
  const alias = p.properties?.topicAlias;
  let topic = p.topic;
  if (alias !== undefined || topic === "") {
    const r = resolveInbound(c.inAliases, cfg.topicAliasMaximum, topic, alias, c.version);
    topic = r.topic;
    c.inAliases = r.map;
  }
  const bad = topicNameError(topic);
  if (bad) throw new MqttError(c.version === 5 ? RC.TOPIC_NAME_INVALID : RC.MALFORMED_PACKET, bad); // [MQTT-3.3.2-2]
  if (p.qos > cfg.maximumQoS) {
    throw new MqttError(RC.QOS_NOT_SUPPORTED, `QoS ${p.qos} above the maximum ${cfg.maximumQoS}`); // [MQTT-3.2.2-11]
  }
  if (p.retain && !cfg.retainAvailable) {
    throw new MqttError(RC.RETAIN_NOT_SUPPORTED, "retained messages are not available"); // [MQTT-3.2.2-14]
  }
  if (exceedsLevels(topic, cfg.maxTopicLevels)) {
    // well formed but deeper than we store (--max-topic-levels): MQTT 5 refuses this message
    // alone with 0x90 Topic Name invalid in its PUBACK/PUBREC (QoS 0 has no ack: DISCONNECT
    // 0x90); 3.1.1 has no code for it and closes the connection
    const why = `topic name has more than ${cfg.maxTopicLevels} levels (--max-topic-levels)`;
    if (p.qos === 0 || c.version !== 5) throw new MqttError(RC.TOPIC_NAME_INVALID, why);
    ctx.log.info("message refused", { clientId: c.clientId, reason: "0x90", why });
    c.sendAck(p.qos === 1 ? 4 : 5, p.messageId!, RC.TOPIC_NAME_INVALID, why);
    return;
  }
  const perms = s.permissions;
  if (reservedTopic(topic) || (perms !== undefined && !perms.canPublish(topic))) return notAuthorized(c, p, topic);
  const pr = p.properties;
  // only 1 announces UTF-8 (§3.3.2.3.2); other values are forwarded as sent, not judged
  if (pr?.payloadFormatIndicator === 1 && p.payload.length > 0) {
    try {
      utf8.decode(p.payload);
    } catch {
      // [MQTT-3.3.2-4] payload announced as UTF-8 but is not
      if (p.qos === 0) throw new MqttError(RC.PAYLOAD_FORMAT_INVALID, "payload is not valid UTF-8");
      ctx.log.info("message refused", { clientId: c.clientId, topic, reason: "0x99", why: "payload is not valid UTF-8" });
      c.sendAck(p.qos === 1 ? 4 : 5, p.messageId!, RC.PAYLOAD_FORMAT_INVALID, "payload is not valid UTF-8");
      return;
    }
  }
  if (p.qos > 0 && c.version === 5) {
    // Receive Maximum (§3.3.4, §4.9): QoS 1 counts until its PUBACK is sent, QoS 2 until its
    // PUBREL arrives, both counted on this connection only (the quota is per connection). One
    // more than we advertised is DISCONNECT 0x93 [MQTT-3.3.4-7]
    const live = c.liveQos2;
    const again = p.qos === 2 && live !== undefined && live.has(p.messageId!);
    if (!again && c.incomingPending + (live ? live.size : 0) >= cfg.receiveMaximum) {
      throw new MqttError(RC.RECEIVE_MAXIMUM_EXCEEDED, `more than ${cfg.receiveMaximum} QoS 1/2 publishes unacknowledged`);
    }
    if (p.qos === 2) (c.liveQos2 ??= new Set()).add(p.messageId!);
  }
  if (p.qos === 2 && s.incomingQos2.has(p.messageId!)) {
    // [MQTT-4.3.3-10] a re-sent PUBLISH before PUBREL is not delivered again
    c.sendAck(5, p.messageId!);
    return;
  }
  if (ctx.memory.level !== LEVEL.OK && overMemory(c, p)) return;
  ctx.stats.messagesIn++;
  ctx.stats.publishesInByQos[p.qos]++;
  ctx.stats.payloadBytesInByQos[p.qos] += p.payload.length;
  const now = c.lastSeen; // read once per socket read (Client.data)
  const msg: StoredMessage = {
    id: ctx.newMessageId(),
    topic,
    payload: p.payload,
    qos: p.qos,
    retain: p.retain,
    receivedAt: now,
    holders: 0, // memory accounting (session/memory.ts), set here so every message has one shape
    bytes: 0,
  };
  if (p.wire !== undefined) msg.wire = p.wire;
  if (pr) {
    const { topicAlias: _a, messageExpiryInterval, subscriptionIdentifier: _s, ...rest } = pr;
    if (Object.keys(rest).length) msg.properties = rest;
    if (messageExpiryInterval !== undefined) msg.expiresAt = now + messageExpiryInterval * 1000;
  }
  if (ctx.log.debugEnabled) {
    // payloads reach the log at debug level only (src/log.ts)
    ctx.log.debug("message received", { clientId: c.clientId, topic, qos: p.qos, retain: p.retain, payload: preview(p.payload) });
  }
  const { matched, done, notRetained } = ctx.publish(msg, c.clientId);
  if (p.qos === 0) return;
  const pid = p.messageId!;
  const v5 = c.version === 5;
  // MQTT 5: the retained store refused the message (its quota): delivered, not kept -> 0x97
  const code = () =>
    v5 && notRetained?.value ? RC.QUOTA_EXCEEDED : matched === 0 && v5 ? RC.NO_MATCHING_SUBSCRIBERS : RC.SUCCESS;
  if (p.qos === 2) {
    s.incomingQos2.add(pid);
    const stored = s.persistent ? ctx.persistence.addIncomingQos2(s.clientId, pid) : undefined;
    const all = done && stored ? Promise.all([done, stored]) : done ?? stored;
    if (!all) return c.sendAck(5, pid, code());
    // counted in c.liveQos2 until PUBREL, not in incomingPending
    all.then(() => c.sendAck(5, pid, code()), (e) => storageFailed(c, pid, 2, e));
    return;
  }
  if (!done) return c.sendAck(4, pid, code());
  c.incomingPending++;
  done.then(() => {
    c.incomingPending--;
    c.sendAck(4, pid, code());
  }, (e) => storageFailed(c, pid, 1, e));
}

/**
 * The client may not publish to this topic (its ACL, or a `$`-topic: `$SYS` is the broker's,
 * src/ops/sys.ts). Not delivered, not retained. As Mosquitto does: MQTT 5
 * QoS 1/2 get PUBACK/PUBREC 0x87 Not authorized (a PUBREC >= 0x80 ends the QoS 2 flow); QoS 0,
 * and every QoS of 3.1/3.1.1 (which has no negative acknowledgement), is acknowledged as usual
 * and dropped. The connection stays.
 */
function notAuthorized(c: Client, p: PublishPacket, topic: string): void {
  c.ctx.stats.aclDenied++;
  c.ctx.stats.droppedNotAuthorized++;
  c.ctx.log.info("publish not authorized", { clientId: c.clientId, username: c.username, topic });
  if (p.qos === 0) return;
  const v5 = c.version === 5;
  if (p.qos === 2 && !v5) {
    // 3.1.1 goes on with PUBREL -> PUBCOMP for this id (an unknown id still gets its PUBCOMP)
    c.sendAck(5, p.messageId!);
    return;
  }
  c.sendAck(p.qos === 1 ? 4 : 5, p.messageId!, v5 ? RC.NOT_AUTHORIZED : 0, v5 ? "not authorized" : undefined);
}

/**
 * The broker is past a --max-memory-bytes threshold (session/memory.ts): past 80 % QoS 0 is
 * shed (dropped, counted; QoS 0 may be lost), past 90 % QoS 1/2 is refused. MQTT 5 refuses
 * with PUBACK/PUBREC 0x97 Quota exceeded, which ends that message's flow (the client may
 * retry later). 3.1.1 has no negative acknowledgement: like a message that cannot be stored,
 * it is not acknowledged and the connection is closed, so the client sends it again (DUP)
 * when it reconnects; dropping it after an ack would lose it silently. Clearing a retained
 * message (empty payload) frees memory and always goes through. True when it was handled.
 */
function overMemory(c: Client, p: PublishPacket): boolean {
  if (p.retain && p.payload.length === 0) return false;
  const ctx = c.ctx;
  if (p.qos === 0) {
    ctx.stats.shedQos0++;
    return true;
  }
  if (ctx.memory.level < LEVEL.REFUSE_PUBLISH) return false;
  ctx.stats.refusedPublishes++;
  const why = "server memory limit reached (--max-memory-bytes)";
  if (c.version !== 5) {
    ctx.log.warn("message not acknowledged: memory limit", { clientId: c.clientId, packetId: p.messageId });
    c.disconnect(RC.QUOTA_EXCEEDED, why);
    return true;
  }
  // a PUBREC >= 0x80 ends the flow: the id is free for a new message [MQTT-4.3.3-9]
  if (p.qos === 2) c.liveQos2?.delete(p.messageId!);
  c.sendAck(p.qos === 1 ? 4 : 5, p.messageId!, RC.QUOTA_EXCEEDED, why);
  return true;
}

/**
 * The message could not be made durable: it is not acknowledged. The connection is closed so
 * the client re-sends it (DUP) on reconnect, instead of waiting forever for an ack.
 */
function storageFailed(c: Client, pid: number, qos: 1 | 2, e: unknown) {
  if (qos === 1) c.incomingPending--;
  else {
    c.liveQos2?.delete(pid);
    c.session?.incomingQos2.delete(pid);
  }
  c.ctx.log.error("message not acknowledged: storage failed", { clientId: c.clientId, packetId: pid, error: String(e) });
  c.disconnect(RC.UNSPECIFIED_ERROR, "storage unavailable, message not accepted");
}

const PREVIEW_BYTES = 256;
const lenient = new TextDecoder("utf-8");

/** A payload for a debug log line: its text (the first 256 bytes). */
function preview(payload: Uint8Array): string {
  const more = payload.length > PREVIEW_BYTES ? `... (${payload.length} bytes)` : "";
  return lenient.decode(payload.subarray(0, PREVIEW_BYTES)) + more;
}

