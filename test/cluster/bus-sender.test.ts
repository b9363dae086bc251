/**
 * The Redis bus writes inbox appends on a connection of its own (adapters/redis/bus.ts,
 * `sender`): a forward does not wait behind whatever occupies the persistence's connection. Here
 * that connection is held by a blocking command for 4 s; a forward sent meanwhile must arrive
 * long before it returns (on the shared connection it arrived only after).
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { RedisPersistence } from "../../adapters/redis/redis.ts";
import { RedisBus } from "../../adapters/redis/bus.ts";
import { message, Recorder, until } from "../conformance/bus.ts";
import { deletePrefix } from "../helpers/redis-server.ts";

const URL = "redis://127.0.0.1:6379";
const PREFIX = `colibri-test:bus-sender:${Math.random().toString(36).slice(2)}:`;
const quiet = { info() {}, warn() {}, error() {} };

describe("redis bus: inbox appends on their own connection", () => {
  const stores: RedisPersistence[] = [];
  const buses: RedisBus[] = [];
  after(async () => {
    for (const b of buses) await b.close().catch(() => {});
    for (const p of stores) await p.close().catch(() => {});
    await deletePrefix(URL, PREFIX);
  });

  async function node(id: string, h: Recorder): Promise<{ bus: RedisBus; store: RedisPersistence }> {
    const store = await RedisPersistence.connect({ url: URL, prefix: PREFIX, logger: quiet });
    stores.push(store);
    const bus = new RedisBus(store, { nodeId: `${id}#${Math.random().toString(36).slice(2, 6)}`, leaseMs: 3000, logger: quiet });
    buses.push(bus);
    await bus.start(h);
    return { bus, store };
  }

  it("a forward reaches the other node while the sender's persistence connection is blocked", { timeout: 20_000 }, async () => {
    const ha = new Recorder(), hb = new Recorder();
    const a = await node("a", ha);
    const b = await node("b", hb);
    await until(() => a.bus.isLive(b.bus.nodeId), "a to see b");
    // the persistence's connection is busy for 4 s (BLPOP on a list nobody pushes to)
    const blocked = a.store.client.blpop(`${PREFIX}nothing`, 4);
    const t0 = Date.now();
    const sent = a.bus.send(b.bus.nodeId, message("s/t", "through"), "pub", true);
    await until(() => hb.payloads().includes("through"), "the forward at b", 3000);
    await sent;
    const ms = Date.now() - t0;
    assert.ok(ms < 3000, `the forward took ${ms} ms, behind the blocked connection`);
    assert.equal(await blocked, null);
  });
});
