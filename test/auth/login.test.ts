/**
 * Logging in with a Mosquitto password file: mosquitto_pub / mosquitto_sub with -u / -P against
 * files written by the real mosquitto_passwd; refusals with the right code for each protocol
 * version, the same for an unknown user as for a wrong password, after the failure delay;
 * anonymous access on and off; and colibri passwd's files accepted by a real Mosquitto.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fs from "node:fs";
import path from "node:path";
import { colibriPasswd, startSecureBroker, type SecureBroker } from "../helpers/auth.ts";
import { connectV3, connectV4, connectV5, RawClient } from "../helpers/raw-client.ts";
import { makeTempDir, mosquittoPub, mosquittoSub, removeDir, startMosquitto } from "../helpers/system.ts";
import { FileSecurity } from "../../src/auth/file-security.ts";
import { startBroker } from "../helpers/broker.ts";

const SLOW = { timeout: 60_000 };


describe("login with a mosquitto_passwd file", SLOW, () => {
  let b: SecureBroker;
  before(async () => {
    b = await startSecureBroker({ users: { alice: "secret", bob: "b0b pw" }, config: { authFailureDelayMs: 300 } });
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  it("mosquitto_sub and mosquitto_pub with -u / -P: connected, message through", async () => {
    const sub = mosquittoSub(b.port, "t/login", { count: 1, extraArgs: ["-u", "alice", "-P", "secret"] });
    await sub.ready;
    await mosquittoPub(b.port, "t/login", "hello", { extraArgs: ["-u", "bob", "-P", "b0b pw"], v5: true });
    assert.deepEqual((await sub).map((m) => m.payload), ["hello"]);
  });

  it("a wrong password: mosquitto_pub is refused", async () => {
    await assert.rejects(
      mosquittoPub(b.port, "t/x", "m", { extraArgs: ["-u", "alice", "-P", "wrong"] }),
      /refused|not authori[sz]ed|bad user/i,
    );
  });

  for (const [name, connect, code] of [
    ["5.0: CONNACK 0x86 Bad user name or password", connectV5, 0x86],
    ["3.1.1: CONNACK 0x04 bad user name or password", connectV4, 4],
    ["3.1: CONNACK 0x04", connectV3, 4],
  ] as const) {
    it(`${name}, the same for an unknown user as for a wrong password`, async () => {
      const wrong = await connect(b.port, "w1", { username: "alice", password: Buffer.from("nope") });
      const unknown = await connect(b.port, "w2", { username: "mallory", password: Buffer.from("secret") });
      const none = await connect(b.port, "w3", { username: "alice" });
      for (const r of [wrong, unknown, none]) {
        const rc = r.connack.reasonCode ?? r.connack.returnCode;
        assert.equal(rc, code);
        assert.equal(r.connack.sessionPresent, false);
        await r.client.waitClose();
      }
    });
  }

  it("a failed login is answered only after --auth-failure-delay-ms", async () => {
    const t0 = Date.now();
    const r = await connectV5(b.port, "slow", { username: "alice", password: Buffer.from("x") });
    assert.equal(r.connack.reasonCode, 0x86);
    assert.ok(Date.now() - t0 >= 280, `answered after ${Date.now() - t0} ms`);
  });

  it("anonymous clients may connect by default, user names and passwords are still checked", async () => {
    const r = await connectV4(b.port, "anon");
    assert.equal(r.connack.returnCode, 0);
    r.client.destroy();
  });
});

describe("--allow-anonymous false", SLOW, () => {
  let b: SecureBroker;
  before(async () => {
    b = await startSecureBroker({ users: { alice: "secret" }, allowAnonymous: false });
  });
  after(async () => {
    RawClient.destroyAll();
    await b.close();
  });

  it("a client without a user name: 5.0 CONNACK 0x87 Not authorized, 3.1.1 0x05; a user still connects", async () => {
    const v5 = await connectV5(b.port, "a5");
    assert.equal(v5.connack.reasonCode, 0x87);
    const v4 = await connectV4(b.port, "a4");
    assert.equal(v4.connack.returnCode, 5);
    await assert.rejects(mosquittoPub(b.port, "t", "m"), /refused|not authori[sz]ed/i);
    await mosquittoPub(b.port, "t", "m", { extraArgs: ["-u", "alice", "-P", "secret"] });
  });

  it("a listener of its own may allow anonymous clients (?allow-anonymous=true), the others still refuse them", async () => {
    const security = await FileSecurity.load({ allowAnonymous: false });
    const nb = await startBroker({
      authFailureDelayMs: 0, allowAnonymous: false, listen: ["mqtt://127.0.0.1:0", "mqtt://127.0.0.1:0?allow-anonymous=true"],
    }, { security });
    try {
      const [locked, open] = [nb.listeners[0].listener.port, nb.listeners[1].listener.port];
      assert.equal((await connectV5(locked, "anon-l")).connack.reasonCode, 0x87);
      assert.equal((await connectV5(open, "anon-o")).connack.reasonCode, 0);
    } finally {
      RawClient.destroyAll();
      await nb.close();
    }
  });

  it("without a password file nobody gets in", async () => {
    const security = await FileSecurity.load({ allowAnonymous: false });
    const nb = await startBroker({ authFailureDelayMs: 0, allowAnonymous: false }, { security });
    try {
      assert.equal((await connectV5(nb.port, "x", { username: "alice", password: Buffer.from("secret") })).connack.reasonCode, 0x86);
      assert.equal((await connectV5(nb.port, "y")).connack.reasonCode, 0x87);
    } finally {
      RawClient.destroyAll();
      await nb.close();
    }
  });
});

describe("colibri passwd: files Mosquitto and Colibri both accept", SLOW, () => {
  let dir = "";
  let file = "";
  before(async () => {
    dir = makeTempDir();
    file = path.join(dir, "passwd");
    const a = await colibriPasswd(["-c", "-b", file, "alice", "s3cret"]);
    assert.equal(a.code, 0, a.stderr);
    const b = await colibriPasswd([file, "bob"], "pw of bob\n");
    assert.equal(b.code, 0, b.stderr);
    fs.chmodSync(dir, 0o755); // Mosquitto started as root reads it as user "mosquitto"
    fs.chmodSync(file, 0o644);
  });
  after(() => removeDir(dir));

  it("writes a $7$ line and a SCRAM line per user", () => {
    const lines = fs.readFileSync(file, "utf8").trim().split("\n");
    assert.equal(lines.length, 4);
    assert.match(lines[0], /^alice:\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$/);
    assert.match(lines[1], /^alice:\$scram-sha-256\$4096\$/);
    assert.match(lines[2], /^bob:\$7\$/);
  });

  it("a private Mosquitto logs in its users (and refuses a wrong password)", async () => {
    const m = await startMosquitto({ extraConfig: [`password_file ${file}`, "allow_anonymous false"] });
    try {
      const sub = mosquittoSub(m.port, "p/q", { count: 1, extraArgs: ["-u", "alice", "-P", "s3cret"] });
      await sub.ready;
      await mosquittoPub(m.port, "p/q", "via mosquitto", { extraArgs: ["-u", "bob", "-P", "pw of bob"] });
      assert.deepEqual((await sub).map((x) => x.payload), ["via mosquitto"]);
      await assert.rejects(mosquittoPub(m.port, "p/q", "x", { extraArgs: ["-u", "alice", "-P", "wrong"] }), /refused|not authori[sz]ed/i);
    } finally {
      await m.stop();
    }
  });

  it("Colibri logs them in from the same file; -D deletes a user", async () => {
    const security = await FileSecurity.load({ allowAnonymous: false, passwordFile: file });
    const b = await startBroker({ authFailureDelayMs: 0, allowAnonymous: false }, { security });
    try {
      await mosquittoPub(b.port, "p/q", "x", { extraArgs: ["-u", "bob", "-P", "pw of bob"] });
      const d = await colibriPasswd(["-D", file, "bob"]);
      assert.equal(d.code, 0, d.stderr);
      await security.reload();
      await assert.rejects(mosquittoPub(b.port, "p/q", "x", { extraArgs: ["-u", "bob", "-P", "pw of bob"] }), /refused|bad user/i);
      await mosquittoPub(b.port, "p/q", "x", { extraArgs: ["-u", "alice", "-P", "s3cret"] });
    } finally {
      await b.close();
    }
  });

  it("bad use names the problem", async () => {
    const r = await colibriPasswd(["-b", path.join(dir, "missing"), "u", "p"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /cannot read .*missing.*use -c to create/);
    const c = await colibriPasswd(["-c", "-b", path.join(dir, "x"), "a:b", "p"]);
    assert.match(c.stderr, /invalid user name "a:b"/);
  });
});
