/**
 * The syntax of one `--listen` URL: scheme://host[:port][/path][?option=value&...].
 * Pure parsing, no Config: config.ts turns an error into a message that names the option,
 * and checks the query options against its rules; listener-spec.ts applies them.
 */
export const SCHEMES = ["mqtt", "mqtts", "ws", "wss"] as const;
export type Scheme = typeof SCHEMES[number];

/** IANA ports for MQTT and MQTT over TLS; WebSocket listeners name theirs. */
const DEFAULT_PORT: Partial<Record<Scheme, number>> = { mqtt: 1883, mqtts: 8883 };

export interface ListenUrl {
  scheme: Scheme;
  /** Without brackets for IPv6 ("::"). */
  host: string;
  port: number;
  /** WebSocket path; "" accepts any path. Always "" for mqtt/mqtts. */
  path: string;
  /** Query options, flag spelling ("proxy-protocol"), in order. */
  query: Array<[string, string]>;
}

const SHAPE = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/(\[[0-9a-fA-F:.]+\]|[^/:?#[\]@]+)(?::(\d*))?(\/[^?#]*)?(?:\?([^#]*))?$/;
const EXAMPLE = "e.g. mqtts://0.0.0.0:8883 or ws://0.0.0.0:8080/mqtt";

/** The parsed URL, or the reason it is not one (a sentence that ends with how to fix it). */
export function parseListenUrl(raw: string): ListenUrl | { error: string } {
  const m = SHAPE.exec(raw.trim());
  if (!m) return { error: `expected scheme://host:port[/path][?option=value], ${EXAMPLE}` };
  const scheme = m[1].toLowerCase() as Scheme;
  if (!SCHEMES.includes(scheme)) {
    return { error: `unknown scheme "${m[1]}": use mqtt://, mqtts://, ws:// or wss://, ${EXAMPLE}` };
  }
  const host = m[2].startsWith("[") ? m[2].slice(1, -1) : m[2];
  let port = DEFAULT_PORT[scheme];
  if (m[3] !== undefined && m[3] !== "") port = Number(m[3]);
  if (port === undefined) return { error: `${scheme}:// needs a port: ${scheme}://${m[2]}:8080${m[4] ?? "/mqtt"}` };
  if (!Number.isInteger(port) || port > 65535) return { error: `port ${m[3]} is not a whole number from 0 to 65535` };
  const ws = scheme === "ws" || scheme === "wss";
  const rawPath = m[4] ?? "";
  if (!ws && rawPath !== "" && rawPath !== "/") {
    return { error: `${scheme}:// listeners have no path; drop "${rawPath}" (paths are for ws:// and wss://)` };
  }
  let path: string;
  try {
    path = ws && rawPath !== "/" ? decodeURI(rawPath) : "";
  } catch {
    return { error: `path "${rawPath}" is not valid percent-encoding` };
  }
  const query: Array<[string, string]> = [];
  if (m[5]) for (const [k, v] of new URLSearchParams(m[5])) query.push([k, v === "" ? "true" : v]);
  return { scheme, host, port, path, query };
}

/** host:port as a URL authority (IPv6 in brackets). */
export function authority(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}
