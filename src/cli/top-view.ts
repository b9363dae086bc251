/**
 * What `colibri top` shows, as pure functions: the numbers it needs from a /metrics text, the
 * rates between two scrapes, and the screen as text (one row per node, totals when there are
 * several). The loop, the terminal and the keys are in top.ts.
 */

/** Sample name with its labels as written ('colibri_sessions{state="connected"}') -> value. */
export type Samples = Map<string, number>;

/** Reads sample lines of the Prometheus text format; comments and malformed lines are skipped. */
export function readSamples(text: string): Samples {
  const out: Samples = new Map();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const sp = line.lastIndexOf(" ");
    if (sp <= 0) continue;
    const v = Number(line.slice(sp + 1));
    if (!Number.isNaN(v)) out.set(line.slice(0, sp), v);
  }
  return out;
}

const sumOf = (s: Samples, name: string) => {
  let t = 0;
  for (const [k, v] of s) if (k === name || k.startsWith(name + "{")) t += v;
  return t;
};

/** One node as shown: gauges now, rates per second since the previous scrape. */
export interface NodeView {
  url: string;
  /** Undefined when the last scrape failed (with `error`). */
  node?: string;
  error?: string;
  ready?: boolean;
  connections?: number;
  sessions?: number;
  subscriptions?: number;
  queued?: number;
  queueMax?: number;
  inflight?: number;
  lagMs?: number;
  rssMb?: number;
  /** Per second; undefined on the first scrape. */
  msgsIn?: number;
  msgsOut?: number;
  bytesIn?: number;
  bytesOut?: number;
  dropped?: number;
}

export interface Scrape {
  at: number;
  samples: Samples;
}

export function view(url: string, now: Scrape, before?: Scrape): NodeView {
  const s = now.samples;
  const g = (name: string) => s.get(name);
  let node: string | undefined;
  for (const k of s.keys()) {
    const m = /^colibri_info\{.*node="([^"]*)"/.exec(k);
    if (m) node = m[1];
  }
  const v: NodeView = {
    url,
    node: node ?? "?",
    ready: g("colibri_ready") === 1,
    connections: g("colibri_connections"),
    sessions: sumOf(s, "colibri_sessions"),
    subscriptions: g("colibri_subscriptions"),
    queued: g("colibri_queued_messages"),
    queueMax: g("colibri_queue_depth_max"),
    inflight: g("colibri_inflight_messages"),
    lagMs: (g("colibri_event_loop_lag_max_seconds") ?? 0) * 1000,
    rssMb: (g("process_resident_memory_bytes") ?? 0) / 1048576,
  };
  if (before !== undefined) {
    const dt = (now.at - before.at) / 1000;
    const rate = (name: string) => dt > 0 ? Math.max(0, sumOf(s, name) - sumOf(before.samples, name)) / dt : undefined;
    v.msgsIn = rate("colibri_messages_received_total");
    v.msgsOut = rate("colibri_messages_sent_total");
    v.bytesIn = rate("colibri_received_bytes_total");
    v.bytesOut = rate("colibri_sent_bytes_total");
    v.dropped = rate("colibri_messages_dropped_total");
  }
  return v;
}

function num(v: number | undefined, digits = 0): string {
  if (v === undefined) return "-";
  return v.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function bytes(v: number | undefined): string {
  if (v === undefined) return "-";
  if (v < 1024) return `${v.toFixed(0)} B`;
  if (v < 1048576) return `${(v / 1024).toFixed(1)} KiB`;
  return `${(v / 1048576).toFixed(1)} MiB`;
}

const COLUMNS: [string, number, (v: NodeView) => string][] = [
  ["node", -10, (v) => v.node ?? "?"],
  ["ready", -6, (v) => v.error ? "DOWN" : v.ready ? "yes" : "no"],
  ["conns", 8, (v) => num(v.connections)],
  ["sessions", 9, (v) => num(v.sessions)],
  ["subs", 8, (v) => num(v.subscriptions)],
  ["msg in/s", 10, (v) => num(v.msgsIn)],
  ["msg out/s", 10, (v) => num(v.msgsOut)],
  ["in/s", 10, (v) => bytes(v.bytesIn)],
  ["out/s", 10, (v) => bytes(v.bytesOut)],
  ["drop/s", 7, (v) => num(v.dropped)],
  ["queued", 8, (v) => num(v.queued)],
  ["qmax", 6, (v) => num(v.queueMax)],
  ["inflight", 9, (v) => num(v.inflight)],
  ["lag ms", 7, (v) => num(v.lagMs, 1)],
  ["rss MiB", 8, (v) => num(v.rssMb, 1)],
];

function row(cells: string[]): string {
  return cells.map((c, i) => {
    const w = COLUMNS[i][1];
    return w < 0 ? c.slice(0, -w).padEnd(-w) : c.padStart(w);
  }).join(" ").trimEnd();
}

function total(views: NodeView[]): NodeView {
  const add = (f: (v: NodeView) => number | undefined) => {
    const xs = views.map(f).filter((x): x is number => x !== undefined);
    return xs.length ? xs.reduce((a, b) => a + b, 0) : undefined;
  };
  return {
    url: "", node: "total", ready: views.some((v) => v.ready),
    connections: add((v) => v.connections), sessions: add((v) => v.sessions), subscriptions: add((v) => v.subscriptions),
    msgsIn: add((v) => v.msgsIn), msgsOut: add((v) => v.msgsOut), bytesIn: add((v) => v.bytesIn), bytesOut: add((v) => v.bytesOut),
    dropped: add((v) => v.dropped), queued: add((v) => v.queued), inflight: add((v) => v.inflight),
    queueMax: views.reduce((m, v) => Math.max(m, v.queueMax ?? 0), 0),
    lagMs: views.reduce((m, v) => Math.max(m, v.lagMs ?? 0), 0),
    rssMb: add((v) => v.rssMb),
  };
}

export function render(views: NodeView[], at: Date, intervalS: number): string {
  const lines = [
    `colibri top — ${views.length} node${views.length === 1 ? "" : "s"} — ${at.toISOString()} — every ${intervalS} s — q: quit`,
    "",
    row(COLUMNS.map((c) => c[0])),
    ...views.map((v) => row(COLUMNS.map((c) => c[2](v)))),
  ];
  if (views.length > 1) lines.push(row(COLUMNS.map((c) => c[2](total(views)))));
  const down = views.filter((v) => v.error);
  if (down.length) lines.push("", ...down.map((v) => `${v.url}: ${v.error}`));
  return lines.join("\n");
}
