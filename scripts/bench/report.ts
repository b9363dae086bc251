/** Markdown tables, the BENCHMARKS.md section, and the JSON dump. */
import fs from "node:fs";
import path from "node:path";
import { type BenchConfig } from "./config.ts";
import { type RunRecord } from "./record.ts";
import { SCENARIO_NAMES, scenario } from "./scenarios.ts";
import { summarize } from "./stats.ts";
import { formatMb, formatPct, formatRange, formatRatio, formatValue } from "./format.ts";
import { type MachineInfo } from "./procfs.ts";
import { type Versions } from "./versions.ts";

const BASELINE = "mosquitto";
const START = "<!-- bench:results:start -->";
const END = "<!-- bench:results:end -->";

function runsOf(runs: readonly RunRecord[], sc: string, broker: string): RunRecord[] {
  return runs.filter((r) => r.scenario === sc && r.broker === broker);
}

function metricValues(runs: readonly RunRecord[], i: number): number[] {
  return runs.filter((r) => r.values !== undefined && r.error === undefined).map((r) => (r.values as number[])[i]);
}

/** One row per scenario metric, one column per broker: median (min–max) ×ratio-to-Mosquitto. */
export function resultsTable(cfg: BenchConfig, runs: readonly RunRecord[]): string {
  const head = ["#", "Scenario", "Metric", ...cfg.brokers];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map((_, i) => (i < 3 ? "---" : "---:")).join("|")}|`];
  for (const name of cfg.scenarios) {
    const sc = scenario(name);
    const num = String(SCENARIO_NAMES.indexOf(name) + 1);
    sc.metrics.forEach((m, i) => {
      const base = summarize(metricValues(runsOf(runs, name, BASELINE), i));
      const cells = cfg.brokers.map((b) => {
        const rs = runsOf(runs, name, b);
        if (rs.length === 0) return "";
        if (rs.every((r) => r.skipped !== undefined)) return "skipped";
        const s = summarize(metricValues(rs, i));
        const failed = rs.filter((r) => r.error !== undefined).length;
        if (s === undefined) return failed > 0 ? "**error**" : "–";
        let cell = formatValue(s.median, m.unit);
        if (s.n > 1) cell += ` (${formatRange(s.min, s.max, m.unit)})`;
        if (base !== undefined && b !== BASELINE && base.median !== 0) cell += ` ${formatRatio(s.median / base.median)}`;
        if (failed > 0) cell += ` **${failed} failed**`;
        return cell;
      });
      const metric = `${m.unit} ${m.better === "higher" ? "↑" : "↓"}` + (sc.metrics.length > 1 ? ` ${m.name}` : "");
      lines.push(`| ${i === 0 ? num : ""} | ${i === 0 ? sc.title(cfg) : ""} | ${metric} | ${cells.join(" | ")} |`);
    });
  }
  return lines.join("\n");
}

function checkCell(r: RunRecord): string {
  if (r.skipped !== undefined) return "skip";
  if (r.error !== undefined) return "error";
  const v = r.verification;
  if (v === undefined) return "n/a";
  return `${v.lost}/${v.duplicated}/${v.outOfOrder}`;
}

function verdict(rs: readonly RunRecord[]): string {
  if (rs.every((r) => r.skipped !== undefined)) return "skipped";
  const problems: string[] = [];
  for (const r of rs) {
    if (r.error !== undefined) problems.push(`run ${r.repeat}: error`);
    const v = r.verification;
    if (v === undefined) continue;
    if (v.strict && (v.lost > 0 || v.duplicated > 0)) problems.push(`run ${r.repeat}: **FAIL**`);
    if (v.unacked > 0) problems.push(`run ${r.repeat}: ${v.unacked} unacked`);
    if (v.foreign > 0) problems.push(`run ${r.repeat}: ${v.foreign} foreign`);
    if (v.disconnects > 0) problems.push(`run ${r.repeat}: ${v.disconnects} disconnects`);
    if (v.stalls > 0) problems.push(`run ${r.repeat}: ${v.stalls} stalls`);
    if (!v.strict && v.lost > 0) problems.push(`run ${r.repeat}: QoS 0 loss`);
  }
  return problems.length === 0 ? "ok" : problems.join(", ");
}

function medianOf(rs: readonly RunRecord[], f: (r: RunRecord) => number | undefined): number | undefined {
  return summarize(rs.map(f).filter((x): x is number => x !== undefined))?.median;
}

/** Median broker CPU, plus its helper (Redis) when there is one. */
function brokerCpuCell(rs: readonly RunRecord[]): string {
  const cpu = formatPct(medianOf(rs, (r) => r.brokerCpuPct));
  const helper = medianOf(rs, (r) => r.helperCpuPct);
  return helper === undefined || helper === 0 ? cpu : `${cpu} + Redis ${formatPct(helper)}`;
}

/** Median CPU of other processes, and the worst run when it differs much. */
function otherCell(rs: readonly RunRecord[]): string {
  const med = medianOf(rs, (r) => r.otherCpuPct);
  const max = summarize(rs.map((r) => r.otherCpuPct).filter((x): x is number => x !== undefined))?.max;
  if (med === undefined || max === undefined) return "–";
  return max - med >= 10 ? `${formatPct(med)} (max ${formatPct(max)})` : formatPct(med);
}

/** Per scenario and broker: the delivery check of every run, and median resource usage. */
export function checksTable(cfg: BenchConfig, runs: readonly RunRecord[]): string {
  const lines = [
    "| Scenario | Broker | lost/dup/out-of-order per run | verdict | broker CPU | broker RSS | generator CPU | other CPU |",
    "|---|---|---|---|---:|---:|---:|---:|",
  ];
  for (const name of cfg.scenarios) {
    for (const b of cfg.brokers) {
      const rs = runsOf(runs, name, b);
      if (rs.length === 0 || rs.every((r) => r.skipped !== undefined)) continue;
      lines.push(
        `| ${name} | ${b} | ${rs.map(checkCell).join(" · ")} | ${verdict(rs)} | ${brokerCpuCell(rs)} | ` +
          `${formatMb(medianOf(rs, (r) => r.brokerRssKb))} | ${formatPct(medianOf(rs, (r) => r.genCpuPct))} | ${otherCell(rs)} |`,
      );
    }
  }
  return lines.join("\n");
}

/**
 * The generator's own ceiling, from runs against the sink: the rate reached and the generator
 * CPU it took, extrapolated to one full CPU for the generator.
 */
export function ceilingTable(cfg: BenchConfig, runs: readonly RunRecord[]): string {
  const lines = [
    "| Scenario | rate against sink | generator CPU | generator ceiling (rate ÷ CPU share) |",
    "|---|---:|---:|---:|",
  ];
  for (const name of cfg.scenarios) {
    const sc = scenario(name);
    const rs = runsOf(runs, name, "sink").filter((r) => r.values !== undefined && r.genCpuPct !== undefined);
    if (rs.length === 0) continue;
    const unit = sc.metrics[0].unit;
    if (unit !== "msg/s" && unit !== "deliveries/s") continue;
    const rate = summarize(rs.map((r) => (r.values as number[])[0]))?.median ?? NaN;
    const cpu = summarize(rs.map((r) => r.genCpuPct as number))?.median ?? NaN;
    const ceiling = summarize(rs.map((r) => (r.values as number[])[0] / ((r.genCpuPct as number) / 100)))?.median ?? NaN;
    lines.push(`| ${name} | ${formatValue(rate, unit)} ${unit} | ${formatPct(cpu)} | ≈ ${formatValue(ceiling, unit)} ${unit} |`);
  }
  return lines.length > 2 ? lines.join("\n") : "";
}

/**
 * Colibri's QoS 1 to persistent sessions on Redis (qos1-redis) against Mosquitto's in-memory
 * QoS 1 (qos1-10x10, the same load with clean sessions) in the same run: the comparison a
 * user moving from Mosquitto makes, since Mosquitto has no shared store to run scenario 9 on.
 */
export function persistentVsMosquitto(cfg: BenchConfig, runs: readonly RunRecord[]): string {
  const base = summarize(metricValues(runsOf(runs, "qos1-10x10", BASELINE), 0));
  if (base === undefined || base.median === 0) return "";
  const lines: string[] = [];
  for (const b of cfg.brokers) {
    const s = summarize(metricValues(runsOf(runs, "qos1-redis", b), 0));
    if (s === undefined) continue;
    lines.push(
      `- ${b}: QoS 1 to persistent sessions on Redis (scenario 9) ${formatValue(s.median, "msg/s")} msg/s against ` +
        `Mosquitto's in-memory QoS 1 (scenario 3) ${formatValue(base.median, "msg/s")} msg/s: ${formatRatio(s.median / base.median)}`,
    );
  }
  return lines.join("\n");
}

/** Errors, skips and notes, deduplicated; one line about runs disturbed by other load. */
export function notesList(runs: readonly RunRecord[]): string {
  const seen = new Set<string>();
  const out: string[] = [];
  const measured = runs.filter((r) => r.otherCpuPct !== undefined);
  const busy = measured.filter((r) => r.busy === true);
  if (busy.length > 0) {
    out.push(
      `- ${busy.length} of ${measured.length} measured runs saw other processes use more than 25 % of a CPU ` +
        `(column "other CPU"); treat those numbers with care.`,
    );
  }
  for (const r of runs) {
    const items = [
      ...(r.skipped !== undefined ? [`skipped: ${r.skipped}`] : []),
      ...(r.error !== undefined ? [`error (run ${r.repeat}): ${r.error.split("\n").slice(0, 6).join(" ⏎ ")}`] : []),
      ...r.notes.map((n) => `run ${r.repeat}: ${n}`),
    ];
    for (const it of items) {
      const line = `- ${r.scenario} / ${r.broker}: ${it}`;
      const key = line.replace(/\d+(\.\d+)?/g, "N");
      if (!seen.has(key)) {
        seen.add(key);
        out.push(line);
      }
    }
  }
  return out.join("\n");
}

export interface ReportInput {
  cfg: BenchConfig;
  runs: RunRecord[];
  machine: MachineInfo;
  versions: Versions;
  startedAt: Date;
  finishedAt: Date;
  command: string;
}

export function markdownReport(r: ReportInput): string {
  const m = r.machine;
  const v = r.versions;
  const minutes = ((r.finishedAt.getTime() - r.startedAt.getTime()) / 60000).toFixed(1);
  const notes = notesList(r.runs);
  const ceiling = ceilingTable(r.cfg, r.runs);
  const persistent = persistentVsMosquitto(r.cfg, r.runs);
  return [
    `Run ${r.startedAt.toISOString()} (${minutes} min): ${r.cfg.repeat} run(s) per broker and scenario, interleaved; ` +
      `${r.cfg.measureMs / 1000} s measured after ${r.cfg.warmupMs / 1000} s warm-up. Cells: median (min–max) and ratio ` +
      `to Mosquitto; ↑ higher is better, ↓ lower is better.`,
    "",
    resultsTable(r.cfg, r.runs),
    "",
    "Delivery checks (lost / duplicated / out of order, per run) and median resource use during the measured window:",
    "",
    checksTable(r.cfg, r.runs),
    "",
    ...(persistent === "" ? [] : ["Persistent QoS 1 on Redis against Mosquitto's in-memory QoS 1, same run:", "", persistent, ""]),
    ...(ceiling === "" ? [] : ["Load generator ceiling (runs against the sink target):", "", ceiling, ""]),
    ...(notes === "" ? [] : ["Notes:", "", notes, ""]),
    "Scenarios as run:",
    "",
    ...r.cfg.scenarios.map((name) => `${SCENARIO_NAMES.indexOf(name) + 1}. **${name}**: ${scenario(name).description(r.cfg)}`),
    "",
    `Machine: ${m.cpuModel}, ${m.cpus} CPU(s), ${m.memTotalGb.toFixed(1)} GB RAM, Linux ${m.kernel}; loopback only.`,
    `Versions: harness on ${v.harness}; bun ${v.bun}; ${v.deno}; node ${v.node}; ${v.mosquitto}; aedes ${v.aedes}.`,
    "",
    "Reproduce:",
    "",
    "```sh",
    r.command,
    "```",
  ].join("\n");
}

/** Replaces the section between the result markers of `file` (creating the markers if absent). */
export function writeMarkdown(file: string, section: string): void {
  const block = `${START}\n${section}\n${END}`;
  let text = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "# Benchmarks\n\n";
  const a = text.indexOf(START);
  const b = text.indexOf(END);
  if (a >= 0 && b > a) text = text.slice(0, a) + block + text.slice(b + END.length);
  else text = `${text.trimEnd()}\n\n## Latest results\n\n${block}\n`;
  fs.writeFileSync(file, text);
}

export function writeJson(file: string, data: unknown): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(data, null, 2) + "\n");
}
