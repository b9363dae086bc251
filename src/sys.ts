/**
 * $SYS statistics, published every --sys-interval seconds to this node's subscribers:
 *
 *   $SYS/broker/memory/held      bytes the broker holds for messages (session/memory.ts)
 *   $SYS/broker/memory/messages  ... of which message payloads, topics and properties
 *   $SYS/broker/memory/output    ... of which connections' output buffers
 *   $SYS/broker/memory/limit     --max-memory-bytes (0 = none)
 *   $SYS/broker/memory/level     0 normal, 1 shedding QoS 0, 2 refusing QoS 1/2, 3 refusing connections
 *   $SYS/broker/stats/<counter>  every Stats counter (connections, messagesIn, droppedQueueFull, ...)
 *
 * Values are decimal text, QoS 0, not retained and not stored: they describe this process and
 * this moment, so they go to local subscribers only (no persistence, no cluster bus). Topics
 * starting with $ are not matched by a leading wildcard [MQTT-4.7.2-1]; subscribe to
 * `$SYS/#`. The clock is the broker's (a manual clock drives it in tests).
 */
import type { StoredMessage } from "./message.ts";
import type { BrokerContext } from "./session/context.ts";

const enc = new TextEncoder();

/** Start publishing; returns the function that stops it (none when the interval is 0). */
export function startSysTopics(ctx: BrokerContext): (() => void) | undefined {
  const seconds = ctx.config.sysInterval;
  if (seconds <= 0) return undefined;
  let timer: unknown;
  let stopped = false;
  const publish = (topic: string, value: number) => {
    const msg: StoredMessage = {
      id: ctx.newMessageId(), topic, payload: enc.encode(String(value)), qos: 0, retain: false,
      receivedAt: ctx.clock.now(),
    };
    ctx.router.route(msg);
  };
  const tick = () => {
    if (stopped) return;
    const m = ctx.memory;
    publish("$SYS/broker/memory/held", m.held);
    publish("$SYS/broker/memory/messages", m.messages);
    publish("$SYS/broker/memory/output", m.output);
    publish("$SYS/broker/memory/limit", m.limit);
    publish("$SYS/broker/memory/level", m.level);
    for (const [k, v] of Object.entries(ctx.stats)) publish(`$SYS/broker/stats/${k}`, v);
    timer = ctx.clock.setTimeout(tick, seconds * 1000);
  };
  timer = ctx.clock.setTimeout(tick, seconds * 1000);
  return () => {
    stopped = true;
    ctx.clock.clearTimeout(timer);
  };
}
