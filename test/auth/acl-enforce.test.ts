/**
 * The ACL on the wire: PUBLISH (5.0 PUBACK/PUBREC 0x87; 3.1.1 acknowledged and dropped, as
 * Mosquitto does), SUBSCRIBE (0x87 / 0x80 when nothing is readable), every delivery (a '#'
 * subscriber never receives a topic it may not read, retained ones included), wills (refused at
 * CONNECT), shared groups (a member that may not read is passed over), `$`-topics closed to
 * clients even without an ACL file.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { startSecureBroker, type SecureBroker } from "../helpers/auth.ts";
import { connectV4, connectV5, drainPublishes, payloadText, RawClient } from "../helpers/raw-client.ts";
import { startBroker, type TestBroker } from "../helpers/broker.ts";

const ACL = `topic read public/#
user alice
topic readwrite a/#
topic read r/#
topic write w/#
topic read shared/#
user bob
topic readwrite #
user dave
topic read shared/open/#
`;
const USERS = { alice: "apw", bob: "bpw", dave: "dpw" };
const pw = (u: keyof typeof USERS) => ({ username: u, password: Buffer.from(USERS[u]) });

describe("ACL enforcement on the wire", { timeout: 60_000 }, () => {
  let b: SecureBroker;
  let n = 0;
  const id = (s: string) => `${s}-${++n}`;
  before(async () => {
    b = await startSecureBroker({ users: USERS, acl: ACL });
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  /** bob may read everything: what did a publish actually deliver? */
  async function watcher() {
    const { client } = await connectV5(b.port, id("bob"), pw("bob"));
    await client.subscribe("#", { qos: 1 });
    return client;
  }

  it("5.0: a PUBLISH to a topic the user may not write gets PUBACK / PUBREC 0x87 and goes nowhere", async () => {
    const w = await watcher();
    const { client } = await connectV5(b.port, id("alice"), pw("alice"));
    client.sendPacket({ cmd: "publish", topic: "r/x", payload: Buffer.from("q1"), qos: 1, messageId: 1, retain: false, dup: false });
    assert.equal((await client.expectPacket("puback")).reasonCode, 0x87);
    client.sendPacket({ cmd: "publish", topic: "r/x", payload: Buffer.from("q2"), qos: 2, messageId: 2, retain: false, dup: false });
    assert.equal((await client.expectPacket("pubrec")).reasonCode, 0x87);
    client.sendPacket({ cmd: "publish", topic: "r/x", payload: Buffer.from("q0"), qos: 0, retain: false, dup: false });
    client.sendPacket({ cmd: "publish", topic: "w/ok", payload: Buffer.from("allowed"), qos: 1, messageId: 3, retain: false, dup: false });
    assert.equal((await client.expectPacket("puback")).reasonCode ?? 0, 0);
    const got = await drainPublishes(w, 300);
    assert.deepEqual(got.map((p) => `${p.topic} ${payloadText(p)}`), ["w/ok allowed"]);
    assert.equal(client.closed, false);
  });

  it("3.1.1: acknowledged as usual (PUBACK; PUBREC, PUBREL -> PUBCOMP) and dropped", async () => {
    const w = await watcher();
    const { client } = await connectV4(b.port, id("alice4"), pw("alice"));
    client.sendPacket({ cmd: "publish", topic: "r/y", payload: Buffer.from("a"), qos: 1, messageId: 7, retain: false, dup: false });
    assert.equal((await client.expectPacket("puback")).messageId, 7);
    client.sendPacket({ cmd: "publish", topic: "r/y", payload: Buffer.from("b"), qos: 2, messageId: 8, retain: false, dup: false });
    await client.expectPacket("pubrec");
    client.sendPacket({ cmd: "pubrel", messageId: 8 });
    assert.equal((await client.expectPacket("pubcomp")).messageId, 8);
    assert.deepEqual(await drainPublishes(w, 300), []);
  });

  it("`$`-topics are closed to clients, even to one that may write '#'", async () => {
    const w = await watcher();
    const { client } = await connectV5(b.port, id("bob"), pw("bob"));
    for (const [i, topic] of ["$SYS/broker/x", "$share/g/t", "$other"].entries()) {
      client.sendPacket({ cmd: "publish", topic, payload: Buffer.from("x"), qos: 1, messageId: i + 1, retain: false, dup: false });
      assert.equal((await client.expectPacket("puback")).reasonCode, 0x87, topic);
    }
    assert.deepEqual(await drainPublishes(w, 200), []);
  });

  it("SUBSCRIBE: a filter with nothing readable is refused (5.0 0x87, 3.1.1 0x80), the others granted", async () => {
    const v5 = (await connectV5(b.port, id("alice"), pw("alice"))).client;
    v5.sendPacket({
      cmd: "subscribe", messageId: 1,
      subscriptions: [{ topic: "w/#", qos: 1 }, { topic: "#", qos: 1 }, { topic: "zzz/+", qos: 0 }, { topic: "$share/g/r/#", qos: 1 }],
    });
    assert.deepEqual((await v5.expectPacket("suback")).granted, [0x87, 1, 0x87, 1]);
    const v4 = (await connectV4(b.port, id("alice4"), pw("alice"))).client;
    v4.sendPacket({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "w/x", qos: 1 }, { topic: "r/+", qos: 2 }] });
    assert.deepEqual((await v4.expectPacket("suback")).granted, [0x80, 2]);
  });

  it("each delivery is checked: a '#' subscriber gets only what it may read, live and retained", async () => {
    const bob = (await connectV5(b.port, id("bob"), pw("bob"))).client;
    for (const [i, t] of ["r/ret", "secret/ret", "a/ret"].entries()) {
      bob.sendPacket({ cmd: "publish", topic: t, payload: Buffer.from("R"), qos: 1, messageId: i + 1, retain: true, dup: false });
      await bob.expectPacket("puback");
    }
    const alice = (await connectV5(b.port, id("alice"), pw("alice"))).client;
    await alice.subscribe("#", { qos: 1 });
    const retained = await drainPublishes(alice, 300);
    assert.deepEqual(retained.map((p) => p.topic).sort(), ["a/ret", "r/ret"]);
    for (const [i, t] of ["r/live", "secret/live", "public/live", "a/live"].entries()) {
      bob.sendPacket({ cmd: "publish", topic: t, payload: Buffer.from("L"), qos: 1, messageId: 10 + i, retain: false, dup: false });
      await bob.expectPacket("puback");
    }
    const live = await drainPublishes(alice, 300);
    assert.deepEqual(live.map((p) => p.topic), ["r/live", "a/live"]);
    // anonymous: the anonymous section only
    const anon = (await connectV4(b.port, id("anon"))).client;
    await anon.subscribe("#", { qos: 0 });
    bob.sendPacket({ cmd: "publish", topic: "public/x", payload: Buffer.from("P"), qos: 0, retain: false, dup: false });
    bob.sendPacket({ cmd: "publish", topic: "r/x", payload: Buffer.from("P"), qos: 0, retain: false, dup: false });
    assert.deepEqual((await drainPublishes(anon, 300)).map((p) => p.topic), ["public/x"]);
    for (const t of ["r/ret", "secret/ret", "a/ret"]) {
      bob.sendPacket({ cmd: "publish", topic: t, payload: Buffer.alloc(0), qos: 0, retain: true, dup: false });
    }
  });

  it("a will the client may not publish is refused at CONNECT (5.0 0x87, 3.1.1 0x05); an allowed one is published", async () => {
    const will = (topic: string) => ({ topic, payload: Buffer.from("gone"), qos: 0 as const, retain: false });
    assert.equal((await connectV5(b.port, id("alice"), { ...pw("alice"), will: will("r/will") })).connack.reasonCode, 0x87);
    assert.equal((await connectV4(b.port, id("alice"), { ...pw("alice"), will: will("r/will") })).connack.returnCode, 5);
    assert.equal((await connectV5(b.port, id("bob"), { ...pw("bob"), will: will("$SYS/will") })).connack.reasonCode, 0x87);
    const w = await watcher();
    const ok = await connectV5(b.port, id("alice"), { ...pw("alice"), will: will("w/will") });
    assert.equal(ok.connack.reasonCode, 0);
    ok.client.destroy();
    const got = await drainPublishes(w, 500);
    assert.deepEqual(got.map((p) => p.topic), ["w/will"]);
  });

  it("a shared group passes over a member that may not read the topic", async () => {
    const alice = (await connectV5(b.port, id("alice"), pw("alice"))).client;
    const dave = (await connectV5(b.port, id("dave"), pw("dave"))).client;
    await alice.subscribe("$share/grp/shared/#", { qos: 1 });
    await dave.subscribe("$share/grp/shared/#", { qos: 1 });
    const bob = (await connectV5(b.port, id("bob"), pw("bob"))).client;
    for (let i = 0; i < 6; i++) {
      const topic = i % 2 ? "shared/open/x" : "shared/closed/x";
      bob.sendPacket({ cmd: "publish", topic, payload: Buffer.from(String(i)), qos: 1, messageId: i + 1, retain: false, dup: false });
      await bob.expectPacket("puback");
    }
    const [a, d] = await Promise.all([drainPublishes(alice, 400), drainPublishes(dave, 400)]);
    assert.equal(a.length + d.length, 6, "every message reached one member");
    assert.ok(d.every((p) => p.topic === "shared/open/x"), `dave got ${d.map((p) => p.topic)}`);
    assert.ok(a.filter((p) => p.topic === "shared/closed/x").length === 3);
  });
});

describe("`$`-topics without any ACL file", () => {
  let b: TestBroker;
  before(async () => {
    b = await startBroker();
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  it("a client may not publish to $SYS/...: 5.0 PUBACK 0x87, and no subscriber of $SYS/# gets it", async () => {
    const sub = (await connectV5(b.port, "sys-sub")).client;
    await sub.subscribe("$SYS/#", { qos: 0 });
    const { client } = await connectV5(b.port, "sys-pub");
    client.sendPacket({ cmd: "publish", topic: "$SYS/broker/clients", payload: Buffer.from("fake"), qos: 1, messageId: 1, retain: false, dup: false });
    assert.equal((await client.expectPacket("puback")).reasonCode, 0x87);
    assert.deepEqual((await drainPublishes(sub, 200)).filter((p) => payloadText(p) === "fake"), []);
  });
});
