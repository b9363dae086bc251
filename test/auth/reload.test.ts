/**
 * Files reloaded (SIGHUP) take effect for sessions that already exist: deliveries of a live
 * subscription and of messages already queued follow the new ACL, a will follows the rules of
 * the moment it is due, a user whose password entry changed or went is disconnected (MQTT 5
 * DISCONNECT 0x87); a file that does not parse leaves the old rules in force. Then the same
 * through the real process and a real SIGHUP.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fs from "node:fs";
import path from "node:path";
import { mosquittoPasswd, startSecureBroker, type SecureBroker } from "../helpers/auth.ts";
import { connectV4, connectV5, drainPublishes, RawClient } from "../helpers/raw-client.ts";
import { startBrokerProcess } from "../helpers/broker-process.ts";
import { makeTempDir, mosquittoPub, mosquittoSub, removeDir } from "../helpers/system.ts";

const SLOW = { timeout: 60_000 };

const pub = (c: RawClient, topic: string, qos: 0 | 1 = 1, payload = "m") =>
  c.sendPacket({ cmd: "publish", topic, payload: Buffer.from(payload), qos, messageId: qos ? c.nextMessageId() : undefined, retain: false, dup: false });

describe("reload: changed files apply to existing sessions", SLOW, () => {
  let b: SecureBroker;
  const acl1 = "user alice\ntopic read a/#\ntopic read b/#\ntopic write w/#\nuser root\ntopic readwrite #\n";
  before(async () => {
    b = await startSecureBroker({ users: { alice: "apw", root: "rpw", carol: "cpw" }, acl: acl1 });
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });
  const alice = { username: "alice", password: Buffer.from("apw") };
  const root = { username: "root", password: Buffer.from("rpw") };

  it("a live '#' subscription follows the new ACL; so do publishes and queued messages", async () => {
    fs.writeFileSync(b.aclFile, acl1);
    await b.security.reload();
    const sub = (await connectV5(b.port, "live-sub", alice)).client;
    await sub.subscribe("#", { qos: 1 });
    // a persistent session, offline, with queued messages on a topic about to be revoked
    const off = await connectV4(b.port, "offline-sub", { ...alice, clean: false });
    await off.client.subscribe("b/#", { qos: 1 });
    off.client.destroy();
    await off.client.waitClose();
    const r = (await connectV5(b.port, "root-pub", root)).client;
    for (const t of ["a/1", "b/1"]) {
      pub(r, t);
      await r.expectPacket("puback");
    }
    assert.deepEqual((await drainPublishes(sub, 200)).map((p) => p.topic), ["a/1", "b/1"]);
    fs.writeFileSync(b.aclFile, "user alice\ntopic read a/#\ntopic read c/#\nuser root\ntopic readwrite #\n");
    await b.security.reload();
    for (const t of ["a/2", "b/2", "c/2"]) {
      pub(r, t);
      await r.expectPacket("puback");
    }
    assert.deepEqual((await drainPublishes(sub, 300)).map((p) => p.topic), ["a/2", "c/2"]);
    // alice may no longer write w/#
    pub(sub, "w/x");
    assert.equal((await sub.expectPacket("puback")).reasonCode, 0x87);
    // the offline session: b/1 and b/2 were queued; b/ is no longer readable when it comes back
    const back = await connectV4(b.port, "offline-sub", { ...alice, clean: false });
    assert.equal(back.connack.sessionPresent, true);
    assert.deepEqual(await drainPublishes(back.client, 300), []);
  });

  it("a will follows the rules in force when it is due", async () => {
    fs.writeFileSync(b.aclFile, acl1);
    await b.security.reload();
    const watcher = (await connectV5(b.port, "will-watch", root)).client;
    await watcher.subscribe("w/#", { qos: 0 });
    const c = await connectV5(b.port, "will-owner", { ...alice, will: { topic: "w/will", payload: Buffer.from("x"), qos: 0, retain: false } });
    assert.equal(c.connack.reasonCode, 0);
    fs.writeFileSync(b.aclFile, "user alice\ntopic read a/#\nuser root\ntopic readwrite #\n");
    await b.security.reload();
    c.client.destroy();
    assert.deepEqual(await drainPublishes(watcher, 400), []);
  });

  it("a user whose password changed or was removed is disconnected (5.0: 0x87); others stay", async () => {
    const a = (await connectV5(b.port, "pw-a", alice)).client;
    const c = (await connectV4(b.port, "pw-c", { username: "carol", password: Buffer.from("cpw") })).client;
    const r = (await connectV5(b.port, "pw-r", root)).client;
    await mosquittoPasswd(b.passwordFile, "alice", "new password");
    fs.writeFileSync(b.passwordFile, fs.readFileSync(b.passwordFile, "utf8").split("\n").filter((l) => !l.startsWith("carol:")).join("\n"));
    await b.security.reload();
    assert.equal((await a.expectPacket("disconnect")).reasonCode, 0x87);
    await a.waitClose();
    await c.waitClose(); // 3.1.1: closed
    r.sendPacket({ cmd: "pingreq" });
    await r.expectPacket("pingresp");
    assert.equal((await connectV5(b.port, "pw-a2", { username: "alice", password: Buffer.from("new password") })).connack.reasonCode, 0);
  });

  it("a file that does not parse: the reload fails, the previous rules stay", async () => {
    fs.writeFileSync(b.aclFile, acl1);
    await b.security.reload();
    fs.writeFileSync(b.aclFile, "user alice\ntopic sometimes a/#\n");
    await assert.rejects(b.security.reload(), /invalid --acl-file .*line 2: invalid access "sometimes"/);
    const c = (await connectV5(b.port, "after-bad", { username: "alice", password: Buffer.from("new password") })).client;
    assert.deepEqual((await c.subscribe("b/#", { qos: 0 })).granted, [0]);
  });
});

describe("SIGHUP reloads the files of the running process", SLOW, () => {
  let dir = "";
  before(() => {
    dir = makeTempDir();
  });
  after(() => removeDir(dir));

  it("a revoked topic stops reaching an existing subscriber; a bad file is reported and changes nothing", async () => {
    const pw = path.join(dir, "passwd");
    const acl = path.join(dir, "acl");
    await mosquittoPasswd(pw, "u", "p");
    fs.writeFileSync(acl, "user u\ntopic readwrite x/#\ntopic readwrite y/#\n");
    const b = await startBrokerProcess(["--password-file", pw, "--acl-file", acl, "--allow-anonymous", "false"]);
    const auth = ["-u", "u", "-P", "p"];
    try {
      const sub = mosquittoSub(b.port, "#", { extraArgs: [...auth, "-i", "hup-sub"], timeoutMs: 15_000 });
      await sub.ready;
      await mosquittoPub(b.port, "y/1", "before", { extraArgs: auth });
      fs.writeFileSync(acl, "user u\ntopic readwrite x/#\n");
      b.proc.signal("SIGHUP");
      await b.proc.waitForLine(/reloaded .*what="password and ACL files"/);
      await mosquittoPub(b.port, "y/2", "after", { extraArgs: auth });
      await mosquittoPub(b.port, "x/1", "still", { extraArgs: auth });
      fs.writeFileSync(acl, "topic wrong wrong\nbroken");
      b.proc.signal("SIGHUP");
      await b.proc.waitForLine(/reload failed, keeping the previous one .*what="password and ACL files".*error="invalid --acl-file/);
      await mosquittoPub(b.port, "x/2", "kept", { extraArgs: auth });
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual((await sub.stop()).map((m) => `${m.topic} ${m.payload}`), ["y/1 before", "x/1 still", "x/2 kept"]);
      assert.equal(b.proc.running, true);
    } finally {
      await b.stop();
    }
  });

  it("files that cannot be used at start: exit with a message naming the option, the file and the fix", async () => {
    const missing = path.join(dir, "nope");
    await assert.rejects(startBrokerProcess(["--password-file", missing]), /cannot read --password-file .*nope.*check the path/);
    const bad = path.join(dir, "bad.acl");
    fs.writeFileSync(bad, "user u\ntopic rw x/#\n");
    await assert.rejects(startBrokerProcess(["--acl-file", bad]), /invalid --acl-file .*bad\.acl: line 2: invalid access "rw".*fix that line/);
  });
});
