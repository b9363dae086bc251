/**
 * The tries walk without recursion: a topic of 100,000 levels (far past --max-topic-levels,
 * which guards the wire; the data structures themselves must not depend on it) is stored,
 * matched with literal and wildcard filters, and removed, without a stack overflow.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { TopicTrie } from "../../src/routing/topic-trie.ts";
import { RetainedTrie } from "../../src/persistence/retained-trie.ts";
import { exceedsLevels } from "../../src/routing/topic.ts";
import { Router } from "../../src/routing/router.ts";
import type { StoredMessage } from "../../src/message.ts";

const LEVELS = 100_000;
/** "a/a/.../a" with LEVELS levels. */
const deep = new Array(LEVELS).fill("a").join("/");

function msg(topic: string): StoredMessage {
  return { id: topic.slice(0, 20), topic, payload: new Uint8Array([1]), qos: 1, retain: true, receivedAt: 0 };
}

describe("tries: 100,000 levels without recursion", () => {
  it("TopicTrie: a deep filter is added, matched (literal, '+', '#') and removed", () => {
    const t = new TopicTrie<string>();
    t.add(deep, "literal", "L");
    t.add("#", "all", "H");
    t.add("+/+/#", "plus", "P");
    t.add(deep.slice(0, -1) + "+", "last-plus", "LP");
    const hits: string[] = [];
    t.match(deep, (k) => hits.push(k));
    assert.deepEqual(hits.sort(), ["all", "last-plus", "literal", "plus"]);
    // one level short: only the wildcards that reach it
    const short: string[] = [];
    t.match(deep.slice(0, -2), (k) => short.push(k));
    assert.deepEqual(short.sort(), ["all", "plus"]);
    assert.equal(t.remove(deep, "literal"), true);
    assert.equal(t.get(deep, "literal"), undefined);
    const after: string[] = [];
    t.match(deep, (k) => after.push(k));
    assert.deepEqual(after.sort(), ["all", "last-plus", "plus"]);
  });

  it("RetainedTrie: a deep retained message is found by '#', '+/+/#' and its topic, and deleted", () => {
    const r = new RetainedTrie();
    r.put(msg(deep));
    r.put(msg("x/y"));
    assert.deepEqual(r.match("#", 0).map((m) => m.topic.length).sort(), [3, deep.length].sort());
    assert.deepEqual(r.match("+/+/#", 0).map((m) => m.topic.length).sort(), [3, deep.length].sort());
    assert.deepEqual(r.match(deep, 0).map((m) => m.topic === deep), [true]);
    assert.deepEqual(r.match("a/+/a/#", 0).map((m) => m.topic === deep), [true]);
    r.delete(deep);
    assert.equal(r.size, 1);
    assert.deepEqual(r.match("#", 0).map((m) => m.topic), ["x/y"]);
  });

  it("exceedsLevels counts levels and stops past the maximum", () => {
    assert.equal(exceedsLevels("a", 1), false);
    assert.equal(exceedsLevels("a/b", 1), true);
    assert.equal(exceedsLevels("/", 2), false); // two empty levels
    assert.equal(exceedsLevels("a/b/c", 3), false);
    assert.equal(exceedsLevels("a/b/c/", 3), true);
    assert.equal(exceedsLevels(deep, LEVELS), false);
    assert.equal(exceedsLevels(deep, LEVELS - 1), true);
  });
});

describe("router: the match cache is bounded in key bytes", () => {
  it("routing 300 distinct 60 KB topics keeps at most 4 Mi characters of keys", () => {
    const r = new Router();
    const sub = {
      clientId: "c", persistent: false, deliver: () => {}, isOnline: () => true, backlog: () => 0, readyForMore: () => true,
      mayRead: () => true,
    };
    r.add(sub, { filter: "#", qos: 0 });
    const long = "t".repeat(60_000);
    let delivered = 0;
    sub.deliver = () => void delivered++;
    for (let i = 0; i < 300; i++) r.route(msg(`${long}/${i}`));
    assert.equal(delivered, 300);
    const f = r.cacheFootprint;
    assert.ok(f.chars <= 4 * 1024 * 1024, `${f.chars} characters of topic names cached`);
    assert.ok(f.topics > 0 && f.topics < 300);
  });
});
