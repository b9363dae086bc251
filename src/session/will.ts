/** Will messages: turning a stored will into a message, and its delay [MQTT-3.1.3-9]. */
import type { StoredMessage, StoredWill } from "../message.ts";

export function willMessage(w: StoredWill, id: string, now: number): StoredMessage {
  const { messageExpiryInterval, ...props } = w.properties ?? {};
  const msg: StoredMessage = { id, topic: w.topic, payload: w.payload, qos: w.qos, retain: w.retain, receivedAt: now };
  if (Object.keys(props).length) msg.properties = props;
  if (messageExpiryInterval !== undefined) msg.expiresAt = now + messageExpiryInterval * 1000;
  return msg;
}

/** Seconds until the will goes: the will delay or the session end, whichever comes first. */
export function willDelaySeconds(w: StoredWill, sessionExpiry: number): number {
  return Math.min(w.delay, sessionExpiry);
}
