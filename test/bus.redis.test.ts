/**
 * The Redis cluster bus against the machine's Redis: the bus conformance suite, every node of
 * one run under its own key prefix, every key deleted at the end.
 */
import { RedisPersistence } from "../adapters/redis/redis.ts";
import { RedisBus } from "../adapters/redis/bus.ts";
import { type BusNode, runBusSuite } from "./conformance/bus.ts";
import { deletePrefix } from "./helpers/redis-server.ts";

const URL = "redis://127.0.0.1:6379";
const PREFIX = `colibri-test:bus:${Math.random().toString(36).slice(2)}:`;
const quiet = { info() {}, warn() {}, error() {} };
const LEASE = 1000;
const stores: RedisPersistence[] = [];

runBusSuite("redis", {
  leaseMs: LEASE,
  async make(id: string): Promise<BusNode> {
    const persistence = await RedisPersistence.connect({ url: URL, prefix: PREFIX, logger: quiet });
    stores.push(persistence);
    const bus = new RedisBus(persistence, { nodeId: `${id}#${Math.random().toString(36).slice(2, 6)}`, url: URL, prefix: PREFIX, leaseMs: LEASE, logger: quiet });
    return { bus, persistence };
  },
  async close() {
    for (const p of stores) await p.close();
    await deletePrefix(URL, PREFIX);
  },
});
