/**
 * What Colibri costs Redis, measured on servers started here (scripts/redis-topology.ts), for
 * docs/redis.md:
 *
 * 1. memory per session, per subscription, per queued message, per retained message and per
 *    route (INFO used_memory before and after writing many of them through the real backend,
 *    summed over the masters), on a single Redis and on a Redis Cluster;
 * 2. commands and bytes per message when messages go one at a time (no batching): QoS 1 from a
 *    publisher on one node to a persistent subscriber on another, on each topology (MONITOR
 *    counts the commands clients sent; INFO the commands executed, scripts' own included, and
 *    the bytes, replication excluded);
 * 3. the two places a queued message's body can live on Redis Cluster: once per session group
 *    (what Colibri does) or with each session's entry: memory, bytes and calls for a fan-out.
 *
 *   bun scripts/bench/redis-footprint.ts [--sessions N]
 */
import process from "node:process";
import mqtt from "mqtt";
import type { Redis } from "ioredis";
import { RedisTopology, type TopologyKind } from "../redis-topology.ts";
import { RedisPersistence } from "../../adapters/redis/redis.ts";
import { RedisBus } from "../../adapters/redis/bus.ts";
import type { OutgoingEntry, StoredMessage } from "../../src/persistence/persistence.ts";
import { RunningBroker, brokerKind, makeWorkDir } from "./brokers.ts";
import { clientCommands } from "./redis-monitor.ts";

const quiet = { info() {}, warn() {}, error() {} };
const argv = process.argv.slice(2);
const N = argv.includes("--sessions") ? Number(argv[argv.indexOf("--sessions") + 1]) : 2000;
const payload = new Uint8Array(64).fill(0x2e);

let seq = 0;
function message(topic: string, size = 64, retain = false): StoredMessage {
  return { id: `fp${process.pid}:${++seq}`, topic, payload: size === 64 ? payload : new Uint8Array(size).fill(0x2e), qos: 1, retain, receivedAt: Date.now() };
}
const entry = (m: StoredMessage): OutgoingEntry => ({ msg: m, qos: 1, retain: false, state: "queued" });

async function masters(t: RedisTopology): Promise<Redis[]> {
  return (t.kind === "cluster" ? await t.masters() : [await t.masterOf()]).map((s) => t.nodeClient(s));
}

async function stat(t: RedisTopology, section: string, field: string): Promise<number> {
  let sum = 0;
  for (const r of await masters(t)) {
    const info = await r.info(section);
    sum += Number(new RegExp(`^${field}${field.endsWith("=") ? "" : ":"}(\\d+)`, "m").exec(info)?.[1] ?? 0);
    r.disconnect();
  }
  return sum;
}

const used = (t: RedisTopology) => stat(t, "memory", "used_memory");

async function bytesAndCalls(t: RedisTopology): Promise<{ bytes: number; calls: number }> {
  const [i, o, r, c] = await Promise.all([
    stat(t, "stats", "total_net_input_bytes"), stat(t, "stats", "total_net_output_bytes"),
    stat(t, "stats", "total_net_repl_output_bytes"), stat(t, "stats", "total_commands_processed"),
  ]);
  return { bytes: i + o - r, calls: c };
}

/** Commands sent by clients while fn runs, without the clients' background ones (slot refresh, sentinels). */
async function monitored(t: RedisTopology, fn: () => Promise<void>): Promise<Record<string, number>> {
  const { byName } = await clientCommands(t, fn);
  for (const k of ["cluster", "client", "ping", "publish", "role"]) delete byName[k];
  return byName;
}

// --- 1. memory --------------------------------------------------------------------------------

async function memory(t: RedisTopology): Promise<Record<string, number>> {
  const prefix = `fp:${t.kind}:`;
  const p = await RedisPersistence.connect({ ...t.target(), prefix, logger: quiet });
  const bus = new RedisBus(p, { nodeId: "fp#0000", leaseMs: 3000, logger: quiet });
  const ids = Array.from({ length: N }, (_, i) => `client-${i.toString().padStart(6, "0")}`);
  const out: Record<string, number> = {};
  const step = async (name: string, count: number, fn: () => Promise<unknown>) => {
    const before = await used(t);
    await fn();
    out[name] = (await used(t) - before) / count;
  };
  const all = (f: (id: string, i: number) => Promise<unknown>) => Promise.all(ids.map(f));
  await step("session (record, owner, indexes)", N, () =>
    all(async (id) => {
      p.fence(id, await bus.claim(id, null));
      await p.putSession({ clientId: id, protocolVersion: 5, expiryInterval: 3600 });
    }));
  await step("subscription", N * 5, () =>
    all((id, i) => p.putSubscriptions(id, Array.from({ length: 5 }, (_, k) => ({ filter: `site/${i % 50}/dev/${i}/s${k}/#`, qos: 1 as const })))));
  await step("first queued message of a session (creates its queue)", N, () => all((id) => p.enqueue(id, [entry(message("site/x"))])));
  await step("queued message, 64 B, its own body", N, () => all((id) => p.enqueue(id, [entry(message("site/y"))])));
  const shared = message("site/all");
  await step("queued message, 64 B, body shared by all", N, () => all((id) => p.enqueue(id, [entry(shared)])));
  await step("retained message, 64 B, 5-level topic", N, () =>
    all((_id, i) => p.putRetained(message(`site/${i % 50}/dev/${i}/temp`, 64, true))));
  await step("route (one filter of one node)", N * 5, () =>
    bus.resetRoutes(ids.flatMap((_id, i) => Array.from({ length: 5 }, (_, k) => `site/${i % 50}/dev/${i}/s${k}/#`))));
  await p.close();
  await t.deletePrefix(prefix);
  return out;
}

// --- 2. one message at a time -----------------------------------------------------------------

async function oneAtATime(t: RedisTopology, messages: number): Promise<Record<string, number>> {
  const workDir = makeWorkDir();
  const kind = brokerKind(typeof (globalThis as { Bun?: unknown }).Bun !== "undefined" ? "colibri-bun" : "colibri-deno")!;
  const launch = { workDir, redis: { url: t.url, prefix: `fp1:${t.kind}:`, args: t.brokerArgs().slice(4) } };
  const nodes = [await RunningBroker.launch(kind, launch), await RunningBroker.launch(kind, launch)];
  try {
    await new Promise((r) => setTimeout(r, 500));
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${nodes[1].port}`, { clientId: "fp-sub", clean: false, reconnectPeriod: 0 });
    await sub.subscribeAsync("fp/t", { qos: 1 });
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${nodes[0].port}`, { clientId: "fp-pub", clean: true, reconnectPeriod: 0 });
    let got = 0;
    let next: (() => void) | undefined;
    sub.on("message", () => {
      got++;
      next?.();
    });
    const one = async () => {
      const arrived = new Promise<void>((r) => (next = r));
      await pub.publishAsync("fp/t", Buffer.from(payload), { qos: 1 });
      await arrived;
      await new Promise((r) => setTimeout(r, 30)); // the subscriber's PUBACK is handled too
    };
    for (let i = 0; i < 20; i++) await one(); // warm: scripts loaded, connections up
    const a = await bytesAndCalls(t);
    for (let i = 0; i < messages; i++) await one();
    const b = await bytesAndCalls(t);
    const sent = await monitored(t, async () => {
      for (let i = 0; i < messages; i++) await one();
    });
    await sub.endAsync();
    await pub.endAsync();
    const total = Object.values(sent).reduce((x, y) => x + y, 0);
    return {
      "commands sent": total / messages,
      ...Object.fromEntries(Object.entries(sent).map(([k, v]) => [`  ${k}`, v / messages])),
      "commands executed (scripts' own included)": (b.calls - a.calls) / messages,
      "bytes": (b.bytes - a.bytes) / messages,
      received: got,
    };
  } finally {
    for (const n of nodes) await n.stop();
    await t.deletePrefix(`fp1:${t.kind}:`);
  }
}

// --- 3. where bodies live -----------------------------------------------------------------------

/** One message of `size` bytes queued for `fanout` persistent sessions in one tick (one publish). */
async function fanOut(t: RedisTopology, layout: "group" | "session", fanout: number, size: number): Promise<Record<string, number>> {
  const prefix = `fp3:${layout}:`;
  const p = await RedisPersistence.connect({ ...t.target(), prefix, logger: quiet, bodies: layout });
  try {
    const ids = Array.from({ length: fanout }, (_, i) => `fan-${i}`);
    // every session has a queue already: what is measured is the message, not the first entry
    await Promise.all(ids.map((id) => p.enqueue(id, [entry(message("fan/first", 8))])));
    const m = message("fan/out", size);
    const mem0 = await used(t);
    const scripts0 = await stat(t, "commandstats", "cmdstat_evalsha:calls=");
    const io0 = await bytesAndCalls(t);
    await Promise.all(ids.map((id) => p.enqueue(id, [entry(m)])));
    const io1 = await bytesAndCalls(t);
    const scripts1 = await stat(t, "commandstats", "cmdstat_evalsha:calls=");
    return {
      "memory, KiB": ((await used(t)) - mem0) / 1024,
      "bytes sent and received, KiB": (io1.bytes - io0.bytes) / 1024,
      "script calls": scripts1 - scripts0,
    };
  } finally {
    await p.close();
    await t.deletePrefix(prefix);
  }
}

function table(title: string, rows: Record<string, Record<string, number>>): string {
  const cols = Object.keys(rows);
  const names = [...new Set(cols.flatMap((c) => Object.keys(rows[c])))];
  const fmt = (v: number | undefined) => (v === undefined ? "" : v >= 100 ? Math.round(v).toString() : v.toFixed(2));
  return [`### ${title}`, "", `| | ${cols.join(" | ")} |`, `|---|${cols.map(() => "---:").join("|")}|`,
    ...names.map((n) => `| ${n} | ${cols.map((c) => fmt(rows[c][n])).join(" | ")} |`), ""].join("\n");
}

const kinds: TopologyKind[] = ["single", "cluster", "sentinel"];
const started = new Map<TopologyKind, RedisTopology>();
try {
  for (const k of kinds) started.set(k, await RedisTopology.start({ kind: k, ...(k === "sentinel" ? { replicas: 1 } : {}) }));
  const mem: Record<string, Record<string, number>> = {};
  for (const k of ["single", "cluster"] as const) mem[k] = await memory(started.get(k)!);
  console.log(table(`Memory in Redis, bytes per item (${N} sessions)`, mem));
  const one: Record<string, Record<string, number>> = {};
  for (const k of kinds) one[k] = await oneAtATime(started.get(k)!, 200);
  console.log(table("QoS 1 across two nodes to a persistent session, one message at a time, per message", one));
  for (const fanout of [10, 1000, 10000]) {
    const med = async (t: RedisTopology, layout: "group" | "session") => {
      const runs = [await fanOut(t, layout, fanout, 1024), await fanOut(t, layout, fanout, 1024), await fanOut(t, layout, fanout, 1024)];
      return Object.fromEntries(Object.keys(runs[0]).map((k) => [k, runs.map((r) => r[k]).sort((a, b) => a - b)[1]]));
    };
    const rows: Record<string, Record<string, number>> = {
      "single Redis (one group)": await med(started.get("single")!, "group"),
      "Cluster, body per group": await med(started.get("cluster")!, "group"),
      "Cluster, body per session": await med(started.get("cluster")!, "session"),
    };
    console.log(table(`One 1 KiB message queued for ${fanout} persistent sessions (one publish)`, rows));
  }
} finally {
  for (const t of started.values()) await t.stop();
}
process.exit(0);
