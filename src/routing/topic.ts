/**
 * Topic name and topic filter rules (MQTT 3.1.1 §4.7, MQTT 5.0 §4.7-4.8).
 * Pure functions shared by the router, the retained store and the persistence backends.
 */

/** Why a topic name is invalid, or undefined when valid. */
export function topicNameError(topic: string): string | undefined {
  if (topic.length === 0) return "topic name is empty"; // [MQTT-4.7.3-1]
  if (topic.length > 65535) return "topic name longer than 65535 bytes";
  for (let i = 0; i < topic.length; i++) {
    const c = topic.charCodeAt(i);
    if (c === 0x2b || c === 0x23) return "topic name contains a wildcard"; // [MQTT-3.3.2-2]
    if (c === 0) return "topic name contains U+0000"; // [MQTT-4.7.3-2]
  }
  return undefined;
}

/**
 * True when `s` (a topic name or filter) has more than `max` levels. Stops counting at max + 1,
 * so a topic of 65,535 '/' costs no more than one within the limit (--max-topic-levels).
 */
export function exceedsLevels(s: string, max: number): boolean {
  if (s.length < max) return false; // n characters make at most n + 1 levels: the common case is free
  let levels = 1;
  for (let i = s.indexOf("/"); i !== -1; i = s.indexOf("/", i + 1)) {
    if (++levels > max) return true;
  }
  return false;
}

/** Why a topic filter is invalid, or undefined when valid. */
export function topicFilterError(filter: string): string | undefined {
  if (filter.length === 0) return "topic filter is empty"; // [MQTT-4.7.3-1]
  const levels = filter.split("/");
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i];
    if (l.includes("\u0000")) return "topic filter contains U+0000"; // [MQTT-4.7.3-2]
    if (l.includes("#")) {
      // [MQTT-4.7.1-2] '#' alone in its level and the last character
      if (l !== "#" || i !== levels.length - 1) return "'#' must be the last level, alone";
    }
    if (l.includes("+") && l !== "+") return "'+' must occupy a whole level"; // [MQTT-4.7.1-3]
  }
  return undefined;
}

export interface SharedFilter {
  group: string;
  filter: string;
}

/** `$share/{group}/{filter}` -> parts; undefined when not a shared subscription. */
export function parseShared(filter: string): SharedFilter | undefined | Error {
  if (!filter.startsWith("$share/")) return undefined;
  const rest = filter.slice(7);
  const slash = rest.indexOf("/");
  if (slash <= 0) return new Error("shared subscription needs $share/{group}/{filter}"); // [MQTT-4.8.2-1]
  const group = rest.slice(0, slash);
  if (group.includes("+") || group.includes("#")) {
    return new Error("share name must not contain '+' or '#'"); // [MQTT-4.8.2-2]
  }
  const inner = rest.slice(slash + 1);
  if (inner.length === 0) return new Error("shared subscription has an empty filter");
  return { group, filter: inner };
}

/** True when the topic name matches the filter, honouring the `$`-rule [MQTT-4.7.2-1]. */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.charCodeAt(0) === 0x24 /* $ */) {
    const f0 = filter.charCodeAt(0);
    if (f0 === 0x2b || f0 === 0x23) return false;
  }
  const f = filter.split("/");
  const t = topic.split("/");
  for (let i = 0; i < f.length; i++) {
    const fl = f[i];
    if (fl === "#") return true; // also matches the parent level [MQTT-4.7.1-2]
    if (i >= t.length) return false;
    if (fl !== "+" && fl !== t[i]) return false;
  }
  return f.length === t.length;
}
