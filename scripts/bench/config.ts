/** Command-line options of scripts/bench.ts. */
import { defaultTransport, type TransportKind, WIRES, type Wire } from "./transport.ts";

export interface BenchConfig {
  brokers: string[];
  /** Scenario names, in run order. */
  scenarios: string[];
  repeat: number;
  warmupMs: number;
  measureMs: number;
  drainMs: number;
  /** Idle connections opened by the memory and connect-time scenarios. */
  connections: number;
  /** Subscribers of the wildcard scenario. */
  wildcardSubs: number;
  /** Connection attempts in flight at once while setting up clients. */
  connectConcurrency: number;
  /** Overrides the per-publisher window of every closed-loop scenario. */
  window?: number;
  /** Publish rate of the fixed-rate latency scenario, msg/s. */
  latencyRate: number;
  transport: TransportKind;
  /** What the clients speak to the broker: MQTT over TCP, TLS or WebSocket. */
  wire: Wire;
  redisUrl: string;
  out?: string;
  markdown?: string;
  /** Re-render the report of a saved --out JSON instead of running. */
  render?: string;
  quick: boolean;
  verbose: boolean;
  /** Run the brokers with an ACL file (Colibri --acl-file, Mosquitto acl_file): the per-delivery check's cost. */
  acl: boolean;
  /** The argument list as given, for the "how to reproduce" line. */
  argv: string[];
}

export const DEFAULT_BROKERS = ["colibri-bun", "colibri-deno", "mosquitto", "aedes-node", "aedes-bun", "aedes-cluster"];

export const USAGE = `Usage: bun run scripts/bench.ts [options]
  --brokers a,b,...     colibri-bun,colibri-deno,mosquitto,aedes-node,aedes-bun,sink
                        (default: all but sink)
  --sink                also run the "sink" target (a trivial fan-out server) to show the
                        load generator's own ceiling
  --scenarios x,y,...   names, numbers or ranges like 1-6 (default: all); see --list
  --list                print the scenarios and exit
  --repeat N            runs per broker and scenario, interleaved (default 3; quick 1)
  --duration S          measured seconds per run (default 2; quick 1)
  --warmup S            seconds of load before measuring (default 1; quick 0.5)
  --connections N       idle connections for scenarios 7-8 (default 10000; quick 2000)
  --wildcard-subs N     subscribers in scenario 5 (default 10000; quick 1000)
  --concurrency N       connection attempts in flight during setup (default 100)
  --window N            override the closed-loop window (messages per publisher)
  --rate N              publish rate of the latency scenario, msg/s (default 20000)
  --transport bun|net   client sockets: Bun.connect or node:net (default: bun under Bun)
  --wire tcp|tls|ws     MQTT over TCP, TLS (a throwaway certificate) or WebSocket, for the brokers
                        that have such a listener (Colibri, Mosquitto; default tcp)
  --redis-url URL       for scenario 9 (default redis://127.0.0.1:6379)
  --out FILE            write all runs as JSON (e.g. bench-results/run.json)
  --markdown FILE       rewrite the results section of FILE (e.g. BENCHMARKS.md)
  --render FILE.json    no run: print (and with --markdown, write) the report of a saved --out file
  --acl                 brokers with an ACL file (Colibri, Mosquitto): every publish and delivery checked
  --quick               smoke run: 1 repeat, short runs, fewer connections
  --verbose             print every run's details to stderr`;

export class UsageError extends Error {}

function positive(name: string, v: string | undefined): number {
  const n = Number(v);
  if (v === undefined || !Number.isFinite(n) || n <= 0) throw new UsageError(`${name} needs a positive number`);
  return n;
}

export function parseArgs(argv: string[], scenarioNames: readonly string[]): BenchConfig | "list" | "help" {
  const quick = argv.includes("--quick");
  const cfg: BenchConfig = {
    brokers: [...DEFAULT_BROKERS],
    scenarios: [...scenarioNames],
    repeat: quick ? 1 : 3,
    warmupMs: quick ? 500 : 1000,
    measureMs: quick ? 1000 : 2000,
    drainMs: 3000,
    connections: quick ? 2000 : 10000,
    wildcardSubs: quick ? 1000 : 10000,
    connectConcurrency: 100,
    latencyRate: 20000,
    transport: defaultTransport(),
    wire: "tcp",
    redisUrl: "redis://127.0.0.1:6379",
    quick,
    verbose: false,
    acl: false,
    argv,
  };
  let sink = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf("=");
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const value = (): string => {
      if (eq > 0) return a.slice(eq + 1);
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--help":
      case "-h":
        return "help";
      case "--list":
        return "list";
      case "--quick":
        break;
      case "--verbose":
        cfg.verbose = true;
        break;
      case "--acl":
        cfg.acl = true;
        break;
      case "--sink":
        sink = true;
        break;
      case "--brokers":
        cfg.brokers = value().split(",").map((s) => s.trim()).filter(Boolean);
        break;
      case "--scenarios": {
        const picked = value().split(",").map((s) => s.trim()).filter(Boolean).flatMap((s) => {
          const range = /^(\d+)-(\d+)$/.exec(s);
          if (range === null) return [s];
          const from = Number(range[1]);
          return Array.from({ length: Math.max(0, Number(range[2]) - from + 1) }, (_, k) => String(from + k));
        });
        cfg.scenarios = picked.map((s) => {
          const byNumber = /^\d+$/.test(s) ? scenarioNames[Number(s) - 1] : undefined;
          const name = byNumber ?? s;
          if (!scenarioNames.includes(name)) throw new UsageError(`unknown scenario ${s} (see --list)`);
          return name;
        });
        break;
      }
      case "--repeat":
        cfg.repeat = Math.round(positive(flag, value()));
        break;
      case "--duration":
        cfg.measureMs = positive(flag, value()) * 1000;
        break;
      case "--warmup":
        cfg.warmupMs = Number(value()) * 1000;
        if (!(cfg.warmupMs >= 0)) throw new UsageError("--warmup needs a number >= 0");
        break;
      case "--connections":
        cfg.connections = Math.round(positive(flag, value()));
        break;
      case "--wildcard-subs":
        cfg.wildcardSubs = Math.round(positive(flag, value()));
        break;
      case "--concurrency":
        cfg.connectConcurrency = Math.round(positive(flag, value()));
        break;
      case "--window":
        cfg.window = Math.round(positive(flag, value()));
        break;
      case "--rate":
        cfg.latencyRate = positive(flag, value());
        break;
      case "--transport": {
        const t = value();
        if (t !== "bun" && t !== "net") throw new UsageError("--transport is bun or net");
        cfg.transport = t;
        break;
      }
      case "--wire": {
        const w = value() as Wire;
        if (!WIRES.includes(w)) throw new UsageError(`--wire is one of ${WIRES.join(", ")}`);
        cfg.wire = w;
        break;
      }
      case "--redis-url":
        cfg.redisUrl = value();
        break;
      case "--out":
        cfg.out = value();
        break;
      case "--markdown":
        cfg.markdown = value();
        break;
      case "--render":
        cfg.render = value();
        break;
      default:
        throw new UsageError(`unknown option ${a}`);
    }
  }
  if (sink && !cfg.brokers.includes("sink")) cfg.brokers.push("sink");
  return cfg;
}
