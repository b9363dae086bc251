/**
 * Colibri on each Redis topology in one run: a single Redis, a Redis Cluster (3 masters) and a
 * Sentinel set-up (a master, a replica, three sentinels), all started for the run on this
 * machine (scripts/redis-topology.ts) without persistence to disk. Each scenario runs the same
 * load on each topology, interleaved (single, cluster, sentinel, then again), on brokers started
 * for that topology, and reports each throughput and its ratio to the single Redis; "topo-cost"
 * reports the Redis commands and bytes per message on each (INFO of every master, before and
 * after the measured load: sentinels' own pings to the master are counted too, a few per second).
 */
import { Redis } from "ioredis";
import { RedisTopology, type TopologyKind } from "../redis-topology.ts";
import { type BenchConfig } from "./config.ts";
import { RunningBroker } from "./brokers.ts";
import { type LoadShape, load, type MetricSpec, type Outcome, outcome, qos1Shape, type RunContext, type Scenario } from "./scenarios.ts";
import { clientCommands, mastersOf } from "./redis-monitor.ts";
import { sleep } from "./ports.ts";
import type { LoadResult } from "./load.ts";

const KINDS: readonly TopologyKind[] = ["single", "cluster", "sentinel"];
const ROUNDS = 2;

/** The topologies of one run (by its label), started in prepare() and stopped in cleanup(). */
const running = new Map<string, Map<TopologyKind, RedisTopology>>();

async function prepareTopologies(_cfg: BenchConfig, label: string) {
  const set = new Map<TopologyKind, RedisTopology>();
  try {
    for (const kind of KINDS) set.set(kind, await RedisTopology.start({ kind, ...(kind === "sentinel" ? { replicas: 1 } : {}) }));
  } catch (e) {
    for (const t of set.values()) await t.stop();
    return `Redis topologies did not start: ${(e as Error).message}`;
  }
  running.set(label, set);
  const single = set.get("single")!;
  return {
    launch: { redis: { url: single.url, prefix: "bench:single:" } },
    helperPids: [...set.values()].flatMap((t) => [...t.servers, ...t.sentinels].map((s) => s.proc?.pid ?? 0)).filter((p) => p > 0),
    cleanup: async () => {
      running.delete(label);
      for (const t of set.values()) await t.stop();
      return undefined;
    },
  };
}

/** Commands executed (inside scripts too) and client bytes in + out, summed over the masters. */
async function counters(t: RedisTopology): Promise<{ calls: number; bytes: number }> {
  let calls = 0, bytes = 0;
  for (const m of await mastersOf(t)) {
    const r: Redis = t.nodeClient(m);
    try {
      const stats = await r.info("stats");
      const num = (k: string) => Number(new RegExp(`^${k}:(\\d+)`, "m").exec(stats)?.[1] ?? 0);
      calls += num("total_commands_processed");
      // the output counter includes what the master sends its replicas: not a client's traffic
      bytes += num("total_net_input_bytes") + num("total_net_output_bytes") - num("total_net_repl_output_bytes");
    } finally {
      r.disconnect();
    }
  }
  return { calls, bytes };
}

interface PerTopology {
  rates: Map<TopologyKind, number[]>;
  /** Over the rounds without MONITOR: commands executed (scripts' own included), bytes. */
  calls: Map<TopologyKind, number>;
  bytes: Map<TopologyKind, number>;
  msgs: Map<TopologyKind, number>;
  /** With `monitor`: one more load per topology, its client commands and messages. */
  requests: Map<TopologyKind, { client: number; msgs: number; byName: Record<string, number> }>;
  last?: LoadResult;
}

/**
 * The load on each topology, ROUNDS times, interleaved. `nodes` brokers per topology (the
 * run's own broker serves the single Redis); with 2, subscribers are on the second node.
 */
async function eachTopology(ctx: RunContext, shape: LoadShape, nodes: 1 | 2, monitor = false): Promise<PerTopology> {
  const set = running.get(ctx.label)!;
  const out: PerTopology = { rates: new Map(), calls: new Map(), bytes: new Map(), msgs: new Map(), requests: new Map() };
  const started: RunningBroker[] = [];
  try {
    const brokers = new Map<TopologyKind, RunningBroker[]>();
    for (const [kind, t] of set) {
      const args = t.brokerArgs().slice(4); // after --persistence redis --redis-url <url>
      const launch = { ...ctx.launch, redis: { url: t.url, prefix: `bench:${kind}:`, args } };
      const list = kind === "single" ? [ctx.broker] : [];
      while (list.length < nodes) {
        const b = await RunningBroker.launch(ctx.broker.kind, launch);
        started.push(b);
        list.push(b);
      }
      brokers.set(kind, list);
    }
    await sleep(500); // every node's lease and routes are known
    for (let round = 0; round < ROUNDS; round++) {
      for (const kind of KINDS) {
        const list = brokers.get(kind)!;
        const before = await counters(set.get(kind)!);
        const r = await load({ ...ctx, broker: list[0], label: `${ctx.label}${kind}${round}` }, shape, nodes === 2 ? list[1].port : undefined);
        const after = await counters(set.get(kind)!);
        const add = (m: Map<TopologyKind, number>, v: number) => m.set(kind, (m.get(kind) ?? 0) + v);
        add(out.calls, after.calls - before.calls);
        add(out.bytes, after.bytes - before.bytes);
        add(out.msgs, r.delivered);
        out.rates.set(kind, [...(out.rates.get(kind) ?? []), r.rate]);
        out.last = r;
      }
    }
    if (monitor) {
      for (const kind of KINDS) {
        const list = brokers.get(kind)!;
        let delivered = 0;
        const counted = await clientCommands(set.get(kind)!, async () => {
          const r = await load({ ...ctx, broker: list[0], label: `${ctx.label}${kind}m` }, shape, nodes === 2 ? list[1].port : undefined);
          delivered = r.delivered;
        });
        out.requests.set(kind, { ...counted, msgs: delivered });
      }
    }
    return out;
  } finally {
    for (const b of started) await b.stop();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const rateMetrics: MetricSpec[] = [
  { name: "single Redis", unit: "msg/s", better: "higher" },
  { name: "Redis Cluster", unit: "msg/s", better: "higher" },
  { name: "Sentinel", unit: "msg/s", better: "higher" },
  { name: "Cluster / single", unit: "ratio", better: "higher" },
  { name: "Sentinel / single", unit: "ratio", better: "higher" },
];

function rates(p: PerTopology): number[] {
  const [s, c, t] = KINDS.map((k) => median(p.rates.get(k)!));
  return [s, c, t, c / s, t / s];
}

function detail(p: PerTopology) {
  return Object.fromEntries(KINDS.map((k) => {
    const q = p.requests.get(k);
    return [k, {
      rates: p.rates.get(k),
      executedPerMessage: p.calls.get(k)! / p.msgs.get(k)!,
      bytesPerMessage: p.bytes.get(k)! / p.msgs.get(k)!,
      ...(q ? { requestsPerMessage: q.client / q.msgs, requestsByName: Object.fromEntries(Object.entries(q.byName).map(([n, c]) => [n, c / q.msgs])) } : {}),
    }];
  }));
}

function described(what: string): (cfg: BenchConfig) => string {
  return () =>
    `${what} Each topology is started for the run on this machine (scripts/redis-topology.ts: a single Redis; a Redis Cluster ` +
    `of 3 masters; a master with one replica and three sentinels), Colibri on each with its default options; ` +
    `single, cluster, sentinel, ${ROUNDS} rounds interleaved in one run, median per topology. Any loss or duplicate is a failure.`;
}

/** qos1-redis's load on each topology: throughputs and ratios to the single Redis. */
function rateScenario(name: string, title: string, what: string, nodes: 1 | 2): Scenario {
  return {
    name,
    title: () => `Redis topologies: ${title}`,
    description: described(what),
    metrics: rateMetrics,
    colibriOnly: true,
    prepare: prepareTopologies,
    run: async (ctx): Promise<Outcome> => {
      const p = await eachTopology(ctx, qos1Shape(ctx.cfg, false), nodes);
      return { ...outcome(p.last!, rates(p), true), detail: detail(p) };
    },
  };
}

export const TOPOLOGY_SCENARIOS: readonly Scenario[] = [
  rateScenario("topo-qos1", "QoS 1 to persistent sessions, 10 pub → 10 sub",
    "qos1-redis's load (10 publishers, 10 persistent subscribers, topic per pair) on one node.", 1),
  rateScenario("topo-cross", "QoS 1 across two nodes to persistent sessions",
    "qos1-redis's load on a two-node cluster: publishers on node 1, the persistent subscribers on node 2 (every message " +
      "goes through node 2's inbox, then into its subscriber's queue).", 2),
  {
    name: "topo-cost",
    title: () => "Redis topologies: Redis work and bytes per message, QoS 1 across nodes to persistent sessions",
    description: described(
      "topo-cross's load. Per message delivered: the commands clients sent (counted with MONITOR on every master during one more " +
        "load per topology; not counted: commands run inside scripts), the commands Redis executed, scripts' own included (INFO " +
        "total_commands_processed), and the bytes clients and Redis exchanged (INFO total_net_input_bytes + " +
        "total_net_output_bytes − total_net_repl_output_bytes), over the loads without MONITOR.",
    ),
    metrics: [
      ...KINDS.map((k) => ({ name: `${k}: commands sent`, unit: "cmd/msg" as const, better: "lower" as const })),
      ...KINDS.map((k) => ({ name: `${k}: commands executed`, unit: "cmd/msg" as const, better: "lower" as const })),
      ...KINDS.map((k) => ({ name: `${k}: bytes`, unit: "B/msg" as const, better: "lower" as const })),
    ],
    colibriOnly: true,
    prepare: prepareTopologies,
    run: async (ctx): Promise<Outcome> => {
      const p = await eachTopology(ctx, qos1Shape(ctx.cfg, false), 2, true);
      const per = (m: Map<TopologyKind, number>) => KINDS.map((k) => m.get(k)! / p.msgs.get(k)!);
      const sent = KINDS.map((k) => p.requests.get(k)!.client / p.requests.get(k)!.msgs);
      return { ...outcome(p.last!, [...sent, ...per(p.calls), ...per(p.bytes)], true), detail: detail(p) };
    },
  },
];
