/**
 * Redis backend: the conformance suite against the machine's Redis (127.0.0.1:6379), each
 * store under its own key prefix, every key of the run deleted at the end; then start-up and
 * outage behaviour against a private redis-server process.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import type { Persistence } from "../src/persistence/persistence.ts";
import { RedisPersistence } from "../adapters/redis/redis.ts";
import { Keys } from "../adapters/redis/keys.ts";
import { runPersistenceSuite } from "./conformance/persistence.ts";
import { entry, msg, session, timed } from "./conformance/fixtures.ts";
import { freePort, RedisServer, silentServer } from "./helpers/redis-server.ts";

const URL = "redis://127.0.0.1:6379";
const RUN = `colibri-test:${crypto.randomUUID().slice(0, 8)}:`;
const prefixes = new Map<Persistence, string>();
let stores = 0;
const quiet = { info() {}, warn() {}, error() {} };

const admin = new Redis(URL, { lazyConnect: true });
async function countKeys(pattern: string): Promise<number> {
  if (admin.status === "wait") await admin.connect();
  let n = 0;
  let cursor = "0";
  do {
    const [next, keys] = await admin.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    cursor = next;
    n += keys.length;
  } while (cursor !== "0");
  return n;
}

function collect(lines: string[]) {
  const at = (lv: string) => (m: string, f?: Record<string, unknown>) => lines.push(`${lv} ${m} ${JSON.stringify(f)}`);
  return { info: at("info"), warn: at("warn"), error: at("error") };
}

async function open(prefix: string, bodies?: "session"): Promise<RedisPersistence> {
  const p = await RedisPersistence.connect({ url: URL, prefix, logger: quiet, bodies });
  prefixes.set(p, prefix);
  return p;
}

runPersistenceSuite("redis", () => open(`${RUN}${++stores}:`), {
  peer: (p) => open(prefixes.get(p)!),
  countKeys: (p) => countKeys(`${prefixes.get(p)}*`),
  countBodies: (p) => countKeys(`${prefixes.get(p)}{g:*}:m:*`),
  cleanup: () => deleteKeys(`${RUN}*`),
});

// the other body layout (each session's entry with its own copy, nothing shared), measured in
// docs/redis.md: the same behaviour, and nothing left behind
runPersistenceSuite("redis, a body per session", () => open(`${RUN}${++stores}:`, "session"), {
  peer: (p) => open(prefixes.get(p)!, "session"),
  countKeys: (p) => countKeys(`${prefixes.get(p)}*`),
});

/** Test cleanup only (SCAN is fine here, never in the backend). */
async function deleteKeys(pattern: string): Promise<void> {
  if (admin.status === "wait") await admin.connect();
  let cursor = "0";
  do {
    const [next, keys] = await admin.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) await admin.del(...keys);
  } while (cursor !== "0");
}

describe("redis persistence: storage cost", () => {
  it("a retained message costs a bounded number of keys however deep its topic", async () => {
    const prefix = `${RUN}deep:`;
    const p = await open(prefix);
    try {
      // 200 levels (the --max-topic-levels default) of 300 bytes each: indexing every level
      // wrote 201 sets holding the 60 KB topic each; now the first 8 levels and the depth
      const topic = Array.from({ length: 200 }, (_, i) => `${i}`.padStart(300, "l")).join("/");
      await p.putRetained(msg({ topic, retain: true }));
      assert.equal(await countKeys(`${prefix}{r}*`), 1 + 1 + 8 + 1, "ret hash + its bytes counter + 8 level sets + 1 depth set");
      assert.deepStrictEqual((await p.matchRetained("#")).map((m) => m.topic === topic), [true]);
      await p.deleteRetained(topic);
      assert.equal(await countKeys(`${prefix}{r}*`), 0, "every index set emptied and gone");
    } finally {
      await p.close();
      await deleteKeys(`${prefix}*`);
    }
  });

  it("a queued entry costs a reference, not a copy of the body", async () => {
    const prefix = `${RUN}cost:`;
    const p = await open(prefix);
    try {
      const big = msg({ payload: new Uint8Array(64 * 1024).fill(7) });
      await Promise.all(Array.from({ length: 20 }, (_, i) => p.enqueue(`c${i}`, [entry(big)])));
      if (admin.status === "wait") await admin.connect();
      const g = new Keys(prefix).group("c3");
      const perSession = Number(await admin.memory("USAGE", g.entries("c3"))) + Number(await admin.memory("USAGE", g.queue("c3")));
      const body = Number(await admin.memory("USAGE", g.msg(big.id)));
      assert.ok(perSession < 1024, `per-session cost ${perSession} B`);
      assert.ok(body > 64 * 1024, `body ${body} B`);
    } finally {
      await p.close();
      await deleteKeys(`${prefix}*`);
    }
  });
});

describe("redis persistence: availability", () => {
  it("Redis unreachable at start: rejects within a few seconds, naming the URL", async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const { ms, error } = await timed(RedisPersistence.connect({ url, prefix: RUN, logger: quiet }));
    assert.ok(error, "connect must reject");
    assert.match(error.message, new RegExp(`redis://127\\.0\\.0\\.1:${port}`));
    assert.ok(ms < 4000, `took ${ms} ms`);
  });

  it("password in the URL is masked in the error", async () => {
    const port = await freePort();
    const { error } = await timed(RedisPersistence.connect({ url: `redis://user:s3cret@127.0.0.1:${port}`, prefix: RUN, logger: quiet }));
    assert.ok(error && error.message.includes(`user:***@127.0.0.1:${port}`) && !error.message.includes("s3cret"));
  });

  it("a server that accepts but never answers: start gives up within the budget", async () => {
    const silent = await silentServer();
    try {
      const url = `redis://127.0.0.1:${silent.port}`;
      const { ms, error } = await timed(RedisPersistence.connect({ url, prefix: RUN, connectTimeoutMs: 500, logger: quiet }));
      assert.ok(error && error.message.includes(url), String(error?.message));
      assert.ok(ms < 2000, `took ${ms} ms`);
    } finally {
      await silent.close();
    }
  });

  it("Redis stops answering (SIGSTOP): commands time out instead of hanging, then recover", async () => {
    const server = new RedisServer(await freePort());
    let p: RedisPersistence | undefined;
    try {
      await server.start();
      p = await RedisPersistence.connect({ url: server.url, prefix: "hung:", commandTimeoutMs: 300, logger: quiet });
      await p.putSession(session("c1"));
      server.pause();
      const { ms, error } = await timed(p.enqueue("c1", [entry(msg())]));
      assert.ok(error, "must reject");
      assert.ok(ms < 1500, `rejected after ${ms} ms`);
      server.resume();
      await p.enqueue("c1", [entry(msg())]);
      assert.ok((await p.outgoingCount("c1")) >= 1);
    } finally {
      server.resume();
      await p?.close();
      await server.kill();
    }
  });

  it("Redis lost while running: writes reject fast, then it reconnects by itself", async () => {
    const server = new RedisServer(await freePort());
    const logs: string[] = [];
    let p: RedisPersistence | undefined;
    try {
      await server.start();
      p = await RedisPersistence.connect({
        url: server.url, prefix: "lost:", maxBackoffMs: 300, logger: collect(logs),
      });
      await p.putSession(session("c1"));
      await p.enqueue("c1", [entry(msg())]);

      await server.kill();
      for (let i = 0; i < 3; i++) {
        const { ms, error } = await timed(p.enqueue("c1", [entry(msg())]));
        assert.ok(error, "a write with Redis down must reject (QoS 1/2 must not be acknowledged)");
        assert.ok(ms < 1000, `rejected after ${ms} ms`);
      }
      const read = await timed(p.outgoing("c1"));
      assert.ok(read.error && read.ms < 1000);

      await server.start();
      const deadline = Date.now() + 8000;
      let ok = false;
      while (!ok && Date.now() < deadline) {
        ok = (await timed(p.putSession(session("c2")))).error === undefined;
        if (!ok) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(ok, "writes succeed again once Redis is back");
      await p.enqueue("c2", [entry(msg())]);
      assert.equal(await p.outgoingCount("c2"), 1);
      assert.ok(logs.some((l) => l.startsWith("warn redis connection lost")), logs.join("\n"));
      assert.ok(logs.some((l) => l.startsWith("info redis reconnected")), logs.join("\n"));
    } finally {
      await p?.close();
      await server.kill();
    }
  });
});

after(async () => {
  await deleteKeys(`${RUN}*`);
  admin.disconnect();
});
