/**
 * The logger: one event per line, in a stable shape an operator can grep or ship.
 *
 *   text: 2025-01-31T12:00:00.000Z INFO client connected node=n1 clientId="c1" address="10.0.0.7" version=5
 *   json: {"time":"2025-01-31T12:00:00.000Z","level":"info","node":"n1","event":"client connected","clientId":"c1","address":"10.0.0.7","version":5}
 *
 * Every line has time, level and event (and node when the logger knows it); the fields that
 * name who and why come next in a fixed order (clientId, address, reason), then the rest as
 * given. Payloads are logged only at debug level: a caller that would log one checks
 * `debugEnabled` first, so the hot path pays one property read.
 */
export type Level = "debug" | "info" | "warn" | "error" | "silent";
export type LogFormat = "text" | "json";
const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };
/** Fields that come first, in this order, when present. */
const LEADING = ["clientId", "address", "reason"] as const;

export interface Logger {
  debug(event: string, fields?: Record<string, unknown>): void;
  info(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
  error(event: string, fields?: Record<string, unknown>): void;
  /** True when debug lines are written (check before building a costly debug field). */
  readonly debugEnabled?: boolean;
}

export interface LoggerOptions {
  format?: LogFormat;
  /** This node's id, on every line. */
  node?: string;
}

/** A field value as JSON can carry it: errors as their message, bytes as their length. */
function plain(v: unknown): unknown {
  if (v instanceof Error) return v.message;
  if (v instanceof Uint8Array) return `<${v.length} bytes>`;
  if (typeof v === "bigint") return String(v);
  return v;
}

function textValue(v: unknown): string {
  const p = plain(v);
  return typeof p === "string" ? JSON.stringify(p) : typeof p === "object" && p !== null ? JSON.stringify(p) : String(p);
}

export function createLogger(
  level: Level,
  sink: (line: string) => void = (l) => console.error(l),
  opts: LoggerOptions = {},
): Logger {
  const min = order[level];
  const node = opts.node;
  const json = opts.format === "json";
  const line = (lv: Level, event: string, f?: Record<string, unknown>) => {
    if (order[lv] < min) return;
    const time = new Date().toISOString();
    if (json) {
      const o: Record<string, unknown> = { time, level: lv, node, event };
      if (f) {
        for (const k of LEADING) if (f[k] !== undefined) o[k] = plain(f[k]);
        for (const k in f) if (o[k] === undefined && f[k] !== undefined && k !== "event") o[k] = plain(f[k]);
      }
      sink(JSON.stringify(o));
      return;
    }
    let s = `${time} ${lv.toUpperCase()} ${event}`;
    if (node !== undefined) s += ` node=${node}`;
    if (f) {
      for (const k of LEADING) if (f[k] !== undefined) s += ` ${k}=${textValue(f[k])}`;
      for (const k in f) {
        if (f[k] === undefined || k === "node" || (LEADING as readonly string[]).includes(k)) continue;
        s += ` ${k}=${textValue(f[k])}`;
      }
    }
    sink(s);
  };
  return {
    debug: (m, f) => line("debug", m, f),
    info: (m, f) => line("info", m, f),
    warn: (m, f) => line("warn", m, f),
    error: (m, f) => line("error", m, f),
    debugEnabled: min <= order.debug,
  };
}
