/**
 * Authentication and ACL in a cluster: every node reads the same password and ACL files (the
 * documented way to run it), so a client gets the same answers on any node, a message published
 * on one node reaches a subscriber on another only where the ACL lets it read, and a persistent
 * session keeps its user's rules when it moves to another node.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fs from "node:fs";
import path from "node:path";
import { mosquittoPasswd } from "../helpers/auth.ts";
import { startCluster, type TestCluster } from "../helpers/cluster.ts";
import { connectV4, connectV5, drainPublishes, RawClient } from "../helpers/raw-client.ts";
import { makeTempDir, removeDir } from "../helpers/system.ts";

const SLOW = { timeout: 90_000 };

describe("cluster: the same files on every node", SLOW, () => {
  let dir = "";
  let cl: TestCluster;
  const alice = { username: "alice", password: Buffer.from("apw") };
  const bob = { username: "bob", password: Buffer.from("bpw") };
  before(async () => {
    dir = makeTempDir();
    const pw = path.join(dir, "passwd");
    await mosquittoPasswd(pw, "alice", "apw");
    await mosquittoPasswd(pw, "bob", "bpw");
    const acl = path.join(dir, "acl");
    fs.writeFileSync(acl, "user alice\ntopic read a/#\nuser bob\ntopic readwrite #\n");
    cl = await startCluster(2, {
      args: ["--password-file", pw, "--acl-file", acl, "--allow-anonymous", "false", "--auth-failure-delay-ms", "50"],
    });
  });
  after(async () => {
    RawClient.destroyAll();
    await cl?.close();
    removeDir(dir);
  });

  it("a failed login gets the same answer on every node", async () => {
    for (const port of cl.via) {
      assert.equal((await connectV5(port, "x", { username: "alice", password: Buffer.from("no") })).connack.reasonCode, 0x86);
      assert.equal((await connectV4(port, "y")).connack.returnCode, 5);
    }
  });

  it("published on one node, delivered on another only where the ACL lets the subscriber read", async () => {
    const sub = (await connectV5(cl.via[0], "c-alice", alice)).client;
    await sub.subscribe("#", { qos: 1 });
    const pub = (await connectV5(cl.via[1], "c-bob", bob)).client;
    for (const t of ["a/1", "b/1", "a/2"]) {
      pub.sendPacket({ cmd: "publish", topic: t, payload: Buffer.from(t), qos: 1, messageId: pub.nextMessageId(), retain: false, dup: false });
      await pub.expectPacket("puback");
    }
    assert.deepEqual((await drainPublishes(sub, 500)).map((p) => p.topic), ["a/1", "a/2"]);
    sub.destroy();
    pub.destroy();
  });

  it("a persistent session keeps its user's rules when it moves to another node", async () => {
    const first = await connectV4(cl.via[0], "roaming", { ...alice, clean: false });
    await first.client.subscribe("#", { qos: 1 });
    first.client.disconnect();
    await first.client.waitClose();
    const pub = (await connectV5(cl.via[1], "c-bob2", bob)).client;
    for (const t of ["a/offline", "b/offline"]) {
      pub.sendPacket({ cmd: "publish", topic: t, payload: Buffer.from(t), qos: 1, messageId: pub.nextMessageId(), retain: false, dup: false });
      await pub.expectPacket("puback");
    }
    const back = await connectV4(cl.via[1], "roaming", { ...alice, clean: false });
    assert.equal(back.connack.sessionPresent, true);
    assert.deepEqual((await drainPublishes(back.client, 500)).map((p) => p.topic), ["a/offline"]);
    // and on its new node the session still may not publish what alice may not write
    back.client.sendPacket({ cmd: "publish", topic: "a/x", payload: Buffer.from("m"), qos: 1, messageId: 9, retain: false, dup: false });
    await back.client.expectPacket("puback"); // 3.1.1: acknowledged...
    const watch = (await connectV5(cl.via[0], "c-bob3", bob)).client;
    await watch.subscribe("a/#", { qos: 1 });
    back.client.sendPacket({ cmd: "publish", topic: "a/y", payload: Buffer.from("m"), qos: 1, messageId: 10, retain: false, dup: false });
    await back.client.expectPacket("puback");
    assert.deepEqual(await drainPublishes(watch, 300), [], "...and dropped");
  });
});
