/**
 * Colibri benchmark harness. Starts each broker itself on an ephemeral port, drives it with the
 * in-process load generator (scripts/bench/load.ts), checks every delivery, and prints a
 * markdown table of medians with ratios to Mosquitto.
 *
 *   bun run scripts/bench.ts [--quick] [--brokers ...] [--scenarios ...] [--out f.json] [--markdown BENCHMARKS.md]
 *   deno run -A scripts/bench.ts ...   (node:net transport)
 *
 * Run with --help for every option.
 */
import fs from "node:fs";
import process from "node:process";
import { parseArgs, USAGE, UsageError, type BenchConfig } from "./bench/config.ts";
import { BROKERS, brokerKind, makeBenchAcl, makeBenchCert, makeWorkDir, RunningBroker, type BrokerKind } from "./bench/brokers.ts";
import { installSignalHandlers, killAll } from "./bench/children.ts";
import { machineInfo, openFilesLimit } from "./bench/procfs.ts";
import { type RunRecord } from "./bench/record.ts";
import { ceilingTable, checksTable, markdownReport, notesList, persistentVsMosquitto, resultsTable, writeJson, writeMarkdown } from "./bench/report.ts";
import { SCENARIO_NAMES, SCENARIOS, scenario, type Outcome, type Preparation, type Scenario } from "./bench/scenarios.ts";
import { connector } from "./bench/transport.ts";
import { formatValue } from "./bench/format.ts";
import { versions } from "./bench/versions.ts";
import { sleep } from "./bench/ports.ts";

const log = (s: string): void => void process.stderr.write(s + "\n");

/** Above this much CPU used by other processes (% of one CPU) a run is flagged as disturbed. */
const BUSY_PCT = 25;
/** Above this the generator, not the broker, may be what limits a run. */
const GENERATOR_BOUND_PCT = 90;

function reproduceCommand(cfg: BenchConfig): string {
  const v = process.versions as Record<string, string | undefined>;
  const runner = v.bun !== undefined ? "bun run" : "deno run -A";
  return `${runner} scripts/bench.ts ${cfg.argv.join(" ")}`.trim();
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${(ms / 1000).toFixed(0)} s`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Upper bound for one run, generous: setup of thousands of connections + load + drain. */
function runTimeoutMs(cfg: BenchConfig): number {
  return 60000 + cfg.warmupMs + cfg.measureMs + cfg.drainMs;
}

function summaryLine(sc: Scenario, o: Outcome): string {
  const vals = sc.metrics.map((m, i) => `${formatValue(o.values[i], m.unit)}${m.unit === "msg/s" || m.unit === "deliveries/s" ? " " + m.unit : ""}`);
  const v = o.verification;
  const check = v === undefined ? "" : `  lost/dup/ooo ${v.lost}/${v.duplicated}/${v.outOfOrder}`;
  const cpu = o.brokerCpuPct !== undefined ? `  broker ${o.brokerCpuPct.toFixed(0)}%` : "";
  const gen = o.genCpuPct !== undefined ? ` gen ${o.genCpuPct.toFixed(0)}%` : "";
  const other = o.otherCpuPct !== undefined ? ` other ${o.otherCpuPct.toFixed(0)}%` : "";
  return `${vals.join(", ")}${check}${cpu}${gen}${other}`;
}

async function runOne(
  cfg: BenchConfig,
  sc: Scenario,
  kind: BrokerKind,
  repeat: number,
  workDir: string,
  cert?: { cert: string; key: string },
  aclFile?: string,
): Promise<RunRecord> {
  const started = performance.now();
  const rec: RunRecord = { scenario: sc.name, broker: kind.name, repeat, startedAt: new Date().toISOString(), seconds: 0, notes: [] };
  const label = `cb${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  let prep: Preparation = {};
  if (sc.prepare !== undefined) {
    const p = await sc.prepare(cfg, label);
    if (typeof p === "string") {
      rec.skipped = p;
      return rec;
    }
    prep = p;
  }
  let broker: RunningBroker | undefined;
  try {
    const launch = { workDir, wire: cfg.wire, cert, aclFile, ...prep.launch };
    broker = await RunningBroker.launch(kind, launch);
    rec.brokerPid = broker.pid;
    const b = broker;
    const o = await withTimeout(
      sc.run({ broker: b, launch, cfg, connector: connector(cfg.transport, cfg.wire), label, helperPids: prep.helperPids ?? [] }),
      runTimeoutMs(cfg),
      `${sc.name} on ${kind.name}`,
    );
    const { notes, ...measured } = o;
    Object.assign(rec, measured);
    rec.notes.push(...notes);
    if (!b.alive()) rec.error = `broker ${b.exitReason()}`;
    if (o.genCpuPct !== undefined && o.genCpuPct > GENERATOR_BOUND_PCT) {
      rec.notes.push(`load generator at ${o.genCpuPct.toFixed(0)} % CPU: the result may be limited by the generator`);
    }
    if (o.otherCpuPct !== undefined && o.otherCpuPct > BUSY_PCT) rec.busy = true;
  } catch (e) {
    rec.error = (e as Error).message;
    if (broker !== undefined && !broker.alive()) rec.error += ` — broker ${broker.exitReason()}`;
  } finally {
    await broker?.stop();
    if (prep.cleanup !== undefined) {
      try {
        const note = await prep.cleanup();
        if (note !== undefined && rec.error === undefined) rec.notes.push(note);
      } catch (e) {
        rec.notes.push(`cleanup failed: ${(e as Error).message}`);
      }
    }
  }
  rec.seconds = (performance.now() - started) / 1000;
  return rec;
}

/** The shape written by --out. */
interface SavedRun {
  startedAt: string;
  finishedAt: string;
  command: string;
  config: Omit<BenchConfig, "argv">;
  machine: ReturnType<typeof machineInfo>;
  versions: ReturnType<typeof versions>;
  runs: RunRecord[];
}

function printReport(cfg: BenchConfig, runs: readonly RunRecord[]): void {
  const notes = notesList(runs);
  const ceiling = ceilingTable(cfg, runs);
  const persistent = persistentVsMosquitto(cfg, runs);
  process.stdout.write(
    [resultsTable(cfg, runs), "", checksTable(cfg, runs), "", ...(persistent ? [persistent, ""] : []), ...(ceiling ? [ceiling, ""] : []), ...(notes ? [notes, ""] : [])]
      .join("\n") + "\n",
  );
}

function render(file: string, markdown: string | undefined): number {
  const saved = JSON.parse(fs.readFileSync(file, "utf8")) as SavedRun;
  const cfg: BenchConfig = { ...saved.config, argv: [] };
  printReport(cfg, saved.runs);
  if (markdown !== undefined) {
    writeMarkdown(
      markdown,
      markdownReport({
        cfg,
        runs: saved.runs,
        machine: saved.machine,
        versions: saved.versions,
        startedAt: new Date(saved.startedAt),
        finishedAt: new Date(saved.finishedAt),
        command: saved.command,
      }),
    );
    log(`updated ${markdown}`);
  }
  return 0;
}

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs(process.argv.slice(2), SCENARIO_NAMES);
  } catch (e) {
    if (e instanceof UsageError) {
      log(`${e.message}\n\n${USAGE}`);
      return 2;
    }
    throw e;
  }
  if (parsed === "help") {
    log(USAGE);
    return 0;
  }
  if (parsed === "list") {
    const defaults = parseArgs(process.argv.slice(2).filter((a) => a !== "--list"), SCENARIO_NAMES);
    if (typeof defaults !== "string") SCENARIOS.forEach((s, i) => log(`${i + 1}. ${s.name}: ${s.title(defaults)}`));
    return 0;
  }
  const cfg = parsed;
  for (const b of cfg.brokers) {
    if (brokerKind(b) === undefined) {
      log(`unknown broker ${b}; known: ${BROKERS.map((k) => k.name).join(", ")}`);
      return 2;
    }
  }

  if (cfg.render !== undefined) return render(cfg.render, cfg.markdown);

  const workDir = makeWorkDir();
  installSignalHandlers(() => fs.rmSync(workDir, { recursive: true, force: true }));
  const cert = cfg.wire === "tls" ? makeBenchCert(workDir) : undefined;
  const aclFile = cfg.acl ? makeBenchAcl(workDir) : undefined;
  const startedAt = new Date();
  const runs: RunRecord[] = [];

  // Brokers that cannot start here are reported once and skipped.
  const unavailable = new Map<string, string>();
  for (const b of cfg.brokers) {
    const why = (brokerKind(b) as BrokerKind).unavailable(cfg.wire);
    if (why !== undefined) {
      unavailable.set(b, why);
      log(`note: ${b} skipped: ${why}`);
    }
  }
  const fdLimit = openFilesLimit();
  log(
    `colibri bench: ${cfg.brokers.join(", ")} × ${cfg.scenarios.length} scenario(s) × ${cfg.repeat}; ` +
      `transport ${cfg.transport}; wire ${cfg.wire}; open-files limit ${fdLimit}`,
  );

  const total = cfg.scenarios.length * cfg.repeat * cfg.brokers.length;
  let n = 0;
  for (const name of cfg.scenarios) {
    const sc = scenario(name);
    const need = sc.fds?.(cfg);
    const fdProblem =
      need !== undefined && fdLimit < need + 256
        ? `needs about ${need + 256} open files per process but \`ulimit -n\` is ${fdLimit}; ` +
          `raise it (ulimit -n ${Math.max(65536, need + 1024)}) or lower --connections / --wildcard-subs`
        : undefined;
    if (fdProblem !== undefined) log(`!! ${name}: ${fdProblem}`);
    for (let r = 1; r <= cfg.repeat; r++) {
      for (const b of cfg.brokers) {
        n++;
        const kind = brokerKind(b) as BrokerKind;
        const base = { scenario: name, broker: b, repeat: r, startedAt: new Date().toISOString(), seconds: 0, notes: [] };
        const skip = unavailable.get(b) ?? fdProblem ?? (sc.colibriOnly && !kind.colibri ? "Colibri targets only" : undefined) ??
          (sc.clusterOnly && !kind.clusters ? "cluster scenarios need a broker that forms a cluster" : undefined) ??
          (!sc.clusterOnly && kind.clusterOnly ? "cluster scenarios only" : undefined);
        let rec: RunRecord;
        if (skip !== undefined) rec = { ...base, skipped: skip };
        else rec = await runOne(cfg, sc, kind, r, workDir, cert, aclFile);
        runs.push(rec);
        const what = rec.skipped !== undefined
          ? `skipped (${rec.skipped})`
          : rec.error !== undefined
          ? `ERROR ${rec.error.split("\n")[0]}`
          : summaryLine(sc, {
            values: rec.values ?? [],
            verification: rec.verification,
            brokerCpuPct: rec.brokerCpuPct,
            genCpuPct: rec.genCpuPct,
            otherCpuPct: rec.otherCpuPct,
            notes: [],
            detail: null,
          });
        if (rec.skipped === undefined || r === 1) {
          log(`[${n}/${total}] ${name} ${b} #${r}: ${what}${rec.seconds > 0 ? ` (${rec.seconds.toFixed(1)} s)` : ""}`);
        }
        if (cfg.verbose && rec.detail !== undefined) log(JSON.stringify(rec.detail));
        // Let the kernel reap TIME_WAIT sockets / the broker's port between runs.
        if (rec.skipped === undefined) await sleep(100);
      }
    }
  }
  const finishedAt = new Date();
  killAll();
  fs.rmSync(workDir, { recursive: true, force: true });

  const command = reproduceCommand(cfg);
  printReport(cfg, runs);
  const needInfo = cfg.out !== undefined || cfg.markdown !== undefined;
  if (needInfo) {
    const info = { cfg, runs, machine: machineInfo(), versions: versions(), startedAt, finishedAt, command };
    if (cfg.out !== undefined) {
      const { argv: _argv, ...config } = cfg;
      writeJson(cfg.out, { startedAt, finishedAt, command, config, machine: info.machine, versions: info.versions, runs });
      log(`wrote ${cfg.out}`);
    }
    if (cfg.markdown !== undefined) {
      writeMarkdown(cfg.markdown, markdownReport(info));
      log(`updated ${cfg.markdown}`);
    }
  }
  log(`done in ${((finishedAt.getTime() - startedAt.getTime()) / 60000).toFixed(1)} min`);
  const strictFailure = runs.some((r) => r.verification?.strict && (r.verification.lost > 0 || r.verification.duplicated > 0));
  return strictFailure ? 1 : 0;
}

main().then(
  (code) => {
    killAll();
    process.exit(code);
  },
  (e) => {
    log(`bench failed: ${(e as Error).stack ?? e}`);
    killAll();
    process.exit(1);
  },
);
