/** Minimal leveled logger; one line per event, `key=value` fields for grepping. */
export type Level = "debug" | "info" | "warn" | "error" | "silent";
const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function createLogger(level: Level, sink: (line: string) => void = (l) => console.error(l)): Logger {
  const min = order[level];
  const line = (lv: Level, msg: string, f?: Record<string, unknown>) => {
    if (order[lv] < min) return;
    let s = `${new Date().toISOString()} ${lv.toUpperCase()} ${msg}`;
    if (f) for (const k in f) s += ` ${k}=${typeof f[k] === "string" ? JSON.stringify(f[k]) : String(f[k])}`;
    sink(s);
  };
  return {
    debug: (m, f) => line("debug", m, f),
    info: (m, f) => line("info", m, f),
    warn: (m, f) => line("warn", m, f),
    error: (m, f) => line("error", m, f),
  };
}
