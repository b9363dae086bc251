/**
 * Operations on three real nodes behind a real HAProxy that checks each node's /readyz:
 * $SYS stays per node and the per-node $SYS/broker/cluster/<node>/ values travel only where
 * someone subscribed (interest routing: no subscriber, no bus traffic), are kept for later
 * subscribers and forgotten when a node leaves; a node drained through POST /drain is taken
 * out by HAProxy's health check, its clients are sent away gradually and resume their
 * sessions on the other nodes, and it leaves cleanly on SIGTERM.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { startCluster, type TestCluster } from "../helpers/cluster.ts";
import { until } from "../helpers/broker.ts";
import { connectV5, drainPublishes, payloadText, RawClient } from "../helpers/raw-client.ts";
import { type Family, parseExposition, valueOf } from "../helpers/prometheus.ts";

const SLOW = { timeout: 90_000 };


describe("cluster operations", () => {
  let c: TestCluster;
  const scrape = async (i: number): Promise<Map<string, Family>> =>
    parseExposition(await (await fetch(`http://127.0.0.1:${c.http[i]}/metrics`)).text());
  const sent = async (i: number) => valueOf(await scrape(i), "colibri_cluster_forwarded_messages_total", { direction: "sent" });
  before(async () => {
    c = await startCluster(3, { http: true, args: ["--sys-interval", "1", "--drain-rate", "4"] });
  });
  after(async () => {
    RawClient.destroyAll();
    await c?.close();
  });

  it("$SYS per node; cluster/<node>/ values only where subscribed, kept for later subscribers", SLOW, async () => {
    await until(async () => [...(await c.serverStates()).values()].every((s) => s === "UP"), "HAProxy sees 3 nodes up", 10_000, 100);
    // nobody subscribes to $SYS: two intervals pass without any bus traffic
    const before = await Promise.all([0, 1, 2].map(sent));
    await new Promise((r) => setTimeout(r, 2500));
    assert.deepEqual(await Promise.all([0, 1, 2].map(sent)), before, "$SYS went through the bus without a subscriber");

    const { client: s } = await connectV5(c.via[0], "sys-cluster", { keepalive: 0 });
    await s.subscribe("$SYS/broker/cluster/#", { qos: 0 });
    const seen = new Map<string, string>();
    await until(async () => {
      for (const p of await drainPublishes(s, 200)) seen.set(p.topic, payloadText(p));
      return ["n1", "n2", "n3"].every((n) => seen.has(`$SYS/broker/cluster/${n}/uptime`));
    }, "every node's uptime on node 1", 8000, 100);
    assert.equal(seen.get("$SYS/broker/cluster/nodes"), "3");
    assert.match(seen.get("$SYS/broker/cluster/n2/version")!, /^colibri version /);
    assert.ok((await sent(1)) > before[1] && (await sent(2)) > before[2], "n2 and n3 forward their values to n1 now");

    // a later subscriber on node 1 gets the other nodes' values at once, as retained messages
    const { client: late } = await connectV5(c.via[0], "sys-late", { keepalive: 0 });
    await late.subscribe("$SYS/broker/cluster/n3/clients/connected", { qos: 0 });
    const [v] = await drainPublishes(late, 300);
    assert.equal(v?.retain, true);
    assert.equal(payloadText(v), "0");
    // the plain $SYS topics describe the node the subscriber is on
    const { client: local } = await connectV5(c.via[1], "sys-local", { keepalive: 0 });
    await local.subscribe("$SYS/broker/clients/connected", { qos: 0 });
    const counts: string[] = [];
    await until(async () => {
      counts.push(...(await drainPublishes(local, 200)).map(payloadText));
      return counts.includes("1");
    }, "node 2 counting its one client", 3000, 100);
    for (const x of [s, late, local]) x.disconnect();
  });

  it("POST /drain: HAProxy takes the node out, its clients leave gradually and resume elsewhere; SIGTERM: it leaves", SLOW, async () => {
    const ids = Array.from({ length: 6 }, (_, i) => `drain-${i}`);
    const clients = [];
    for (const id of ids) {
      const { client } = await connectV5(c.via[2], id, { keepalive: 0, clean: false, properties: { sessionExpiryInterval: 300 } });
      await client.subscribe(`drain/${id}`, { qos: 1 });
      clients.push(client);
    }
    assert.equal(valueOf(await scrape(2), "colibri_connections"), 6);
    const others = async () => {
      const [a, b] = await Promise.all([scrape(0), scrape(1)]);
      return valueOf(a, "colibri_connections") + valueOf(b, "colibri_connections");
    };
    const before = await others();
    const t0 = Date.now();
    const r = await fetch(`http://127.0.0.1:${c.http[2]}/drain`, { method: "POST" });
    assert.equal(r.status, 202);
    await r.text();
    assert.equal((await fetch(`http://127.0.0.1:${c.http[2]}/readyz`)).status, 503);
    await until(async () => (await c.serverStates()).get("n3") !== "UP", "HAProxy marks n3 down", 5000, 100);
    const states = await c.serverStates();
    assert.equal(states.get("n1"), "UP");
    assert.equal(states.get("n2"), "UP");

    // 4 per second: six clients leave over more than a second, each told 0x8B
    for (const cl of clients) assert.equal((await cl.waitForPacket("disconnect", () => true, 5000)).reasonCode, 0x8b);
    assert.ok(Date.now() - t0 >= 1000, `all six sent away within ${Date.now() - t0} ms`);
    // they come back through the balancer: to n1 or n2 only, with their sessions
    const back = [];
    for (const id of ids) {
      const { client, connack } = await connectV5(c.lb, id, { keepalive: 0, clean: false, properties: { sessionExpiryInterval: 300 } });
      assert.equal(connack.reasonCode, 0);
      assert.equal(connack.sessionPresent, true, `${id} resumed its session`);
      back.push(client);
    }
    assert.equal(valueOf(await scrape(2), "colibri_connections"), 0, "the drained node got no client back");
    assert.equal(await others(), before + 6);
    const { client: pub } = await connectV5(c.via[0], "drain-pub", { keepalive: 0 });
    await pub.publish("drain/drain-5", "after the move", { qos: 1 });
    assert.equal(payloadText(await back[5].expectPacket("publish", 3000)), "after the move");

    // SIGTERM: the drained node leaves; its $SYS values are forgotten elsewhere
    await c.stop(2);
    await until(async () => valueOf(await scrape(0), "colibri_cluster_nodes") === 2, "two nodes left", 5000, 100);
    const { client: s } = await connectV5(c.via[0], "sys-after", { keepalive: 0 });
    await s.subscribe("$SYS/broker/cluster/n3/#", { qos: 0 });
    await s.expectNoPacket(1500);
    await s.subscribe("$SYS/broker/cluster/nodes", { qos: 0 });
    assert.equal(payloadText((await drainPublishes(s, 1500)).pop()!), "2");
  });
});
