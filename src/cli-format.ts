/**
 * Text for people: the --help page (options in two columns that wrap instead of breaking, a
 * long flag taking a line of its own) and --print-config (every option, its value, where the
 * value came from; secrets masked).
 */

export type Source = "default" | "file" | "env" | "flag" | "implied" | "generated";
export interface Origin {
  source: Source;
  /** The flag, variable or file that gave the value. */
  where?: string;
}
export type Origins = Record<string, Origin>;
/** Something to tell at start-up about how the options were read. */
export interface Note {
  level: "info" | "warn";
  text: string;
}

type Rule = { kind: string; values?: readonly (string | number)[] };

const WIDTH = 100;
const COLUMN = 34;

/** Words of `text` in lines of at most `width` characters (a no-break space binds two words). */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/[ \t\n]+/).filter((w) => w !== "")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  if (line !== "") lines.push(line);
  return lines.map((l) => l.replace(/\u00a0/g, " "));
}

function placeholder(rule: Rule): string {
  switch (rule.kind) {
    case "int":
      return "<n>";
    case "bool":
      return "[true|false]";
    case "enum":
      return rule.values!.length <= 3 ? `<${rule.values!.join("|")}>` : "<value>";
    default:
      return "<value>";
  }
}

function shownDefault(d: unknown): string {
  if (d === "" || (Array.isArray(d) && d.length === 0)) return "none";
  if (typeof d === "number" && d >= 65536 && d % 1024 === 0) {
    const unit = d % (1024 * 1024 * 1024) === 0 ? ["GiB", 2 ** 30] : d % (1024 * 1024) === 0 ? ["MiB", 2 ** 20] : ["KiB", 1024];
    return `${d} (${d / (unit[1] as number)} ${unit[0]})`;
  }
  return String(d);
}

/** Two columns: the flag (a long one on its own line), then the description wrapped under it. */
function entry(left: string, description: string): string[] {
  const text = wrap(description, WIDTH - COLUMN);
  const out: string[] = [];
  if (left.length + 2 <= COLUMN - 1) out.push(`  ${left.padEnd(COLUMN - 2)}${text.shift() ?? ""}`.trimEnd());
  else out.push(`  ${left}`);
  for (const l of text) out.push(" ".repeat(COLUMN) + l);
  return out;
}

export function formatHelp(
  version: string,
  options: { flag: string; rule: Rule; description: string; default: unknown }[],
): string {
  const lines = [
    `colibri ${version} — MQTT 3.1 / 3.1.1 / 5.0 broker`,
    "",
    "usage: bun run src/main.ts [options]",
    "       deno run -A src/main.ts [options]",
    "",
    ...wrap(
      "Every option is a flag (--port 1884 or --port=1884), an environment variable COLIBRI_<OPTION> " +
        "(COLIBRI_PORT=1884, COLIBRI_LOG_LEVEL=warn), or a key of a JSON config file (--config). Flags win " +
        "over the environment, which wins over the file. A flag of a true/false option alone means true.",
      WIDTH,
    ),
    "",
    "options:",
  ];
  for (const o of options) {
    lines.push(...entry(`--${o.flag} ${placeholder(o.rule)}`, `${o.description} (default:\u00a0${shownDefault(o.default).replace(/ /g, "\u00a0")})`));
  }
  lines.push(
    "",
    "config file:",
    ...wrap(
      "A config file (--config file.json, or COLIBRI_CONFIG=file.json) holds one JSON object whose keys are " +
        'the option names without the dashes, spelled as the flag ("log-level") or in camelCase ("logLevel"), with ' +
        'JSON values: {"port": 1884, "log-level": "warn", "persistence": "redis", "retain-available": false}',
      WIDTH - 2,
    ).map((l) => `  ${l}`),
    "",
    "other:",
    ...entry("--config <file.json>", "read options from a JSON file (see above)"),
    ...entry("--print-config", "print the effective configuration and where each value came from, then exit"),
    ...entry("--help, --version", "this text; the version"),
    "",
    "signals:",
    ...entry("SIGTERM, SIGINT", "stop: clients told 0x8B, sessions flushed, exit within --shutdown-timeout-ms"),
    ...entry("SIGUSR2", "drain: no new connections, /readyz 503, clients sent away at --drain-rate"),
  );
  return lines.join("\n");
}

/** `redis://user:secret@host` -> `redis://user:***@host`. */
export function maskUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, (_m, auth: string) => {
    const colon = auth.indexOf(":");
    return colon < 0 ? `//***@` : `//${auth.slice(0, colon)}:***@`;
  });
}

function originText(o: Origin): string {
  switch (o.source) {
    case "default":
      return "default";
    case "generated":
      return "generated (no --node-id)";
    case "implied":
      return `implied by ${o.where}`;
    default:
      return `${o.source} ${o.where}`;
  }
}

export function formatConfig(
  version: string,
  options: { flag: string; value: unknown; secret: boolean | "url"; origin: Origin }[],
): string {
  const rows = options.map((o) => {
    let v = Array.isArray(o.value) ? o.value.join(",") : String(o.value);
    if (o.secret === "url") v = maskUrl(v);
    else if (o.secret && v !== "") v = "***";
    return [`--${o.flag}`, v === "" ? '""' : v, originText(o.origin)];
  });
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.min(40, Math.max(...rows.map((r) => r[1].length)));
  return [
    `# colibri ${version}: effective configuration (option, value, where the value came from)`,
    ...rows.map(([a, b, c]) => `${a.padEnd(w0)}  ${b.padEnd(w1)}  ${c}`),
  ].join("\n");
}
