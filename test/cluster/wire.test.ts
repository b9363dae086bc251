/**
 * The forward batch on its own (src/cluster/wire.ts): what one node encodes, the other decodes
 * exactly, whatever order ids, topics and publishers come in. The encoder remembers the last
 * id prefix, topic and publisher it referred to; these cases mix them so that a stale
 * reference would decode as the wrong string.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { decodeForwards, encodeForwards, ForwardBatch } from "../../src/cluster/wire.ts";
import type { Forward } from "../../src/cluster/bus.ts";
import type { StoredMessage } from "../../src/message.ts";

const enc = new TextEncoder();

function msg(id: string, topic: string, extra: Partial<StoredMessage> = {}): StoredMessage {
  return { id, topic, payload: enc.encode(`p:${id}`), qos: 1, retain: false, receivedAt: 1_700_000_000_123, ...extra };
}

/** The fields that travel, as plain values (views compared by content). */
function plain(f: Forward) {
  const m = f.msg;
  return {
    id: m.id, topic: m.topic, payload: [...m.payload], qos: m.qos, retain: m.retain, receivedAt: m.receivedAt,
    expiresAt: m.expiresAt, properties: m.properties, wire: m.wire === undefined ? undefined : [...m.wire],
    publisher: f.publisher, plain: f.plain, shares: f.shares,
  };
}

function roundTrip(list: Forward[]) {
  const back = decodeForwards(encodeForwards(list));
  assert.equal(back.length, list.length);
  back.forEach((f, i) => assert.deepEqual(plain(f), plain(list[i]), `message ${i}`));
}

describe("cluster: forward batch encoding", () => {
  it("ids of two nodes, topics and publishers interleaved: every message decodes as sent", () => {
    const list: Forward[] = [];
    const prefixes = ["nodeA#1:", "nodeB#7:", "nodeA#1:"];
    for (let i = 0; i < 60; i++) {
      const prefix = prefixes[i % 3];
      const topic = i % 4 < 2 ? "t/a" : `t/${i % 5}`;
      const publisher = i % 7 === 0 ? undefined : i % 2 === 0 ? "pub-1" : "pub-2";
      list.push({ msg: msg(prefix + i.toString(36), topic), publisher, plain: i % 9 !== 0, shares: i % 9 === 0 ? ["g1"] : undefined });
    }
    roundTrip(list);
  });

  it("an id that starts with the last prefix but is longer in its node part keeps its whole id", () => {
    // "n#1:" then "n#1:5:x": the second starts with the first's prefix; the split may differ,
    // the id may not
    roundTrip([
      { msg: msg("n#1:1", "a"), plain: true },
      { msg: msg("n#1:5:x", "a"), plain: true },
      { msg: msg("n#1:2", "a"), plain: true },
      { msg: msg("plain-id", "a"), plain: true },
      { msg: msg("n#1:3", "a"), plain: true },
    ]);
  });

  it("non-ASCII topics and publishers, expiry, properties and a received frame travel intact", () => {
    const frame = Uint8Array.from([0x30, 5, 0, 1, 0x61, 0x68, 0x69]);
    roundTrip([
      { msg: msg("n#1:1", "données/température", { expiresAt: 1_700_000_060_000 }), publisher: "capteur-é", plain: true },
      { msg: msg("n#1:2", "données/température", { properties: { contentType: "text/plain", correlationData: Uint8Array.from([0, 255, 7]), userProperties: { k: ["v1", "v2"] } } }), publisher: "capteur-é", plain: true },
      { msg: msg("n#1:3", "a", { payload: frame.subarray(5), wire: frame, qos: 0, retain: true }), publisher: "x", plain: true },
      { msg: msg("n#1:4", "données/température"), plain: true },
    ]);
  });

  it("past the string table's size the table starts over on both sides, remembered strings included", () => {
    const list: Forward[] = [];
    // 0xfff0 distinct strings fill the table; the topic and publisher used just before the
    // reset come again right after it and must be written out afresh
    for (let i = 0; i < 33_000; i++) {
      list.push({ msg: msg(`n#1:${i}`, `t/${i}`), publisher: `c${i}`, plain: true });
    }
    for (let i = 0; i < 5; i++) list.push({ msg: msg(`n#1:x${i}`, "t/32999"), publisher: "c32999", plain: true });
    roundTrip(list);
  });

  it("size grows with each message and count counts them", () => {
    const b = new ForwardBatch();
    let last = 0;
    for (let i = 0; i < 10; i++) {
      b.add(msg(`n#1:${i}`, "t"), "p", true);
      assert.ok(b.size > last);
      last = b.size;
    }
    assert.equal(b.count, 10);
    assert.equal(decodeForwards(b.bytes()).length, 10);
  });
});
