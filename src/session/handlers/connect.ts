/**
 * CONNECT as a list of named steps (admit -> validate -> identify -> authenticate -> authorize
 * the will -> negotiate -> take the session -> CONNACK -> resume). Each step throws MqttError
 * with the CONNACK reason code of its refusal; Client.fail turns that into the CONNACK (3.1.1
 * return code or 5.0 reason code) and closes. Authentication may take AUTH round trips
 * (session/authenticate.ts): the steps after it then run when the exchange succeeds.
 */
import type { ConnectPacket } from "../../protocol/codec.ts";
import { MqttError, RC } from "../../protocol/reason-codes.ts";
import { exceedsLevels, topicNameError } from "../../routing/topic.ts";
import type { StoredWill } from "../../message.ts";
import type { Client } from "../client.ts";
import { NEVER_EXPIRES } from "../session.ts";
import { OutAliases } from "../topic-alias.ts";
import { type Authenticated, authenticateConnect, authProperties } from "../authenticate.ts";
import { reservedTopic } from "../../auth/auth.ts";
import { TokenBucket } from "../../limits/token-bucket.ts";
import { LEVEL } from "../memory.ts";

function validate(c: Client, p: ConnectPacket): void {
  const cfg = c.ctx.config;
  const name = p.protocolId;
  if (name !== "MQTT" && name !== "MQIsdp") {
    // [MQTT-3.1.2-1] not this protocol: 5.0 may say 0x84; 3.1.1 closes without CONNACK
    throw new MqttError(c.version === 5 ? RC.UNSUPPORTED_PROTOCOL_VERSION : RC.MALFORMED_PACKET, `protocol name ${JSON.stringify(name)}`);
  }
  if ((c.version === 3) !== (name === "MQIsdp")) {
    // [MQTT-3.1.2-2] the name and the level disagree: an unsupported version (CONNACK 0x01 / 0x84)
    throw new MqttError(RC.UNSUPPORTED_PROTOCOL_VERSION, `protocol name ${name} does not match level ${c.version}`);
  }
  const props = p.properties;
  // §3.1.2.11: the values the specification names a Protocol Error
  if (props?.receiveMaximum === 0) throw new MqttError(RC.PROTOCOL_ERROR, "receive maximum 0");
  if (props?.maximumPacketSize === 0) throw new MqttError(RC.PROTOCOL_ERROR, "maximum packet size 0");
  if ((props?.requestResponseInformation ?? 0) > 1) throw new MqttError(RC.PROTOCOL_ERROR, "request response information other than 0 or 1");
  if ((props?.requestProblemInformation ?? 0) > 1) throw new MqttError(RC.PROTOCOL_ERROR, "request problem information other than 0 or 1");
  if (props?.authenticationData !== undefined && props.authenticationMethod === undefined) {
    throw new MqttError(RC.PROTOCOL_ERROR, "authentication data without an authentication method");
  }
  const w = p.will;
  if (w) {
    // a will deeper than --max-topic-levels is refused like an invalid one: 5.0 CONNACK 0x90;
    // 3.1.1 has no return code for it and closes without CONNACK [MQTT-3.2.2-6]
    const bad = topicNameError(w.topic) ??
      (exceedsLevels(w.topic, cfg.maxTopicLevels) ? `topic has more than ${cfg.maxTopicLevels} levels (--max-topic-levels)` : undefined);
    if (bad) throw new MqttError(c.version === 5 ? RC.TOPIC_NAME_INVALID : RC.MALFORMED_PACKET, `will ${bad}`);
    if (w.qos > cfg.maximumQoS) throw new MqttError(RC.QOS_NOT_SUPPORTED, `will QoS ${w.qos} not supported`); // [MQTT-3.2.2-12]
    if (w.retain && !cfg.retainAvailable) throw new MqttError(RC.RETAIN_NOT_SUPPORTED, "retain not available"); // [MQTT-3.2.2-13]
  }
  if (cfg.serverReference) {
    // redirection (draining a node): refuse with Use another server / Server moved
    throw new MqttError(cfg.serverMoved ? RC.SERVER_MOVED : RC.USE_ANOTHER_SERVER, `redirected to ${cfg.serverReference}`);
  }
}

/**
 * Per-address limits (limits/connections.ts), before any authentication work; the address is the
 * client's own by now (a PROXY protocol header comes before the CONNECT). 3.1.1: 0x03.
 */
function admit(c: Client): void {
  const limits = c.ctx.connectionLimits;
  const address = c.conn.remote.address ?? "";
  if (!limits.connectAllowed(address)) {
    c.ctx.stats.limitRefusals++;
    throw new MqttError(RC.CONNECTION_RATE_EXCEEDED, "too many CONNECTs from this address (--max-connect-rate)");
  }
  const refused = limits.admitAddress(address);
  if (refused !== undefined) {
    c.ctx.stats.limitRefusals++;
    throw new MqttError(RC.QUOTA_EXCEEDED, refused);
  }
  c.admittedAddress = address;
}

function identify(c: Client, p: ConnectPacket): boolean {
  if (p.clientId !== "") return false;
  // [MQTT-3.1.3-8] zero-length id with a persistent session is refused in 3.1.1;
  // 3.1 requires 1..23 characters
  if (c.version === 3 || (c.version === 4 && !p.clean)) {
    throw new MqttError(RC.CLIENT_ID_NOT_VALID, "empty client id needs clean session");
  }
  // [MQTT-3.1.3-6] assign a unique id
  p.clientId = `colibri-${c.ctx.config.nodeId}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  return true;
}

function toWill(c: Client, p: ConnectPacket): StoredWill | undefined {
  const w = p.will;
  if (!w) return undefined;
  const { willDelayInterval, ...rest } = w.properties ?? {};
  return {
    topic: w.topic,
    payload: w.payload,
    qos: w.qos,
    retain: w.retain,
    properties: c.version === 5 && Object.keys(rest).length ? rest : undefined,
    delay: c.version === 5 ? willDelayInterval ?? 0 : 0,
  };
}

export async function handleConnect(c: Client, p: ConnectPacket): Promise<void> {
  const ctx = c.ctx;
  c.clientId = p.clientId; // so that a refusal's log line names the client
  admit(c);
  validate(c, p);
  // Mosquitto's use_identity_as_username: the verified certificate names the user, whatever
  // CONNECT says (the listener required the certificate, so the identity is there)
  if (c.listener?.useIdentityAsUsername) {
    if (c.conn.identity === undefined) throw new MqttError(RC.NOT_AUTHORIZED, "no verified client certificate to take the user name from");
    c.username = c.conn.identity;
  } else c.username = p.username;
  const assigned = identify(c, p);
  c.clientId = p.clientId;
  if (ctx.memory.level >= LEVEL.REFUSE_CONNECT && !ctx.sessions.has(p.clientId)) {
    // past --max-memory-bytes: no new clients (5.0 0x89 Server busy, 3.1.1 0x03 Server
    // unavailable); one that owns a session may come back, taking its messages frees memory
    ctx.stats.refusedConnections++;
    throw new MqttError(RC.SERVER_BUSY, "server memory limit reached (--max-memory-bytes)");
  }
  await authenticateConnect(c, p, (a) => accept(c, p, assigned, a));
}

/** Authenticated: authorize, negotiate, take the session, CONNACK. */
async function accept(c: Client, p: ConnectPacket, assigned: boolean, auth: Authenticated): Promise<void> {
  const ctx = c.ctx;
  const cfg = ctx.config;
  c.username = auth.username;
  c.authStamp = auth.stamp;
  const permissions = await ctx.permissionsFor({ clientId: c.clientId, username: c.username });
  if (c.closed) return;
  const w = p.will;
  if (w && (reservedTopic(w.topic) || (permissions !== undefined && !permissions.canPublish(w.topic)))) {
    // a will the client could not publish itself is refused now, not dropped when it is due
    ctx.stats.aclDenied++;
    throw new MqttError(RC.NOT_AUTHORIZED, `will topic ${w.topic} not authorized`);
  }
  const props = p.properties ?? {};
  const ack: Record<string, unknown> = {};
  // keepalive, capped by maxKeepalive and told to the client as Server Keep Alive, which it must
  // then use [MQTT-3.2.2-21]. Without that property the client's own value holds
  // [MQTT-3.2.2-22], so a 3.1/3.1.1 client (no way to tell it) keeps the value it sent.
  let ka = p.keepalive;
  if (c.version === 5 && cfg.maxKeepalive > 0 && (ka === 0 || ka > cfg.maxKeepalive)) {
    ka = cfg.maxKeepalive;
    ack.serverKeepAlive = ka;
  }
  c.keepaliveMs = ka * 1000;
  // session expiry
  let expiry: number;
  if (c.version === 5) {
    expiry = props.sessionExpiryInterval ?? 0;
    if (expiry > cfg.maxSessionExpiry) {
      expiry = cfg.maxSessionExpiry;
      ack.sessionExpiryInterval = expiry;
    }
  } else {
    // a 3.1/3.1.1 persistent session has no expiry of its own ("never"); --max-session-expiry
    // caps it like an MQTT 5 one, the client just cannot be told
    expiry = p.clean ? 0 : Math.min(NEVER_EXPIRES, cfg.maxSessionExpiry);
  }
  // the DISCONNECT rule compares with what the client sent, not with our cap (§3.14.2.2.2)
  c.connectExpiry = c.version === 5 ? props.sessionExpiryInterval ?? 0 : expiry;
  if (c.version === 5) {
    c.sendWindow = Math.min(props.receiveMaximum ?? 65535, cfg.maxInflight);
    c.maxOutPacket = props.maximumPacketSize ?? Infinity;
    // server-to-client aliases only up to what the client accepts [MQTT-3.1.2-26], none when it
    // gave 0 or nothing [MQTT-3.1.2-27]
    const aliasMax = props.topicAliasMaximum ?? 0;
    c.outAliases = aliasMax > 0 ? new OutAliases(aliasMax) : undefined;
    c.requestProblemInfo = props.requestProblemInformation !== 0;
  } else c.sendWindow = cfg.maxInflight;
  c.will = toWill(c, p);

  const { session, present } = await ctx.takeSession(c.clientId, p.clean);
  // a session still being set up here (a dead node's adopted session draining its inbox) is
  // joined once it is complete, so that its held deliveries follow this CONNACK (below)
  while (session.holding) await session.ready();
  if (c.closed) {
    // the connection went while the session was being taken: leave the session as a
    // disconnect would (a clean one ends [MQTT-3.1.2-6], a persistent one starts its expiry)
    // rather than orphaned in the broker without a client. No CONNACK, so no will.
    if (session.client === undefined) {
      session.client = c;
      c.session = session;
      ctx.clientClosed(c, false);
    }
    return;
  }
  // [MQTT-3.2.0-1] the CONNACK is the first packet the client gets: what is routed to the
  // session while it is being stored waits, and follows the CONNACK and the resent state
  session.hold();
  try {
    session.client = c;
    session.expiryInterval = expiry;
    session.protocolVersion = c.version;
    session.username = c.username;
    session.permissions = permissions;
    c.session = session;
    if (session.persistent || c.will) {
      try {
        await ctx.persistSession(session, c.will);
      } catch (e) {
        // the store is away: a session that cannot be kept safe is refused, with a reason the
        // client can act on (5.0 CONNACK 0x88, 3.1.1 0x03) and no internal detail
        ctx.log.error("session not stored; CONNECT refused", { clientId: c.clientId, error: String((e as Error)?.message ?? e) });
        throw new MqttError(RC.SERVER_UNAVAILABLE, "server unavailable, try again later");
      }
    }
    if (c.closed) return;
    c.markConnected();
    const st = ctx.stats;
    if (++st.connections > st.connectionsMax) st.connectionsMax = st.connections;
    st.connectionsTotal++;
    if (cfg.maxPublishRate > 0) c.publishRate = new TokenBucket(cfg.maxPublishRate, cfg.maxPublishRate, ctx.clock.now());

    if (c.version === 5) {
      if (assigned) ack.assignedClientIdentifier = c.clientId;
      ack.receiveMaximum = cfg.receiveMaximum;
      ack.maximumPacketSize = cfg.maxPacketSize;
      ack.topicAliasMaximum = cfg.topicAliasMaximum;
      ack.retainAvailable = cfg.retainAvailable;
      ack.wildcardSubscriptionAvailable = cfg.wildcardSubscriptionAvailable;
      ack.subscriptionIdentifiersAvailable = cfg.subscriptionIdentifiersAvailable;
      ack.sharedSubscriptionAvailable = cfg.sharedSubscriptionAvailable;
      if (cfg.maximumQoS < 2) ack.maximumQoS = cfg.maximumQoS;
      if (props.requestResponseInformation === 1 && cfg.responseInformation) {
        ack.responseInformation = cfg.responseInformation; // [MQTT-3.1.2-28]
      }
      // [MQTT-4.12.0-5] a successful CONNACK repeats the method, with the exchange's last data
      if (auth.method !== undefined) Object.assign(ack, authProperties(auth.method, auth.data));
    }
    // [MQTT-3.2.2-2] session present reflects a resumed session
    c.sendConnack(present, 0, ack);
    ctx.wheel.watch(c);
    const remote = c.conn.remote;
    ctx.log.info("client connected", {
      clientId: c.clientId, address: remote.address, port: remote.port, version: c.version, clean: p.clean, keepalive: ka,
      present, listener: c.listener?.name, username: c.username,
    });
    session.resume(c);
  } finally {
    session.unhold();
  }
}
