/**
 * Cluster scenarios: two (or three) nodes of one broker on a private Redis started for the
 * run. Each run measures the same load with subscribers on the publishers' node ("one node")
 * and on another node ("cross-node"), interleaved A B A B on the same processes, and reports
 * both and their ratio, plus the Redis commands and bytes per cross-node message (from the
 * private Redis's INFO, so nothing else is counted). The failover scenario measures takeover
 * latency across nodes and how long the wills of a node killed with -9 take to arrive.
 */
import { Redis } from "ioredis";
import mqtt from "mqtt";
import { type BenchConfig } from "./config.ts";
import { RunningBroker, ROOT } from "./brokers.ts";
import { start, stop, type Spawned } from "./children.ts";
import { freePort, sleep, waitForPort } from "./ports.ts";
import { closed, load, type LoadShape, outcome, qos1Shape, type Outcome, type RunContext, type Scenario } from "./scenarios.ts";
import type { LoadResult } from "./load.ts";

interface PrivateRedis {
  url: string;
  proc: Spawned;
}

const redisByLabel = new Map<string, PrivateRedis>();

/** A redis-server of the run's own, without persistence, on a free port. */
async function startRedis(label: string): Promise<PrivateRedis | string> {
  const port = await freePort();
  const proc = start("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], ROOT);
  try {
    await waitForPort(port, 5000, () => proc.exit === null);
  } catch (e) {
    await stop(proc);
    return `redis-server did not start: ${(e as Error).message}`;
  }
  const r = { url: `redis://127.0.0.1:${port}`, proc };
  redisByLabel.set(label, r);
  return r;
}

async function prepareCluster(_cfg: BenchConfig, label: string) {
  const r = await startRedis(label);
  if (typeof r === "string") return r;
  return {
    launch: { redis: { url: r.url, prefix: "bench:" } },
    helperPids: [r.proc.pid],
    cleanup: async () => {
      redisByLabel.delete(label);
      await stop(r.proc);
      return undefined;
    },
  };
}

interface RedisCounters {
  calls: number;
  bytes: number;
}

/** Commands executed and bytes in + out, from INFO (the private Redis: nothing else runs on it). */
async function counters(url: string): Promise<RedisCounters> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
  try {
    await r.connect();
    const stats = await r.info("stats");
    const num = (k: string) => Number(new RegExp(`^${k}:(\\d+)`, "m").exec(stats)?.[1] ?? 0);
    return { calls: num("total_commands_processed"), bytes: num("total_net_input_bytes") + num("total_net_output_bytes") };
  } finally {
    r.disconnect();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

interface Phases {
  one: LoadResult[];
  cross: LoadResult[];
  /** Redis commands and bytes over the cross-node phases, and the messages delivered in them. */
  calls: number;
  bytes: number;
  msgs: number;
}

/** Both placements of the same load, A B A B, on one node and a second one started here. */
async function crossPhases(ctx: RunContext, shape: LoadShape): Promise<Phases> {
  const second = await RunningBroker.launch(ctx.broker.kind, ctx.launch);
  try {
    await sleep(500); // the second node's routes and lease are known everywhere
    const ph: Phases = { one: [], cross: [], calls: 0, bytes: 0, msgs: 0 };
    for (let i = 0; i < 4; i++) {
      const isCross = i % 2 === 1;
      const run = { ...ctx, label: `${ctx.label}${i}` };
      const before = isCross ? await counters(ctx.launch.redis!.url) : undefined;
      const r = await load(run, shape, isCross ? second.port : undefined);
      if (before) {
        const after = await counters(ctx.launch.redis!.url);
        ph.calls += after.calls - before.calls;
        ph.bytes += after.bytes - before.bytes;
        ph.msgs += r.delivered;
      }
      (isCross ? ph.cross : ph.one).push(r);
    }
    return ph;
  } finally {
    await second.stop();
  }
}

async function crossRun(ctx: RunContext, shape: LoadShape, strict: boolean): Promise<Outcome> {
  const ph = await crossPhases(ctx, shape);
  const one = median(ph.one.map((r) => r.rate)), cross = median(ph.cross.map((r) => r.rate));
  return outcome(ph.cross.at(-1)!, [one, cross, cross / one, ph.calls / ph.msgs, ph.bytes / ph.msgs], strict);
}

/** Latency at a fixed rate, one node and across nodes: what the hop through Redis adds. */
async function crossLatencyRun(ctx: RunContext): Promise<Outcome> {
  const ph = await crossPhases(ctx, {
    pubs: 1, subs: 1, qos: 0, payloadSize: 64, pubTopics: () => ["bench/lat"], subFilters: () => ["bench/lat"],
    fanout: 1, mode: { kind: "fixed", rate: ctx.cfg.latencyRate }, subClean: true,
  });
  const q = (list: LoadResult[], k: "p50" | "p99") => median(list.map((r) => r.latency[k]));
  return outcome(ph.cross.at(-1)!, [q(ph.one, "p50"), q(ph.cross, "p50"), q(ph.one, "p99"), q(ph.cross, "p99")], false);
}

const crossMetrics = [
  { name: "one node", unit: "msg/s" as const, better: "higher" as const },
  { name: "cross-node", unit: "msg/s" as const, better: "higher" as const },
  { name: "cross / one node", unit: "ratio" as const, better: "higher" as const },
  { name: "Redis commands per message", unit: "cmd/msg" as const, better: "lower" as const },
  { name: "Redis bytes per message", unit: "B/msg" as const, better: "lower" as const },
];

/** Connect (MQTT.js, 3.1.1), resolve once CONNACK came; the time it took. */
async function timedConnect(port: number, opts: mqtt.IClientOptions): Promise<{ c: mqtt.MqttClient; ms: number }> {
  const t0 = performance.now();
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, connectTimeout: 30_000, ...opts });
  return { c, ms: performance.now() - t0 };
}

async function failoverRun(ctx: RunContext): Promise<Outcome> {
  const nodes = [ctx.broker, await RunningBroker.launch(ctx.broker.kind, ctx.launch), await RunningBroker.launch(ctx.broker.kind, ctx.launch)];
  const clients: mqtt.MqttClient[] = [];
  try {
    await sleep(500);
    // takeover: one persistent client id moving back and forth between two nodes
    const takeover: number[] = [];
    const id = `${ctx.label}-mover`;
    let prev: mqtt.MqttClient | undefined;
    for (let i = 0; i < 20; i++) {
      const { c, ms } = await timedConnect(nodes[i % 2].port, { clientId: id, clean: false });
      if (i === 0) await c.subscribeAsync("bench/mover", { qos: 1 });
      else takeover.push(ms);
      prev?.end(true);
      prev = c;
    }
    prev?.end(true);
    // wills of a node killed with -9: 20 clients with wills on node 3, a watcher on node 1
    const watcher = (await timedConnect(nodes[0].port, { clientId: `${ctx.label}-watch`, clean: true })).c;
    clients.push(watcher);
    await watcher.subscribeAsync("bench/will/#", { qos: 1 });
    for (let i = 0; i < 20; i++) {
      const { c } = await timedConnect(nodes[2].port, {
        clientId: `${ctx.label}-w${i}`, clean: true, keepalive: 60,
        will: { topic: `bench/will/${i}`, payload: Buffer.from("gone"), qos: 1, retain: false },
      });
      c.on("error", () => {});
      clients.push(c);
    }
    await sleep(300);
    const arrived: number[] = [];
    const limitMs = 30_000;
    const t0 = performance.now();
    const all = new Promise<void>((resolve) => {
      watcher.on("message", () => {
        arrived.push(performance.now() - t0);
        if (arrived.length === 20) resolve();
      });
    });
    process.kill(nodes[2].pid, "SIGKILL");
    await Promise.race([all, sleep(limitMs)]);
    const notes = arrived.length < 20 ? [`${20 - arrived.length} of 20 wills not published within ${limitMs / 1000} s`] : [];
    const wills = arrived.length === 20 ? arrived : [...arrived, ...Array(20 - arrived.length).fill(Infinity)];
    return {
      values: [median(takeover), Math.max(...takeover), median(wills) / 1000, Math.max(...wills) / 1000],
      notes,
      detail: { takeover, wills: arrived },
    } as Outcome;
  } finally {
    for (const c of clients) c.end(true);
    await Promise.all(nodes.slice(1).map((n) => n.stop()));
  }
}

export const CLUSTER_SCENARIOS: readonly Scenario[] = [
  {
    name: "cross-qos0",
    title: () => "Cluster: QoS 0 fan-in across nodes, 10 pub → 1 sub",
    description: (cfg) =>
      `fanin-qos0's load (closed loop, ${cfg.window ?? 128} per publisher) on a two-node cluster over a private Redis: publishers on ` +
      `node 1, the subscriber on node 1 ("one node") or node 2 ("cross-node"), A B A B in one run on the same processes. ` +
      `Redis commands and bytes per message are the private Redis's INFO counters over the cross-node phases.`,
    metrics: crossMetrics,
    clusterOnly: true,
    prepare: prepareCluster,
    run: (ctx) =>
      crossRun(ctx, {
        pubs: 10, subs: 1, qos: 0, payloadSize: 64, pubTopics: (p) => [`bench/in/${p}`], subFilters: () => ["bench/in/+"],
        fanout: 1, mode: closed(128, ctx.cfg), subClean: true,
      }, false),
  },
  {
    name: "cross-qos1",
    title: () => "Cluster: QoS 1 across nodes, 10 pub → 10 sub",
    description: () =>
      `qos1-10x10's load on a two-node cluster over a private Redis, publishers on node 1 and subscribers on node 1 or node 2, ` +
      `A B A B in one run. Any loss or duplicate is a failure.`,
    metrics: crossMetrics,
    clusterOnly: true,
    prepare: prepareCluster,
    run: (ctx) => crossRun(ctx, qos1Shape(ctx.cfg, true), true),
  },
  {
    name: "cross-latency",
    title: (cfg) => `Cluster: latency at ${+(cfg.latencyRate / 1000).toFixed(1)}k msg/s across nodes, QoS 0, 1 → 1`,
    description: (cfg) =>
      `latency-20k's load (one publisher at ${cfg.latencyRate} msg/s, fixed rate) on a two-node cluster over a private Redis: ` +
      `the subscriber on the publisher's node or on the other one, A B A B in one run. What a cross-node message adds ` +
      `when the machine is not saturated (node -> Redis -> node).`,
    metrics: [
      { name: "p50 one node", unit: "µs", better: "lower" },
      { name: "p50 cross-node", unit: "µs", better: "lower" },
      { name: "p99 one node", unit: "µs", better: "lower" },
      { name: "p99 cross-node", unit: "µs", better: "lower" },
    ],
    clusterOnly: true,
    prepare: prepareCluster,
    run: (ctx) => crossLatencyRun(ctx),
  },
  {
    name: "failover",
    title: () => "Cluster: takeover across nodes; wills of a node killed with -9",
    description: () =>
      `Three nodes on a private Redis. Takeover: one persistent client id connects alternately to node 1 and node 2, 19 times; ` +
      `time from TCP connect to CONNACK. Wills: 20 clients with wills on node 3, a subscriber on node 1; node 3 is killed with ` +
      `SIGKILL; time until each will arrives (at most 30 s waited). Colibri runs with its default 3 s node lease.`,
    metrics: [
      { name: "takeover median", unit: "ms", better: "lower" },
      { name: "takeover max", unit: "ms", better: "lower" },
      { name: "wills median", unit: "s", better: "lower" },
      { name: "wills max", unit: "s", better: "lower" },
    ],
    clusterOnly: true,
    prepare: prepareCluster,
    run: (ctx) => failoverRun(ctx),
  },
];
