/**
 * The brokers under test. Each is started fresh for every run, on an ephemeral port, by
 * spawning its runtime binary directly (no shell), so that the pid we sample is the server.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { start, stop, type Spawned } from "./children.ts";
import { freePort, waitForPort } from "./ports.ts";
import { cpuSeconds, listenerPid, memory, type MemorySample } from "./procfs.ts";
import type { Wire } from "./transport.ts";

export const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "..");
const BUN = path.join(ROOT, "node_modules/.bin/bun");
const DENO = path.join(ROOT, "node_modules/.bin/deno");
const MOSQUITTO = "/usr/sbin/mosquitto";
const AEDES_SERVER = path.join(ROOT, "scripts/bench/aedes-server.mjs");
const AEDES_CLUSTER_SERVER = path.join(ROOT, "scripts/bench/aedes-cluster-server.mjs");
const SINK_SERVER = path.join(ROOT, "scripts/bench/sink-server.ts");
const COLIBRI_MAIN = path.join(ROOT, "src/main.ts");

export interface RedisOptions {
  url: string;
  prefix: string;
  /** More Colibri Redis options (--redis-cluster, --redis-sentinels ...: scripts/bench/topologies.ts). */
  args?: string[];
}

export interface LaunchOptions {
  redis?: RedisOptions;
  /** Directory for generated config files. */
  workDir: string;
  /** Seconds between $SYS publications (Colibri --sys-interval, Mosquitto sys_interval). */
  sysInterval?: number;
  /** The broker's one listener: MQTT over TCP (default), TLS or WebSocket (path /mqtt). */
  wire?: Wire;
  /** Certificate and key files for --wire tls (makeBenchCert). */
  cert?: { cert: string; key: string };
  /** ACL file for --acl (makeBenchAcl). */
  aclFile?: string;
}

/**
 * The ACL of --acl: a deployment's kind of file (deny rules, user sections, patterns) under
 * which the bench's anonymous clients may use every topic the scenarios use, so that each
 * publish and each delivery is checked and allowed (the cost measured, nothing refused).
 */
export function makeBenchAcl(workDir: string): string {
  const file = path.join(workDir, "bench.acl");
  fs.writeFileSync(file, [
    "# anonymous clients (the load generator)",
    "topic deny admin/#",
    "topic deny config/+/secret",
    "topic read status/#",
    "topic readwrite bench/#",
    "topic readwrite t/#",
    "topic readwrite #",
    "user operator",
    "topic readwrite admin/#",
    "topic read #",
    "user device",
    "topic write telemetry/+/data",
    "pattern readwrite clients/%c/#",
    "pattern read users/%u/inbox",
    "",
  ].join("\n"));
  // Mosquitto started as root reads it after dropping to its own user
  fs.chmodSync(workDir, 0o755);
  fs.chmodSync(file, 0o644);
  return file;
}

/** A throwaway self-signed certificate for 127.0.0.1 in workDir (openssl), for --wire tls. */
export function makeBenchCert(workDir: string): { cert: string; key: string } {
  const cert = path.join(workDir, "bench.crt");
  const key = path.join(workDir, "bench.key");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
  ], { stdio: "ignore" });
  // Mosquitto started as root reads them after dropping to its own user
  fs.chmodSync(workDir, 0o755);
  fs.chmodSync(cert, 0o644);
  fs.chmodSync(key, 0o644);
  return { cert, key };
}

export interface BrokerKind {
  name: string;
  /** Why it cannot run here (or not with this wire), or undefined. */
  unavailable(wire?: Wire): string | undefined;
  command(port: number, o: LaunchOptions): { cmd: string; args: string[] };
  /** Whether it understands the Colibri --persistence redis options. */
  colibri: boolean;
  /** Nodes launched with the same Redis form one cluster (cluster scenarios). */
  clusters?: boolean;
  /** Runs only the cluster scenarios (it needs the Redis they start). */
  clusterOnly?: boolean;
}

/** The bench's Aedes and sink servers listen on plain TCP only. */
function tcpOnly(wire: Wire | undefined): string | undefined {
  return wire !== undefined && wire !== "tcp" ? `no ${wire} listener in this target` : undefined;
}

function missing(file: string): string | undefined {
  return fs.existsSync(file) ? undefined : `${path.relative(ROOT, file) || file} not found`;
}

function colibriArgs(port: number, o: LaunchOptions): string[] {
  const args = o.wire === "tls"
    ? ["--listen", `mqtts://127.0.0.1:${port}`, "--certfile", o.cert!.cert, "--keyfile", o.cert!.key]
    : o.wire === "ws"
    ? ["--listen", `ws://127.0.0.1:${port}/mqtt`]
    : ["--host", "127.0.0.1", "--port", String(port)];
  if (o.redis !== undefined) {
    args.push("--persistence", "redis", "--redis-url", o.redis.url, "--redis-prefix", o.redis.prefix, ...(o.redis.args ?? []));
  }
  if (o.sysInterval !== undefined) args.push("--sys-interval", String(o.sysInterval));
  if (o.aclFile !== undefined) args.push("--acl-file", o.aclFile);
  // the load generator is one address pushing as fast as it can, against brokers without such
  // limits: Colibri's per-client publish rate and per-address limits are off here
  args.push("--max-publish-rate", "0", "--max-connect-rate", "0", "--max-connections-per-address", "0");
  return args;
}

function mosquittoConfig(port: number, o: LaunchOptions): string {
  const file = path.join(o.workDir, `mosquitto-${port}.conf`);
  fs.writeFileSync(
    file,
    [
      `listener ${port} 127.0.0.1`,
      ...(o.wire === "tls" ? [`certfile ${o.cert!.cert}`, `keyfile ${o.cert!.key}`] : []),
      ...(o.wire === "ws" ? ["protocol websockets"] : []),
      "allow_anonymous true",
      "persistence false",
      // Per-client outbound limits: far above any window the generator keeps open, so that
      // nothing is dropped for lack of queue space. 100 QoS 1/2 messages in flight per client.
      "max_inflight_messages 100",
      "max_queued_messages 100000",
      "max_connections -1",
      "log_dest stderr",
      "log_type error",
      "log_type warning",
      "connection_messages false",
      ...(o.sysInterval !== undefined ? [`sys_interval ${o.sysInterval}`] : []),
      ...(o.aclFile !== undefined ? [`acl_file ${o.aclFile}`] : []),
      "",
    ].join("\n"),
  );
  return file;
}

/** Extra runtime flags for the Colibri targets, e.g. COLIBRI_BENCH_RUNTIME_FLAGS="--cpu-prof". */
function profileFlags(): string[] {
  const f = process.env.COLIBRI_BENCH_RUNTIME_FLAGS;
  return f ? f.split(/\s+/).filter(Boolean) : [];
}

export const BROKERS: readonly BrokerKind[] = [
  {
    name: "colibri-bun",
    colibri: true,
    clusters: true,
    unavailable: () => missing(COLIBRI_MAIN) ?? missing(BUN),
    command: (port, o) => ({ cmd: BUN, args: ["run", ...profileFlags(), COLIBRI_MAIN, ...colibriArgs(port, o)] }),
  },
  {
    name: "colibri-deno",
    colibri: true,
    clusters: true,
    unavailable: () => missing(COLIBRI_MAIN) ?? missing(DENO),
    command: (port, o) => ({ cmd: DENO, args: ["run", "-A", ...profileFlags(), COLIBRI_MAIN, ...colibriArgs(port, o)] }),
  },
  {
    name: "mosquitto",
    colibri: false,
    unavailable: () => missing(MOSQUITTO),
    command: (port, o) => ({ cmd: MOSQUITTO, args: ["-c", mosquittoConfig(port, o)] }),
  },
  {
    name: "aedes-node",
    colibri: false,
    unavailable: (wire) => tcpOnly(wire) ?? missing(path.join(ROOT, "node_modules/aedes/package.json")),
    command: (port) => ({ cmd: "node", args: [AEDES_SERVER, String(port)] }),
  },
  {
    name: "aedes-bun",
    colibri: false,
    unavailable: (wire) => tcpOnly(wire) ?? missing(path.join(ROOT, "node_modules/aedes/package.json")) ?? missing(BUN),
    command: (port) => ({ cmd: BUN, args: [AEDES_SERVER, String(port)] }),
  },
  {
    // Aedes clustered the way Aedes is: mqemitter-redis + aedes-persistence-redis (node)
    name: "aedes-cluster",
    colibri: false,
    clusters: true,
    clusterOnly: true,
    unavailable: () => missing(path.join(ROOT, "node_modules/mqemitter-redis/package.json")) ??
      missing(path.join(ROOT, "node_modules/aedes-persistence-redis/package.json")),
    command: (port, o) => ({ cmd: "node", args: [AEDES_CLUSTER_SERVER, String(port), String(new URL(o.redis!.url).port)] }),
  },
  {
    name: "sink",
    colibri: false,
    unavailable: (wire) => tcpOnly(wire) ?? missing(BUN),
    command: (port) => ({ cmd: BUN, args: [SINK_SERVER, String(port)] }),
  },
];

export function brokerKind(name: string): BrokerKind | undefined {
  return BROKERS.find((b) => b.name === name);
}

export interface ResourceSample {
  /** Seconds of CPU (user + system) used so far. */
  cpu: number;
  mem: MemorySample;
  at: number;
}

export class RunningBroker {
  private constructor(
    readonly kind: BrokerKind,
    readonly port: number,
    readonly proc: Spawned,
    /** The pid holding the listening socket (normally proc.pid). */
    readonly pid: number,
  ) {}

  static async launch(kind: BrokerKind, o: LaunchOptions, startTimeoutMs = 20000): Promise<RunningBroker> {
    const port = await freePort();
    const { cmd, args } = kind.command(port, o);
    const proc = start(cmd, args, ROOT);
    try {
      await waitForPort(port, startTimeoutMs, () => proc.exit === null);
    } catch (e) {
      await stop(proc);
      const out = proc.output().trim();
      throw new Error(`${kind.name} did not start: ${(e as Error).message}${out ? `\n${out}` : ""}`);
    }
    const pid = listenerPid(proc.pid, port) ?? proc.pid;
    return new RunningBroker(kind, port, proc, pid);
  }

  alive(): boolean {
    return this.proc.exit === null;
  }

  /** A one-line description of how the process ended, if it did. */
  exitReason(): string | undefined {
    const e = this.proc.exit;
    if (e === null) return undefined;
    const tail = this.proc.output().trim().split("\n").slice(-5).join(" | ");
    return `exited (code ${e.code}, signal ${e.signal})${tail ? `: ${tail}` : ""}`;
  }

  sample(): ResourceSample {
    return { cpu: cpuSeconds(this.pid), mem: memory(this.pid), at: performance.now() };
  }

  stop(): Promise<void> {
    return stop(this.proc, [this.pid]);
  }
}

export function makeWorkDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "colibri-bench-"));
}
