/**
 * The benchmark scenarios. Each run gets a freshly started broker and returns named metrics,
 * plus (for message scenarios) the delivery check and resource usage.
 */
import { type BenchConfig } from "./config.ts";
import { type LaunchOptions, type RunningBroker } from "./brokers.ts";
import { runLoad, type LoadMode, type LoadResult, type LoadSpec } from "./load.ts";
import { openIdle } from "./connections.ts";
import { type Connector } from "./transport.ts";
import { sleep } from "./ports.ts";
import { deletePrefix, parseRedisUrl, redisPing } from "./redis-keys.ts";
import { cpuSeconds, listenerPid } from "./procfs.ts";
import { runSlowConsumer } from "./slow-consumer.ts";
import { CLUSTER_SCENARIOS } from "./cluster.ts";

export type Unit = "msg/s" | "deliveries/s" | "µs" | "KB/conn" | "s" | "MB" | "ratio" | "cmd/msg" | "B/msg" | "ms";

export interface MetricSpec {
  name: string;
  unit: Unit;
  better: "higher" | "lower";
}

export interface Verification {
  lost: number;
  duplicated: number;
  outOfOrder: number;
  foreign: number;
  unacked: number;
  disconnects: number;
  stalls: number;
  /** QoS 1/2: any loss or duplicate is a failure. */
  strict: boolean;
}

/** What a run measured beside its values (kept as is in the RunRecord). */
export interface Measured {
  verification?: Verification;
  brokerCpuPct?: number;
  genCpuPct?: number;
  /** CPU used by other processes on the machine during the measured window. */
  otherCpuPct?: number;
  /** CPU of helper processes (Redis) during the measured window. */
  helperCpuPct?: number;
  brokerRssKb?: number;
}

export interface Outcome extends Measured {
  /** Same order as the scenario's `metrics`. */
  values: number[];
  notes: string[];
  detail: unknown;
}

export interface RunContext {
  broker: RunningBroker;
  /** How the broker was launched (a cluster scenario starts more nodes the same way). */
  launch: LaunchOptions;
  cfg: BenchConfig;
  connector: Connector;
  /** Unique per run; used for client ids. */
  label: string;
  helperPids: number[];
}

export interface Preparation {
  launch?: Partial<LaunchOptions>;
  /** Other processes working for the broker (Redis); their CPU is reported apart. */
  helperPids?: number[];
  cleanup?(): Promise<string | undefined>;
}

export interface Scenario {
  name: string;
  title(cfg: BenchConfig): string;
  /** One paragraph for BENCHMARKS.md. */
  description(cfg: BenchConfig): string;
  metrics: MetricSpec[];
  colibriOnly?: boolean;
  /** Only for brokers that form a cluster over a shared Redis (BrokerKind.clusters). */
  clusterOnly?: boolean;
  /** File descriptors the generator and the broker each need. */
  fds?(cfg: BenchConfig): number;
  /** Runs before the broker starts; a returned string means "skip" with that reason. */
  prepare?(cfg: BenchConfig, label: string): Promise<Preparation | string>;
  run(ctx: RunContext): Promise<Outcome>;
}

const msgRate: MetricSpec = { name: "throughput", unit: "msg/s", better: "higher" };
const deliveryRate: MetricSpec = { name: "throughput", unit: "deliveries/s", better: "higher" };

export type LoadShape = Omit<LoadSpec, "label" | "warmupMs" | "measureMs" | "drainMs" | "connectConcurrency" | "mode"> & {
  mode: LoadMode;
};

export function closed(window: number, cfg: BenchConfig): LoadMode {
  return { kind: "closed", window: cfg.window ?? window };
}

/** Run one load against the run's broker (subscribers on `subPort`: another node of a cluster). */
export async function load(ctx: RunContext, shape: LoadShape, subPort?: number): Promise<LoadResult> {
  const { cfg, broker } = ctx;
  return await runLoad(
    {
      ...shape,
      label: ctx.label,
      warmupMs: cfg.warmupMs,
      measureMs: cfg.measureMs,
      drainMs: cfg.drainMs,
      connectConcurrency: cfg.connectConcurrency,
    },
    {
      host: "127.0.0.1",
      port: broker.port,
      subPort,
      connector: ctx.connector,
      sample: () => broker.sample(),
      helperCpu: () => ctx.helperPids.reduce((sum, pid) => sum + cpuSeconds(pid), 0),
    },
  );
}

export function outcome(r: LoadResult, values: number[], strict: boolean): Outcome {
  const notes: string[] = [];
  if (r.protocolErrors.length > 0) notes.push(`protocol errors: ${r.protocolErrors.join("; ")}`);
  return {
    values,
    verification: { ...r.check, unacked: r.unacked, disconnects: r.disconnects, stalls: r.stalls, strict },
    brokerCpuPct: r.brokerCpuPct,
    genCpuPct: r.genCpuPct,
    otherCpuPct: r.otherCpuPct,
    helperCpuPct: r.helperCpuPct,
    brokerRssKb: r.brokerRssKb,
    notes,
    detail: r,
  };
}

export function qos1Shape(cfg: BenchConfig, subClean: boolean): LoadShape {
  return {
    pubs: 10,
    subs: 10,
    qos: 1,
    payloadSize: 64,
    pubTopics: (p) => [`bench/q1/${p}`],
    subFilters: (s) => [`bench/q1/${s}`],
    fanout: 1,
    mode: closed(64, cfg),
    subClean,
  };
}

export const SCENARIOS: readonly Scenario[] = [
  {
    name: "fanin-qos0",
    title: () => "QoS 0 fan-in, 10 pub → 1 sub, 64 B",
    description: (cfg) =>
      `10 publishers each publish to \`bench/in/<p>\`; one subscriber holds \`bench/in/+\`. QoS 0, 64-byte payload, ` +
      `closed loop with ${cfg.window ?? 128} messages per publisher not yet delivered. Metric: messages received per second.`,
    metrics: [msgRate],
    run: async (ctx) => {
      const r = await load(ctx, {
        pubs: 10,
        subs: 1,
        qos: 0,
        payloadSize: 64,
        pubTopics: (p) => [`bench/in/${p}`],
        subFilters: () => ["bench/in/+"],
        fanout: 1,
        mode: closed(128, ctx.cfg),
        subClean: true,
      });
      return outcome(r, [r.rate], false);
    },
  },
  {
    name: "fanout-qos0",
    title: () => "QoS 0 fan-out, 1 pub → 100 subs, 64 B",
    description: (cfg) =>
      `One publisher publishes to \`bench/out\`; 100 subscribers hold \`bench/out\`. QoS 0, 64-byte payload, closed loop ` +
      `with ${cfg.window ?? 64} messages (×100 deliveries) outstanding. Metric: deliveries received per second, all subscribers together.`,
    metrics: [deliveryRate],
    run: async (ctx) => {
      const r = await load(ctx, {
        pubs: 1,
        subs: 100,
        qos: 0,
        payloadSize: 64,
        pubTopics: () => ["bench/out"],
        subFilters: () => ["bench/out"],
        fanout: 100,
        mode: closed(64, ctx.cfg),
        subClean: true,
      });
      return outcome(r, [r.rate], false);
    },
  },
  {
    name: "qos1-10x10",
    title: () => "QoS 1, 10 pub → 10 sub (topic per pair)",
    description: (cfg) =>
      `10 publishers; publisher p publishes to \`bench/q1/<p>\` and subscriber p holds exactly \`bench/q1/<p>\` (10 independent ` +
      `pairs, no wildcard). QoS 1 on both legs (PUBACK both ways), 64-byte payload, closed loop with ${cfg.window ?? 64} ` +
      `messages per publisher not yet delivered. Metric: messages received per second. Any loss or duplicate is a failure.`,
    metrics: [msgRate],
    run: async (ctx) => {
      const r = await load(ctx, qos1Shape(ctx.cfg, true));
      return outcome(r, [r.rate], true);
    },
  },
  {
    name: "qos2-1x1",
    title: () => "QoS 2, 1 pub → 1 sub",
    description: (cfg) =>
      `One publisher, one subscriber, topic \`bench/q2\`, QoS 2 on both legs (PUBREC/PUBREL/PUBCOMP on each side), ` +
      `64-byte payload, closed loop with ${cfg.window ?? 64} messages outstanding. Metric: messages received per second.`,
    metrics: [msgRate],
    run: async (ctx) => {
      const r = await load(ctx, {
        pubs: 1,
        subs: 1,
        qos: 2,
        payloadSize: 64,
        pubTopics: () => ["bench/q2"],
        subFilters: () => ["bench/q2"],
        fanout: 1,
        mode: closed(64, ctx.cfg),
        subClean: true,
      });
      return outcome(r, [r.rate], true);
    },
  },
  {
    name: "wildcard-10k",
    title: (cfg) => `${cfg.wildcardSubs} wildcard subscribers \`t/<i>/+\``,
    description: (cfg) =>
      `${cfg.wildcardSubs} subscribers (one connection each); subscriber i holds \`t/<i>/+\`. Two publishers publish to ` +
      `\`t/<random i>/x\` (uniform), so each message has exactly one recipient. QoS 0, 64-byte payload, closed loop with ` +
      `${cfg.window ?? 256} messages per publisher outstanding. Metric: deliveries per second.`,
    metrics: [deliveryRate],
    fds: (cfg) => cfg.wildcardSubs + 2,
    run: async (ctx) => {
      const n = ctx.cfg.wildcardSubs;
      const topics = Array.from({ length: n }, (_, i) => `t/${i}/x`);
      const r = await load(ctx, {
        pubs: 2,
        subs: n,
        qos: 0,
        payloadSize: 64,
        pubTopics: () => topics,
        subFilters: (s) => [`t/${s}/+`],
        fanout: 1,
        mode: closed(256, ctx.cfg),
        subClean: true,
      });
      return outcome(r, [r.rate], false);
    },
  },
  {
    name: "latency-20k",
    title: (cfg) => `Latency at ${+(cfg.latencyRate / 1000).toFixed(1)}k msg/s, QoS 0, 1 → 1`,
    description: (cfg) =>
      `One publisher sends ${cfg.latencyRate} msg/s at a fixed rate (a 1 ms ticker sends what is due, so about ` +
      `${Math.max(1, Math.round(cfg.latencyRate / 1000))} messages per write) to ` +
      `\`bench/lat\`; one subscriber. QoS 0, 64-byte payload. Latency = receive time − send time written in the payload, ` +
      `both from the generator's monotonic clock. Metrics: p50 and p99 over the measured window, and the delivered rate.`,
    metrics: [
      { name: "p50 latency", unit: "µs", better: "lower" },
      { name: "p99 latency", unit: "µs", better: "lower" },
      { name: "delivered", unit: "msg/s", better: "higher" },
    ],
    run: async (ctx) => {
      const r = await load(ctx, {
        pubs: 1,
        subs: 1,
        qos: 0,
        payloadSize: 64,
        pubTopics: () => ["bench/lat"],
        subFilters: () => ["bench/lat"],
        fanout: 1,
        mode: { kind: "fixed", rate: ctx.cfg.latencyRate },
        subClean: true,
      });
      return outcome(r, [r.latency.p50, r.latency.p99, r.rate], false);
    },
  },
  {
    name: "idle-memory",
    title: (cfg) => `Memory per idle connection (${cfg.connections})`,
    description: (cfg) =>
      `Open ${cfg.connections} MQTT connections (CONNECT clean session, keep-alive 0, ${cfg.connectConcurrency} at a time), ` +
      `wait 1.5 s, read the broker's VmRSS. Metric: (RSS after − RSS before) / connections.`,
    metrics: [{ name: "RSS per connection", unit: "KB/conn", better: "lower" }],
    fds: (cfg) => cfg.connections,
    run: async (ctx) => {
      const { broker, cfg } = ctx;
      await sleep(500);
      const before = broker.sample().mem.rssKb;
      const idle = await openIdle(ctx.connector, "127.0.0.1", broker.port, cfg.connections, cfg.connectConcurrency, ctx.label);
      await sleep(1500);
      const after = broker.sample().mem;
      const dropped = idle.dropped();
      idle.closeAll();
      const notes = dropped > 0 ? [`broker closed ${dropped} idle connections`] : [];
      return {
        values: [(after.rssKb - before) / cfg.connections],
        brokerRssKb: after.rssKb,
        notes,
        detail: { rssBeforeKb: before, rssAfterKb: after.rssKb, hwmKb: after.hwmKb, openSeconds: idle.seconds, dropped },
      };
    },
  },
  {
    name: "connect-10k",
    title: (cfg) => `Time to open ${cfg.connections} connections`,
    description: (cfg) =>
      `Open ${cfg.connections} MQTT connections from one process, at most ${cfg.connectConcurrency} handshakes in flight; ` +
      `time from the first TCP connect to the last CONNACK.`,
    metrics: [{ name: "time", unit: "s", better: "lower" }],
    fds: (cfg) => cfg.connections,
    run: async (ctx) => {
      const { broker, cfg } = ctx;
      const cpu0 = broker.sample();
      const idle = await openIdle(ctx.connector, "127.0.0.1", broker.port, cfg.connections, cfg.connectConcurrency, ctx.label);
      const cpu1 = broker.sample();
      idle.closeAll();
      return {
        values: [idle.seconds],
        brokerCpuPct: ((cpu1.cpu - cpu0.cpu) / ((cpu1.at - cpu0.at) / 1000)) * 100,
        brokerRssKb: cpu1.mem.rssKb,
        notes: [],
        detail: { seconds: idle.seconds, connectionsPerSecond: cfg.connections / idle.seconds },
      };
    },
  },
  {
    name: "qos1-redis",
    title: () => "QoS 1 to persistent sessions, Redis persistence",
    description: (cfg) =>
      `As qos1-10x10, but the 10 subscribers connect with clean session = false (persistent sessions) and Colibri runs with ` +
      `\`--persistence redis --redis-url ${cfg.redisUrl} --redis-prefix bench:<random>:\`; keys under the prefix are deleted ` +
      `after each run. Colibri targets only.`,
    metrics: [msgRate],
    colibriOnly: true,
    prepare: async (cfg, label) => {
      const addr = parseRedisUrl(cfg.redisUrl);
      if (!(await redisPing(addr))) return `Redis not reachable at ${cfg.redisUrl}`;
      const prefix = `bench:${label}:`;
      const redisPid = ["127.0.0.1", "localhost"].includes(addr.host) ? listenerPid("any", addr.port) : undefined;
      return {
        launch: { redis: { url: cfg.redisUrl, prefix } },
        helperPids: redisPid === undefined ? [] : [redisPid],
        cleanup: async () => {
          const n = await deletePrefix(addr, prefix);
          return n > 0 ? undefined : "no keys were written under the Redis prefix";
        },
      };
    },
    run: async (ctx) => {
      const r = await load(ctx, qos1Shape(ctx.cfg, false));
      return outcome(r, [r.rate], true);
    },
  },
  {
    name: "slow-consumer",
    title: (cfg) => `QoS 1 slow consumer, ${slowMessages(cfg)} × 1 MB`,
    description: (cfg) =>
      `One subscriber holds \`bench/slow/<run>\` at QoS 1 and stops reading right after its SUBACK (socket paused); one ` +
      `publisher sends it ${slowMessages(cfg)} QoS 1 messages of 1 MB, 8 unacknowledged at a time (30 s at most). Then, ` +
      `after 2 s: the memory the broker says it holds (Colibri: \`$SYS/broker/memory/held\`, its accounting of message ` +
      `bytes and output buffers; Mosquitto: \`$SYS/broker/heap/current\`, its tracked heap; Aedes has no such figure) and ` +
      `its RSS; the subscriber's socket is then closed and RSS read again 2 s later. Brokers run with their defaults ` +
      `(Colibri: --max-queued-bytes 4 MiB per session; Mosquitto: the settings above, so max_queued_messages 100000 and ` +
      `no byte limit) plus a $SYS interval of 1 s.`,
    metrics: [
      { name: "held (broker's own figure)", unit: "MB", better: "lower" },
      { name: "RSS while stuck", unit: "MB", better: "lower" },
      { name: "RSS after it left", unit: "MB", better: "lower" },
    ],
    prepare: () => Promise.resolve({ launch: { sysInterval: 1 } }),
    run: async (ctx) => {
      const kind = ctx.broker.kind;
      const sysTopic = kind.colibri ? "$SYS/broker/memory/held" : kind.name === "mosquitto" ? "$SYS/broker/heap/current" : undefined;
      const r = await runSlowConsumer({
        host: "127.0.0.1",
        port: ctx.broker.port,
        label: ctx.label,
        messageSize: 1024 * 1024,
        messages: slowMessages(ctx.cfg),
        window: 8,
        budgetMs: 30_000,
        settleMs: 2000,
        sysTopic,
        sample: () => ctx.broker.sample(),
      });
      const mb = (bytes: number | undefined) => (bytes === undefined ? NaN : bytes / (1024 * 1024));
      return {
        values: [mb(r.accountedWhileSlow), r.rssWhileSlowKb / 1024, r.rssAfterKb / 1024],
        brokerRssKb: r.rssWhileSlowKb,
        notes: [...r.notes, `${r.acknowledged}/${r.published} acknowledged in ${r.publishSeconds.toFixed(1)} s`],
        detail: r,
      };
    },
  },
  ...CLUSTER_SCENARIOS,
];

export const SCENARIO_NAMES = SCENARIOS.map((s) => s.name);

/** Messages of the slow-consumer scenario: 500 MB (quick: 200 MB). */
function slowMessages(cfg: BenchConfig): number {
  return cfg.quick ? 200 : 500;
}

export function scenario(name: string): Scenario {
  const s = SCENARIOS.find((x) => x.name === name);
  if (s === undefined) throw new Error(`unknown scenario ${name}`);
  return s;
}
