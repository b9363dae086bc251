/** Conformance: outgoing QoS 1/2 entries (offline queue + inflight), and shared stores. */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { awkwardBytes, collect, entry, ids, type Make, msg, type PersistenceSuiteOptions, session, storeTest, withStore } from "./fixtures.ts";

export function outgoingSuite(make: Make, opts: PersistenceSuiteOptions): void {
  const t = storeTest(make);

  describe("outgoing", () => {
    t("FIFO order over many entries and calls", async (p) => {
      const all = Array.from({ length: 1500 }, () => msg());
      await p.enqueue("c1", [entry(all[0])]);
      await p.enqueue("c1", all.slice(1, 700).map((m) => entry(m)));
      await Promise.all(all.slice(700).map((m) => p.enqueue("c1", [entry(m)]))); // same tick
      assert.deepStrictEqual(ids(await p.outgoing("c1")), all.map((m) => m.id));
      assert.equal(await p.outgoingCount("c1"), 1500);
      assert.deepStrictEqual(await p.outgoing("empty"), []);
      assert.equal(await p.outgoingCount("empty"), 0);
    });

    t("entries round-trip: downgraded QoS, retain, subscription ids, properties", async (p) => {
      const m = msg({
        qos: 2,
        retain: true,
        expiresAt: Date.now() + 3_600_000,
        properties: { contentType: "text/plain", correlationData: new Uint8Array([0xff, 0, 1]), userProperties: { k: "v" } },
      });
      const e = entry(m, { qos: 1, retain: true, subscriptionIds: [1, 268435455] });
      await p.enqueue("c1", [e, entry(msg(), { qos: 2, state: "sent", packetId: 65535 })]);
      const got = await p.outgoing("c1");
      assert.deepStrictEqual(got[0], e);
      assert.deepStrictEqual({ ...got[1], msg: undefined }, { qos: 2, retain: false, state: "sent", packetId: 65535, msg: undefined });
    });

    t("binary payloads round-trip byte-exactly (empty, every byte value, non-UTF-8, 256 KiB)", async (p) => {
      const big = new Uint8Array(256 * 1024).map((_, i) => (i * 31 + 7) & 0xff);
      const payloads = [new Uint8Array(0), awkwardBytes(), new Uint8Array([0x0a]), big];
      const ms = payloads.map((payload) => msg({ payload, properties: { correlationData: awkwardBytes() } }));
      await p.enqueue("c1", ms.map((m) => entry(m)));
      const got = await p.outgoing("c1");
      for (let i = 0; i < ms.length; i++) {
        assert.deepStrictEqual(got[i].msg.payload, payloads[i]);
        assert.deepStrictEqual(got[i].msg, ms[i]);
      }
    });

    t("updateOutgoing sets packet id and state; unknown entries are not created", async (p) => {
      const [a, b] = [msg({ qos: 2 }), msg({ qos: 2 })];
      await p.enqueue("c1", [entry(a), entry(b)]);
      await p.updateOutgoing("c1", entry(a, { packetId: 10, state: "sent" }));
      await p.updateOutgoing("c1", entry(b, { packetId: 11, state: "sent" }));
      await p.updateOutgoing("c1", entry(b, { packetId: 11, state: "released" }));
      await p.updateOutgoing("c1", entry(msg(), { packetId: 12, state: "sent" }));
      await p.updateOutgoing("c2", entry(a, { packetId: 10, state: "sent" }));
      const got = await p.outgoing("c1");
      assert.deepStrictEqual(got.map((e) => [e.msg.id, e.packetId, e.state]), [[a.id, 10, "sent"], [b.id, 11, "released"]]);
      assert.equal(await p.outgoingCount("c1"), 2);
      assert.equal(await p.outgoingCount("c2"), 0);
    });

    t("removeOutgoing removes head, middle and tail; unknown ids are ignored", async (p) => {
      const ms = Array.from({ length: 6 }, () => msg());
      await p.enqueue("c1", ms.map((m) => entry(m)));
      await p.removeOutgoing("c1", ms[0].id);
      await p.removeOutgoing("c1", ms[3].id);
      await p.removeOutgoing("c1", ms[5].id);
      await p.removeOutgoing("c1", "no-such-id");
      await p.removeOutgoing("nobody", ms[1].id);
      assert.deepStrictEqual(ids(await p.outgoing("c1")), [ms[1].id, ms[2].id, ms[4].id]);
      assert.equal(await p.outgoingCount("c1"), 3);
    });

    t("re-enqueueing a queued id replaces it in place, no duplicate", async (p) => {
      const [a, b] = [msg(), msg()];
      await p.enqueue("c1", [entry(a), entry(b)]);
      await p.enqueue("c1", [entry(a, { state: "sent", packetId: 3 })]); // e.g. a retried call
      const got = await p.outgoing("c1");
      assert.deepStrictEqual(got.map((e) => [e.msg.id, e.state]), [[a.id, "sent"], [b.id, "queued"]]);
      assert.equal(await p.outgoingCount("c1"), 2);
      await p.removeOutgoing("c1", a.id);
      assert.deepStrictEqual(ids(await p.outgoing("c1")), [b.id]);
    });

    t("expired messages are dropped when read (MQTT 5 message expiry), order kept", async (p) => {
      const now = Date.now();
      const ms = [
        msg(),
        msg({ expiresAt: now - 1000 }),
        msg({ expiresAt: now + 60_000 }),
        msg({ expiresAt: now - 1 }),
        msg(),
      ];
      await p.enqueue("c1", ms.map((m) => entry(m)));
      await p.enqueue("c2", [entry(ms[1]), entry(ms[2])]);
      assert.deepStrictEqual(ids(await p.outgoing("c1")), [ms[0].id, ms[2].id, ms[4].id]);
      assert.equal(await p.outgoingCount("c1"), 3, "dropped on read, not just hidden");
      assert.deepStrictEqual(ids(await p.outgoing("c1")), [ms[0].id, ms[2].id, ms[4].id]);
      assert.deepStrictEqual(ids(await p.outgoing("c2")), [ms[2].id]);
      const rest = Array.from({ length: 50 }, () => msg());
      await p.enqueue("c1", rest.map((m) => entry(m)));
      assert.equal((await p.outgoing("c1")).length, 53, "the queue still appends after a drop");
    });

    t("a message queued for 100 sessions is stored once (per partition)", { skip: opts.countBodies ? false : "no countBodies hook" }, async (p) => {
      const big = msg({ payload: new Uint8Array(64 * 1024).fill(0xab) });
      // half of the ids share a Redis Cluster hash tag: a partitioned store has them together
      const clients = Array.from({ length: 100 }, (_, i) => (i < 50 ? `fan-${i}` : `fan-{shared}-${i}`));
      const copies = opts.bodyCopies?.(clients) ?? 1;
      assert.ok(copies < clients.length, `${copies} copies for ${clients.length} sessions is no sharing`);
      const before = await opts.countBodies!(p);
      await Promise.all(clients.map((c) => p.enqueue(c, [entry(big)]))); // one publish, same tick
      assert.equal(await opts.countBodies!(p), before + copies);
      for (const c of clients.slice(0, 3)) assert.deepStrictEqual((await p.outgoing(c))[0].msg, big);
      await Promise.all(clients.slice(0, 99).map((c) => p.removeOutgoing(c, big.id)));
      assert.equal(await opts.countBodies!(p), before + 1, "still referenced by one session");
      await p.removeOutgoing(clients[99], big.id);
      assert.equal(await opts.countBodies!(p), before, "last reference gone, body gone");
      // The same message queued again later (e.g. a retained one on a new subscription).
      await p.enqueue("late", [entry(big)]);
      assert.deepStrictEqual((await p.outgoing("late"))[0].msg, big);
      await p.deleteSession("late");
      assert.equal(await opts.countBodies!(p), before);
    });
  });

  describe("shared store (two instances)", () => {
    // only backends with a shared store (opts.peer) register these cases
    const itShared = opts.peer ? it : () => {};

    itShared("each instance sees the other's writes", () =>
      withStore(make, async (a) => {
        const b = await opts.peer!(a);
        try {
          await a.putSession(session("c1", { node: "a" }));
          await a.putSubscriptions("c1", [{ filter: "x/#", qos: 1 }]);
          const m = msg({ payload: awkwardBytes() });
          await a.enqueue("c1", [entry(m)]);
          await a.putRetained(msg({ topic: "r/1", retain: true }));
          assert.deepStrictEqual(await b.getSession("c1"), session("c1", { node: "a" }));
          assert.deepStrictEqual(await b.subscriptions("c1"), [{ filter: "x/#", qos: 1 }]);
          assert.deepStrictEqual((await b.outgoing("c1"))[0].msg, m);
          assert.equal((await b.matchRetained("r/+")).length, 1);
          await b.removeOutgoing("c1", m.id);
          await b.putSession(session("c1", { node: "b" }));
          assert.equal(await a.outgoingCount("c1"), 0);
          assert.equal((await a.getSession("c1"))?.node, "b");
          await b.deleteSession("c1");
          assert.equal(await a.getSession("c1"), undefined);
          assert.deepStrictEqual((await collect(a.sessions())).length, 0);
        } finally {
          await b.close();
        }
      }));

    itShared("concurrent writes from both instances are all kept, each writer's order too", () =>
      withStore(make, async (a) => {
        const b = await opts.peer!(a);
        try {
          const fromA = Array.from({ length: 200 }, () => msg());
          const fromB = Array.from({ length: 200 }, () => msg());
          const shared = msg();
          await Promise.all([
            ...fromA.map((m) => a.enqueue("c1", [entry(m)])),
            ...fromB.map((m) => b.enqueue("c1", [entry(m)])),
            ...Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).enqueue(`s${i}`, [entry(shared)])),
            ...Array.from({ length: 50 }, (_, i) => (i % 2 ? a : b).putRetained(msg({ topic: `r/${i}`, retain: true }))),
            ...Array.from({ length: 50 }, (_, i) => (i % 2 ? a : b).putSession(session(`p${i}`))),
          ]);
          const got = ids(await b.outgoing("c1"));
          assert.equal(got.length, 400);
          assert.deepStrictEqual(got.filter((id) => fromA.some((m) => m.id === id)), fromA.map((m) => m.id));
          assert.deepStrictEqual(got.filter((id) => fromB.some((m) => m.id === id)), fromB.map((m) => m.id));
          assert.equal(await a.retainedCount(), 50);
          assert.equal((await a.matchRetained("r/#")).length, 50);
          assert.equal((await collect(a.sessions())).length, 50);
          // Both release the shared message concurrently: the body is freed exactly once.
          await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? b : a).removeOutgoing(`s${i}`, shared.id)));
          if (opts.countBodies) {
            await a.deleteSession("c1");
            assert.equal(await opts.countBodies(a), 0);
          }
        } finally {
          await b.close();
        }
      }));
  });
}
