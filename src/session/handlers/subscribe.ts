/**
 * SUBSCRIBE: validate each filter, grant a QoS or refuse it (per-filter codes), store the
 * subscription, SUBACK, then send matching retained messages per Retain Handling.
 */
import type { SubscribePacket } from "../../protocol/codec.ts";
import { MqttError, RC } from "../../protocol/reason-codes.ts";
import { exceedsLevels, parseShared, topicFilterError } from "../../routing/topic.ts";
import type { QoS, StoredSubscription } from "../../message.ts";
import type { Client } from "../client.ts";

export async function handleSubscribe(c: Client, p: SubscribePacket): Promise<void> {
  // Topics that get a new retained message while this SUBSCRIBE is in progress: the live
  // delivery of that message supersedes the stored one the (async) retained lookup may still
  // return, so the subscriber never ends up holding the older value.
  const superseded = c.ctx.watchRetained();
  try {
    await subscribe(c, p, superseded);
  } finally {
    c.ctx.unwatchRetained(superseded);
  }
}

async function subscribe(c: Client, p: SubscribePacket, superseded: Set<string>): Promise<void> {
  const ctx = c.ctx;
  const cfg = ctx.config;
  const s = c.session!;
  const v5 = c.version === 5;
  if (!p.subscriptions || p.subscriptions.length === 0) {
    throw new MqttError(RC.PROTOCOL_ERROR, "SUBSCRIBE with no topic filters"); // [MQTT-3.8.3-3]
  }
  const subId = p.properties?.subscriptionIdentifier; // twice: refused by the decoder (0x82)
  if (subId !== undefined && !cfg.subscriptionIdentifiersAvailable) {
    // §3.2.2.3.12: a Subscription Identifier when we said none: protocol error, DISCONNECT 0xA1
    throw new MqttError(RC.SUBSCRIPTION_IDS_NOT_SUPPORTED, "subscription identifiers are not available");
  }
  if (subId === 0) throw new MqttError(RC.PROTOCOL_ERROR, "subscription identifier 0"); // §3.8.2.1.2
  if (v5) {
    // whole-packet protocol errors first, before any filter of the packet takes effect
    for (const r of p.subscriptions) {
      const share = parseShared(r.topic);
      if (share === undefined || share instanceof Error) {
        if (!cfg.wildcardSubscriptionAvailable && /[+#]/.test(r.topic) && !topicFilterError(r.topic)) {
          // §3.2.2.3.11: DISCONNECT 0xA2 when we said Wildcard Subscription Available = 0
          throw new MqttError(RC.WILDCARD_SUBS_NOT_SUPPORTED, `wildcard subscription ${r.topic} not available`);
        }
        continue;
      }
      // §3.2.2.3.13: DISCONNECT 0x9E when we said Shared Subscription Available = 0
      if (!cfg.sharedSubscriptionAvailable) throw new MqttError(RC.SHARED_SUBS_NOT_SUPPORTED, `shared subscription ${r.topic} not available`);
      if (r.nl) throw new MqttError(RC.PROTOCOL_ERROR, `no-local on shared subscription ${r.topic}`); // [MQTT-3.8.3-4]
      if (!cfg.wildcardSubscriptionAvailable && /[+#]/.test(share.filter) && !topicFilterError(share.filter)) {
        throw new MqttError(RC.WILDCARD_SUBS_NOT_SUPPORTED, `wildcard subscription ${r.topic} not available`);
      }
    }
  }
  const granted: number[] = [];
  const added: StoredSubscription[] = [];
  const retainedToSend: Array<{ sub: StoredSubscription; existed: boolean }> = [];
  // routes new to this node, spreading to every node of a cluster (see the SUBACK below)
  let routed: Promise<void>[] | undefined;
  for (const r of p.subscriptions) {
    const filter = r.topic;
    const share = parseShared(filter);
    if (share instanceof Error) {
      granted.push(v5 ? RC.TOPIC_FILTER_INVALID : 0x80);
      continue;
    }
    const inner = share ? share.filter : filter;
    // deeper than --max-topic-levels: refused before anything splits it into levels
    const bad = exceedsLevels(inner, cfg.maxTopicLevels)
      ? `topic filter has more than ${cfg.maxTopicLevels} levels (--max-topic-levels)`
      : topicFilterError(inner);
    if (bad) {
      const shown = filter.length > 200 ? filter.slice(0, 200) + "…" : filter;
      ctx.log.info("subscription refused", { clientId: c.clientId, filter: shown, why: bad });
      granted.push(v5 ? RC.TOPIC_FILTER_INVALID : 0x80); // [MQTT-3.8.4-?] failure per filter
      continue;
    }
    // MQTT 5 clients were told in CONNACK and got DISCONNECT above; 3.1/3.1.1 clients, who
    // cannot be told, get a refusal for that filter
    if (share && !cfg.sharedSubscriptionAvailable) {
      granted.push(0x80);
      continue;
    }
    if (!cfg.wildcardSubscriptionAvailable && /[+#]/.test(inner)) {
      granted.push(0x80);
      continue;
    }
    const perms = s.permissions;
    if (perms !== undefined && !perms.canSubscribe(inner)) {
      // nothing under this filter is readable for the client (auth/acl.ts): 0x87 / 3.1.1 0x80
      ctx.stats.aclDenied++;
      ctx.log.info("subscription not authorized", { clientId: c.clientId, username: c.username, filter });
      granted.push(v5 ? RC.NOT_AUTHORIZED : 0x80);
      continue;
    }
    const max = cfg.maxSubscriptionsPerClient;
    if (max > 0 && s.subscriptions.size >= max && !s.subscriptions.has(filter)) {
      // --max-subscriptions-per-client: a new filter past it is refused (a replaced one is not)
      ctx.log.info("subscription refused: limit reached", { clientId: c.clientId, filter, max });
      granted.push(v5 ? RC.QUOTA_EXCEEDED : 0x80);
      continue;
    }
    const qos = Math.min(r.qos, cfg.maximumQoS) as QoS; // [MQTT-3.8.4-?] granted may be lower
    const sub: StoredSubscription = { filter, qos };
    if (v5) {
      if (r.nl) sub.noLocal = true;
      if (r.rap) sub.retainAsPublished = true;
      if (r.rh) sub.retainHandling = r.rh as 0 | 1 | 2;
      if (subId !== undefined) sub.subscriptionId = subId; // kept with the subscription (§3.8.2.1.2)
    }
    const existed = s.subscriptions.has(filter);
    // [MQTT-3.8.4-3] an identical filter replaces the existing subscription
    const spreading = ctx.addSubscriptions(s, [sub]);
    if (spreading) (routed ??= []).push(spreading);
    added.push(sub);
    granted.push(qos);
    if (!share) retainedToSend.push({ sub, existed }); // [MQTT-3.8.4-?] no retained for shared subs
  }
  const stored = s.persistent && added.length ? ctx.persistence.putSubscriptions(s.clientId, added) : undefined;
  if (routed) {
    // SUBACK only once every node knows the route: a message published anywhere after the
    // subscriber has its SUBACK reaches it (cluster). Without the store the subscription
    // still works on this node; its route is shared when the store is back.
    await Promise.all(routed).catch((e) =>
      ctx.log.warn("route not shared with the other nodes yet", { clientId: c.clientId, error: String(e) })
    );
  }
  if (stored) {
    try {
      await stored;
    } catch (e) {
      ctx.sessionWriteFailed(s, "subscription not stored", e);
      for (let i = 0; i < granted.length; i++) if (granted[i] < 0x80) granted[i] = v5 ? RC.UNSPECIFIED_ERROR : 0x80;
    }
  }
  if (c.closed) return;
  // [MQTT-3.8.4-1] SUBACK with the same packet id, one code per filter [MQTT-3.9.3-1]
  c.sendPacket({ cmd: "suback", messageId: p.messageId, granted } as never);
  for (const { sub, existed } of retainedToSend) {
    const rh = sub.retainHandling ?? 0;
    // [MQTT-3.3.1-9] rh 0: always; [MQTT-3.3.1-10] rh 1: only for a new subscription; rh 2: never
    if (rh === 2 || (rh === 1 && existed) || !cfg.retainAvailable) continue;
    await ctx.sendRetained(s, sub.filter, sub.qos, sub.subscriptionId, superseded);
  }
}
