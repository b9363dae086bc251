/**
 * The conformance suite every Persistence backend must pass (node:test + node:assert only, so
 * it runs under `deno test` and `bun test`). A backend's test file is one call:
 *   runPersistenceSuite("memory", async () => new MemoryPersistence());
 * `make` must return a fresh, empty store each time. Optional hooks (see fixtures.ts) enable
 * the tests that need to look behind the interface (key counts, shared stores).
 */
import { after, describe } from "node:test";
import assert from "node:assert/strict";
import type { StoredSubscription } from "../../src/persistence/persistence.ts";
import { awkwardBytes, collect, entry, type Make, msg, type PersistenceSuiteOptions, session, storeTest } from "./fixtures.ts";
import { outgoingSuite } from "./persistence-outgoing.ts";
import { retainedSuite } from "./persistence-retained.ts";

export type { PersistenceSuiteOptions } from "./fixtures.ts";

export function runPersistenceSuite(name: string, make: Make, opts: PersistenceSuiteOptions = {}): void {
  describe(`persistence conformance: ${name}`, () => {
    if (opts.cleanup) after(opts.cleanup);
    sessionSuite(make, opts);
    subscriptionSuite(make);
    outgoingSuite(make, opts);
    incomingSuite(make);
    retainedSuite(make, opts);
  });
}

function sessionSuite(make: Make, opts: PersistenceSuiteOptions): void {
  const t = storeTest(make);

  describe("sessions", () => {
    t("unknown session is undefined", async (p) => {
      assert.equal(await p.getSession("nobody"), undefined);
    });

    t("put/get round-trips every field, will payload byte-exact", async (p) => {
      const rec = session("c1", {
        protocolVersion: 4,
        expiryInterval: 0xffffffff,
        disconnectedAt: 1_700_000_000_123,
        node: "node-a",
        willAt: 1_700_000_005_000,
        username: "user é:1", // its ACL applies to the stored session (auth/acl.ts)
        will: {
          topic: "will/c1",
          payload: awkwardBytes(),
          qos: 2,
          retain: true,
          delay: 30,
          properties: {
            messageExpiryInterval: 60,
            contentType: "application/octet-stream",
            responseTopic: "r/c1",
            correlationData: new Uint8Array([0, 0xff, 0x80, 0x0a]),
            payloadFormatIndicator: 0,
            userProperties: { a: "1", b: ["x", "y"] },
          },
        },
      });
      await p.putSession(rec);
      assert.deepStrictEqual(await p.getSession("c1"), rec);
    });

    t("put replaces the record: fields absent from the new one are gone", async (p) => {
      await p.putSession(session("c1", { node: "n1", username: "u", will: { topic: "w", payload: new Uint8Array(), qos: 0, retain: false, delay: 0 } }));
      await p.putSession(session("c1", { disconnectedAt: 5 }));
      assert.deepStrictEqual(await p.getSession("c1"), session("c1", { disconnectedAt: 5 }));
    });

    t("put leaves subscriptions, queue and QoS 2 state alone", async (p) => {
      await p.putSession(session("c1"));
      await p.putSubscriptions("c1", [{ filter: "a/#", qos: 1 }]);
      await p.enqueue("c1", [entry(msg())]);
      await p.addIncomingQos2("c1", 7);
      await p.putSession(session("c1", { expiryInterval: 10 }));
      assert.equal((await p.subscriptions("c1")).length, 1);
      assert.equal(await p.outgoingCount("c1"), 1);
      assert.deepStrictEqual(await p.incomingQos2("c1"), [7]);
    });

    t("delete removes record, subscriptions, queue and QoS 2 ids; others untouched", async (p) => {
      for (const id of ["c1", "c2"]) {
        await p.putSession(session(id));
        await p.putSubscriptions(id, [{ filter: "a", qos: 1 }]);
        await p.enqueue(id, [entry(msg())]);
        await p.addIncomingQos2(id, 1);
      }
      await p.deleteSession("c1");
      assert.equal(await p.getSession("c1"), undefined);
      assert.deepStrictEqual(await p.subscriptions("c1"), []);
      assert.deepStrictEqual(await p.outgoing("c1"), []);
      assert.equal(await p.outgoingCount("c1"), 0);
      assert.deepStrictEqual(await p.incomingQos2("c1"), []);
      assert.ok(await p.getSession("c2"));
      assert.equal((await p.outgoing("c2")).length, 1);
      await p.deleteSession("never-existed"); // no-op
    });

    t("sessions() yields every stored session exactly once", async (p) => {
      const want = Array.from({ length: 1200 }, (_, i) => `client-${i}`);
      await Promise.all(want.map((id) => p.putSession(session(id))));
      await p.deleteSession("client-7");
      const got = (await collect(p.sessions())).map((r) => r.clientId).sort();
      assert.deepStrictEqual(got, want.filter((id) => id !== "client-7").sort());
      const one = (await collect(p.sessions())).find((r) => r.clientId === "client-3");
      assert.deepStrictEqual(one, session("client-3"));
    });

    t("deleteSession leaves nothing behind (no orphan keys)", { skip: opts.countKeys ? false : "no countKeys hook" }, async (p) => {
      const before = await opts.countKeys!(p);
      await p.putSession(session("c1", { will: { topic: "w", payload: new Uint8Array([1]), qos: 1, retain: false, delay: 0 } }));
      await p.putSubscriptions("c1", [{ filter: "a/+", qos: 2 }, { filter: "$share/g/b", qos: 0 }]);
      const shared = msg();
      await p.enqueue("c1", [entry(shared), entry(msg({ expiresAt: Date.now() + 60_000 }))]);
      await p.enqueue("c2", [entry(shared)]);
      await p.addIncomingQos2("c1", 9);
      const during = await opts.countKeys!(p);
      assert.ok(during > before, "writes must be visible to countKeys");
      await p.deleteSession("c1");
      await p.deleteSession("c2");
      assert.equal(await opts.countKeys!(p), before);
    });
  });
}

function subscriptionSuite(make: Make): void {
  const t = storeTest(make);
  const byFilter = (a: StoredSubscription, b: StoredSubscription) => a.filter < b.filter ? -1 : 1;

  describe("subscriptions", () => {
    t("add and list, every option round-trips", async (p) => {
      const subs: StoredSubscription[] = [
        { filter: "a/+/c", qos: 1 },
        { filter: "$share/g1/x/#", qos: 2, noLocal: true, retainAsPublished: true, retainHandling: 2, subscriptionId: 268435455 },
        { filter: "é/ü/#", qos: 0, retainHandling: 1 },
      ];
      await p.putSubscriptions("c1", subs);
      assert.deepStrictEqual((await p.subscriptions("c1")).sort(byFilter), [...subs].sort(byFilter));
      assert.deepStrictEqual(await p.subscriptions("other"), []);
    });

    t("put replaces by filter", async (p) => {
      await p.putSubscriptions("c1", [{ filter: "a", qos: 0 }, { filter: "b", qos: 0 }]);
      await p.putSubscriptions("c1", [{ filter: "a", qos: 2, subscriptionId: 4 }]);
      assert.deepStrictEqual((await p.subscriptions("c1")).sort(byFilter), [
        { filter: "a", qos: 2, subscriptionId: 4 },
        { filter: "b", qos: 0 },
      ]);
    });

    t("remove some filters; unknown filters are ignored", async (p) => {
      await p.putSubscriptions("c1", [{ filter: "a", qos: 0 }, { filter: "b", qos: 1 }, { filter: "c", qos: 2 }]);
      await p.removeSubscriptions("c1", ["a", "c", "zzz"]);
      await p.removeSubscriptions("nobody", ["a"]);
      assert.deepStrictEqual(await p.subscriptions("c1"), [{ filter: "b", qos: 1 }]);
      await p.removeSubscriptions("c1", ["b"]);
      assert.deepStrictEqual(await p.subscriptions("c1"), []);
    });

    t("allSubscriptions() covers every session", async (p) => {
      for (let i = 0; i < 30; i++) {
        await p.putSession(session(`c${i}`));
        await p.putSubscriptions(`c${i}`, [{ filter: `t/${i}`, qos: 1 }, { filter: "all/#", qos: 0 }]);
      }
      const got = (await collect(p.allSubscriptions())).map((x) => `${x.clientId} ${x.sub.filter} ${x.sub.qos}`).sort();
      const want: string[] = [];
      for (let i = 0; i < 30; i++) want.push(`c${i} t/${i} 1`, `c${i} all/# 0`);
      assert.deepStrictEqual(got, want.sort());
    });
  });
}

function incomingSuite(make: Make): void {
  const t = storeTest(make);

  describe("incoming QoS 2", () => {
    t("add, list, remove; duplicates collapse; sessions are separate", async (p) => {
      assert.deepStrictEqual(await p.incomingQos2("c1"), []);
      for (const id of [5, 1, 65535, 5]) await p.addIncomingQos2("c1", id);
      await p.addIncomingQos2("c2", 5);
      assert.deepStrictEqual([...await p.incomingQos2("c1")].sort((a, b) => a - b), [1, 5, 65535]);
      await p.removeIncomingQos2("c1", 5);
      await p.removeIncomingQos2("c1", 42); // unknown: no-op
      assert.deepStrictEqual([...await p.incomingQos2("c1")].sort((a, b) => a - b), [1, 65535]);
      assert.deepStrictEqual(await p.incomingQos2("c2"), [5]);
    });
  });
}
