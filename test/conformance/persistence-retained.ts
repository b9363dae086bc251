/** Conformance: retained messages, wildcard lookup through the index, expiry. */
import { describe } from "node:test";
import assert from "node:assert/strict";
import { type Persistence, RetainedQuotaError } from "../../src/persistence/persistence.ts";
import { topicMatches } from "../../src/routing/topic.ts";
import { awkwardBytes, type Make, msg, type PersistenceSuiteOptions, storeTest } from "./fixtures.ts";

const TOPICS = [
  "a", "a/b", "a/b/c", "a/x/c", "a/b/c/d", "b/b", "b", "/lead", "trail/", "a//c", "/",
  "$SYS/x", "$SYS/x/y", "$SYS", "$other/x", "sport/tennis/player1", "sport/tennis/player1/ranking",
  "sport/tennis/player1/score/wimbledon", "sport", "sport/",
];

/** filter -> expected topics; the rules of MQTT 4.7, including the `$` rule [MQTT-4.7.2-1]. */
const CASES: Record<string, string[]> = {
  "#": TOPICS.filter((t) => !t.startsWith("$")),
  "+": ["a", "b", "sport"],
  "a/#": ["a", "a/b", "a/b/c", "a/x/c", "a/b/c/d", "a//c"], // [MQTT-4.7.1-2] parent level too
  "a/+": ["a/b"],
  "a/+/c": ["a/b/c", "a/x/c", "a//c"],
  "a/+/#": ["a/b", "a/b/c", "a/x/c", "a/b/c/d", "a//c"],
  "+/b": ["a/b", "b/b"],
  "+/+": ["a/b", "b/b", "/lead", "trail/", "/", "sport/"],
  "+/x": [], // $SYS/x is not matched by a leading wildcard
  "+/#": TOPICS.filter((t) => !t.startsWith("$")),
  "$SYS/#": ["$SYS/x", "$SYS/x/y", "$SYS"],
  "$SYS/+": ["$SYS/x"],
  "$SYS": ["$SYS"],
  "/+": ["/lead", "/"],
  "+/": ["trail/", "/", "sport/"],
  "sport/tennis/+": ["sport/tennis/player1"],
  "sport/tennis/player1/#": ["sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis/player1/score/wimbledon"],
  "sport/+": ["sport/"],
  "sport/#": ["sport", "sport/", "sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis/player1/score/wimbledon"],
  "+/+/+": ["a/b/c", "a/x/c", "a//c", "sport/tennis/player1"],
  "+/tennis/#": ["sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis/player1/score/wimbledon"],
  "a/b/c/d": ["a/b/c/d"],
  "nope/#": [],
};

export function retainedSuite(make: Make, _opts: PersistenceSuiteOptions): void {
  const t = storeTest(make);
  const topicsOf = async (p: Persistence, filter: string) => (await p.matchRetained(filter)).map((m) => m.topic).sort();

  describe("retained", () => {
    t("put, replace, delete, count", async (p) => {
      assert.equal(await p.retainedCount(), 0);
      const first = msg({ topic: "a/b", retain: true });
      await p.putRetained(first);
      await p.putRetained(msg({ topic: "a/c", retain: true }));
      assert.equal(await p.retainedCount(), 2);
      const second = msg({ topic: "a/b", retain: true, qos: 2, payload: awkwardBytes() });
      await p.putRetained(second);
      assert.equal(await p.retainedCount(), 2);
      assert.deepStrictEqual(await p.matchRetained("a/b"), [second]);
      await p.deleteRetained("a/b");
      await p.deleteRetained("not/there");
      assert.equal(await p.retainedCount(), 1);
      assert.deepStrictEqual(await p.matchRetained("a/b"), []);
      assert.deepStrictEqual(await topicsOf(p, "a/#"), ["a/c"]);
      await p.putRetained(first); // back after a delete: index rebuilt
      assert.deepStrictEqual(await topicsOf(p, "a/+"), ["a/b", "a/c"]);
    });

    t("wildcard lookups follow the matching rules", async (p) => {
      await Promise.all(TOPICS.map((topic) => p.putRetained(msg({ topic, retain: true }))));
      assert.equal(await p.retainedCount(), TOPICS.length);
      for (const [filter, want] of Object.entries(CASES)) {
        // The table itself must agree with the shared matching rule.
        assert.deepStrictEqual(TOPICS.filter((x) => topicMatches(filter, x)).sort(), [...want].sort(), `table: ${filter}`);
        assert.deepStrictEqual(await topicsOf(p, filter), [...want].sort(), `matchRetained(${filter})`);
      }
    });

    t("lookups stay right after deletes (index kept in step)", async (p) => {
      await Promise.all(TOPICS.map((topic) => p.putRetained(msg({ topic, retain: true }))));
      for (const topic of ["a/b", "a/b/c", "$SYS/x", "/"]) await p.deleteRetained(topic);
      assert.deepStrictEqual(await topicsOf(p, "a/#"), ["a", "a//c", "a/b/c/d", "a/x/c"]);
      assert.deepStrictEqual(await topicsOf(p, "$SYS/#"), ["$SYS", "$SYS/x/y"]);
      assert.deepStrictEqual(await topicsOf(p, "+/+"), ["/lead", "b/b", "sport/", "trail/"]);
      assert.equal(await p.retainedCount(), TOPICS.length - 4);
    });

    t("many retained topics: a narrow filter returns only its matches", async (p) => {
      const writes: Promise<void>[] = [];
      for (let d = 0; d < 50; d++) {
        for (const s of ["temp", "hum", "co2"]) writes.push(p.putRetained(msg({ topic: `dev/${d}/${s}`, retain: true })));
      }
      await Promise.all(writes);
      assert.equal((await p.matchRetained("dev/+/temp")).length, 50);
      assert.deepStrictEqual(await topicsOf(p, "dev/7/#"), ["dev/7/co2", "dev/7/hum", "dev/7/temp"]);
      assert.equal((await p.matchRetained("#")).length, 150);
    });

    t("deep topics: literal levels past the first eight still decide the match", async (p) => {
      // twelve levels that differ only at level 10 (0-based 9) and 12; the Redis backend
      // indexes the first eight levels and must re-check the rest
      const base = "d/1/2/3/4/5/6/7/8";
      const topics = [`${base}/x/y/z`, `${base}/x/y/w`, `${base}/q/y/z`, `${base}/x/y`, base];
      await Promise.all(topics.map((topic) => p.putRetained(msg({ topic, retain: true }))));
      assert.deepStrictEqual(await topicsOf(p, `${base}/x/y/z`), [`${base}/x/y/z`]);
      assert.deepStrictEqual(await topicsOf(p, `${base}/x/+/z`), [`${base}/x/y/z`]);
      assert.deepStrictEqual(await topicsOf(p, `${base}/+/y/z`), [`${base}/q/y/z`, `${base}/x/y/z`]);
      assert.deepStrictEqual(await topicsOf(p, `${base}/x/#`), [`${base}/x/y`, `${base}/x/y/w`, `${base}/x/y/z`]);
      assert.deepStrictEqual(await topicsOf(p, "+/+/+/+/+/+/+/+/+/q/#"), [`${base}/q/y/z`]);
      assert.deepStrictEqual(await topicsOf(p, "d/#"), [...topics].sort());
      await p.deleteRetained(`${base}/x/y/z`);
      assert.deepStrictEqual(await topicsOf(p, `${base}/+/y/z`), [`${base}/q/y/z`]);
      assert.equal(await p.retainedCount(), topics.length - 1);
    });

    t("expired retained messages are not returned and are dropped", async (p) => {
      const now = Date.now();
      await p.putRetained(msg({ topic: "e/old", retain: true, expiresAt: now - 10 }));
      await p.putRetained(msg({ topic: "e/new", retain: true, expiresAt: now + 60_000 }));
      await p.putRetained(msg({ topic: "e/forever", retain: true }));
      assert.deepStrictEqual(await topicsOf(p, "e/+"), ["e/forever", "e/new"]);
      assert.equal(await p.retainedCount(), 2);
      assert.deepStrictEqual(await p.matchRetained("e/old"), []);
    });

    t("quota: payload bytes counted; a new topic past maxMessages or a growth past maxBytes refused, nothing changed", async (p) => {
      const bytes = (n: number) => new Uint8Array(n).fill(65);
      const quota = { maxMessages: 3, maxBytes: 100 };
      await p.putRetained(msg({ topic: "q/a", retain: true, payload: bytes(40) }), quota);
      await p.putRetained(msg({ topic: "q/b", retain: true, payload: bytes(40) }), quota);
      assert.equal(await p.retainedBytes(), 80);
      // bytes: 80 + 30 > 100
      await assert.rejects(p.putRetained(msg({ topic: "q/c", retain: true, payload: bytes(30) }), quota),
        (e) => e instanceof RetainedQuotaError && e.limit === "bytes");
      await p.putRetained(msg({ topic: "q/c", retain: true, payload: bytes(20) }), quota);
      assert.equal(await p.retainedBytes(), 100);
      // messages: a fourth topic is refused, whatever its size
      await assert.rejects(p.putRetained(msg({ topic: "q/d", retain: true, payload: bytes(0) }), quota),
        (e) => e instanceof RetainedQuotaError && e.limit === "messages");
      // a replacement that does not grow goes through; one that grows past the limit does not
      await p.putRetained(msg({ topic: "q/a", retain: true, payload: bytes(10) }), quota);
      await assert.rejects(p.putRetained(msg({ topic: "q/b", retain: true, payload: bytes(71) }), quota), RetainedQuotaError);
      assert.deepStrictEqual((await p.matchRetained("q/b"))[0].payload, bytes(40));
      assert.equal(await p.retainedBytes(), 70);
      assert.equal(await p.retainedCount(), 3);
      // a delete frees room; without a quota anything goes
      await p.deleteRetained("q/c");
      assert.equal(await p.retainedBytes(), 50);
      await p.putRetained(msg({ topic: "q/d", retain: true, payload: bytes(50) }), quota);
      await p.putRetained(msg({ topic: "q/e", retain: true, payload: bytes(500) }));
      assert.equal(await p.retainedBytes(), 600);
      assert.deepStrictEqual(await topicsOf(p, "q/+"), ["q/a", "q/b", "q/d", "q/e"]);
    });

    t("retained payload and properties round-trip byte-exactly", async (p) => {
      const m = msg({
        topic: "bin/1",
        retain: true,
        payload: awkwardBytes(),
        expiresAt: Date.now() + 100_000,
        properties: { payloadFormatIndicator: 0, correlationData: awkwardBytes(), responseTopic: "r", userProperties: { u: ["1", "2"] } },
      });
      const empty = msg({ topic: "bin/2", retain: true, payload: new Uint8Array(0) });
      await p.putRetained(m);
      await p.putRetained(empty);
      assert.deepStrictEqual(await p.matchRetained("bin/1"), [m]);
      assert.deepStrictEqual(await p.matchRetained("bin/2"), [empty]);
    });
  });
}
