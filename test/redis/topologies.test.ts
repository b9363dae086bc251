/**
 * The persistence and cluster-bus conformance suites on a Redis Cluster (3 masters) and on a
 * Sentinel set-up (a master, a replica, three sentinels), both started by this file; the same
 * suites run on a single Redis in test/persistence.redis.test.ts and test/bus.redis.test.ts.
 */
import { RedisPersistence } from "../../adapters/redis/redis.ts";
import { RedisBus } from "../../adapters/redis/bus.ts";
import { GROUPS, Keys } from "../../adapters/redis/keys.ts";
import type { Persistence } from "../../src/persistence/persistence.ts";
import { runPersistenceSuite } from "../conformance/persistence.ts";
import { type BusNode, runBusSuite } from "../conformance/bus.ts";
import { redisEnv, type RedisEnv, stopRedisAfterFile } from "../helpers/redis-env.ts";

const quiet = { info() {}, warn() {}, error() {} };
const RUN = `colibri-test:topo:${Math.random().toString(36).slice(2, 8)}:`;

stopRedisAfterFile();
const envs: RedisEnv[] = await Promise.all([redisEnv("cluster"), redisEnv("sentinel")]);

for (const env of envs) {
  const prefixes = new Map<Persistence, string>();
  let n = 0;
  const open = async (prefix: string) => {
    const p = await RedisPersistence.connect({ ...env.target(), prefix, logger: quiet });
    prefixes.set(p, prefix);
    return p;
  };
  const groups = env.kind === "cluster" ? GROUPS : 1;
  runPersistenceSuite(`redis ${env.kind}`, () => open(`${RUN}${env.kind}:${++n}:`), {
    peer: (p) => open(prefixes.get(p)!),
    countKeys: async (p) => (await env.scan(`${prefixes.get(p)}*`)).length,
    countBodies: async (p) => (await env.scan(`${prefixes.get(p)}{g:*}:m:*`)).length,
    bodyCopies: (ids) => new Set(ids.map((id) => new Keys("", groups).group(id).index)).size,
    cleanup: () => env.deletePrefix(RUN + env.kind),
  });

  const busPrefix = `${RUN}${env.kind}:bus:`;
  const stores: RedisPersistence[] = [];
  runBusSuite(`redis ${env.kind}`, {
    leaseMs: 1000,
    async make(id: string): Promise<BusNode> {
      const persistence = await RedisPersistence.connect({ ...env.target(), prefix: busPrefix, logger: quiet });
      stores.push(persistence);
      const bus = new RedisBus(persistence, { nodeId: `${id}#${Math.random().toString(36).slice(2, 6)}`, leaseMs: 1000, logger: quiet });
      return { bus, persistence };
    },
    async close() {
      for (const p of stores) await p.close();
      await env.deletePrefix(busPrefix);
    },
  });
}
