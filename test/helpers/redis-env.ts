/**
 * The Redis a test runs on: the machine's Redis (127.0.0.1:6379), or a Redis Cluster or a
 * Sentinel set-up started for the test file (scripts/redis-topology.ts), shared by every
 * describe of that file and stopped after it.
 *
 *   await describeOnEachRedis("cluster: delivery", (redis) => {
 *     before(async () => { c = await startCluster(3, { redis: redis() }); });
 *     ...
 *   });
 *
 * registers the describe once per topology ("... [single]", "... [cluster]", "... [sentinel]").
 */
import { after, describe } from "node:test";
import { Redis } from "ioredis";
import { RedisTopology, type TopologyKind, type TopologyOptions } from "../../scripts/redis-topology.ts";
import { ensureBinary } from "./system.ts";
import { deletePrefix, keysMatching } from "./redis-server.ts";

export const REDIS_URL = "redis://127.0.0.1:6379";
export const KINDS: readonly TopologyKind[] = ["single", "cluster", "sentinel"];

export interface RedisEnv {
  kind: TopologyKind;
  /** Broker options selecting this Redis. */
  args(): string[];
  /** The same as a connection target (RedisPersistence.connect). */
  target(): ReturnType<RedisTopology["target"]>;
  /** Keys matching a pattern, on every master (SCAN: tests only). */
  scan(pattern: string): Promise<string[]>;
  deletePrefix(prefix: string): Promise<void>;
  /** The servers, when the file started them (undefined: the machine's Redis). */
  topology?: RedisTopology;
  /** kill -9 every data node (Redis unreachable), and start them again (with aof: whole). */
  down(): Promise<void>;
  up(): Promise<void>;
}

/** Options of the set-ups a file needs beyond the shared default (e.g. an append-only file). */
export interface EnvOptions {
  /** Servers with an append-only file (fsync always), so that a killed one comes back whole. */
  aof?: boolean;
  /** Replicas (cluster: per master; sentinel: of the master). */
  replicas?: number;
  /** A private server even for "single" (a test that kills it). */
  private?: boolean;
}

/** The machine's Redis: a short-lived client per use (nothing left open after a file). */
function machineRedis(): RedisEnv {
  return {
    kind: "single",
    args: () => ["--persistence", "redis", "--redis-url", REDIS_URL],
    target: () => ({ url: REDIS_URL }),
    async scan(pattern) {
      const r = new Redis(REDIS_URL);
      try {
        return await keysMatching(r, pattern);
      } finally {
        r.disconnect();
      }
    },
    deletePrefix: (prefix) => deletePrefix(REDIS_URL, prefix),
    down: () => Promise.reject(new Error("the machine's Redis is not stopped by tests: use { private: true }")),
    up: () => Promise.resolve(),
  };
}

function topologyEnv(t: RedisTopology): RedisEnv {
  return {
    kind: t.kind,
    args: () => t.brokerArgs(),
    target: () => t.target(),
    scan: (pattern) => t.scan(pattern),
    async deletePrefix(prefix) {
      await t.deletePrefix(prefix);
    },
    topology: t,
    async down() {
      await Promise.all(t.servers.map((s) => s.kill()));
    },
    async up() {
      for (const s of t.servers) await t.restart(s); // masters first (as created), then replicas
      await t.settled();
    },
  };
}

/** What scripts/redis-topology.ts runs: installed by the test setup, or here when missing. */
export async function ensureTools(): Promise<void> {
  await ensureBinary("redis-server", "redis-server");
  await ensureBinary("redis-cli", "redis-tools");
  await ensureBinary("openssl", "openssl");
}

const started = new Map<string, Promise<RedisTopology>>();
let hooked = false;

/**
 * Call at the top level of a test file that uses redisEnv() directly (describeOnEachRedis does
 * it): what the file started is stopped after it.
 */
export function stopRedisAfterFile(): void {
  if (hooked) return;
  hooked = true;
  after(async () => {
    for (const p of started.values()) await (await p.catch(() => undefined))?.stop();
    started.clear();
  });
}

/** This file's set-up of a kind (started on first use, stopped after the file). */
export async function redisEnv(kind: TopologyKind, opts: EnvOptions = {}): Promise<RedisEnv> {
  if (kind === "single" && !opts.private && !opts.aof) return machineRedis();
  await ensureTools();
  const key = JSON.stringify([kind, opts.aof ?? false, opts.replicas ?? null, opts.private ?? false]);
  let t = started.get(key);
  if (t === undefined) {
    const o: TopologyOptions = { kind, aof: opts.aof };
    if (opts.replicas !== undefined) o.replicas = opts.replicas;
    t = RedisTopology.start(o);
    started.set(key, t);
  }
  return topologyEnv(await t);
}

/**
 * A describe per topology; `redis()` is that topology's environment inside its hooks and tests.
 * Awaited at the top level of the test file: the set-ups start while the file loads (a Sentinel
 * set-up takes seconds, more than a hook may take under Bun).
 */
export async function describeOnEachRedis(name: string, fn: (redis: () => RedisEnv) => void, opts: EnvOptions = {}): Promise<void> {
  stopRedisAfterFile();
  const envs = await Promise.all(KINDS.map((kind) => redisEnv(kind, opts)));
  for (const env of envs) describe(`${name} [${env.kind}]`, () => fn(() => env));
}
