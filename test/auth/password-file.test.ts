/**
 * Password files: the real mosquitto_passwd's output ($7$ and -H sha512 $6$) read as-is, the
 * SCRAM lines colibri passwd adds, verification (right, wrong, unknown user), skipped lines.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { hashPbkdf2, hashScram, parseHash, parsePasswordFile, verifyPassword } from "../../src/auth/password-file.ts";
import { updateLines } from "../../src/cli/passwd.ts";
import { mosquittoPasswd } from "../helpers/auth.ts";
import { makeTempDir, removeDir } from "../helpers/system.ts";

const te = new TextEncoder();

describe("password file: mosquitto_passwd output read as-is", () => {
  let dir = "";
  let text = "";
  before(async () => {
    dir = makeTempDir();
    const file = path.join(dir, "pw");
    await mosquittoPasswd(file, "alice", "secret");
    await mosquittoPasswd(file, "bob", "p:w d é");
    await mosquittoPasswd(file, "carol", "hunter2", { sha512: true });
    text = fs.readFileSync(file, "utf8");
  });
  after(() => removeDir(dir));

  it("$7$ (PBKDF2-SHA512, mosquitto_passwd's default) and $6$ (SHA512) lines verify their passwords", async () => {
    const f = parsePasswordFile(text);
    assert.deepEqual(f.warnings, []);
    assert.match(text, /^alice:\$7\$101\$/m);
    assert.match(text, /^carol:\$6\$/m);
    assert.equal(f.users.get("alice")!.password!.kind, "pbkdf2-sha512");
    assert.equal(f.users.get("carol")!.password!.kind, "sha512");
    assert.equal(await verifyPassword(f.users.get("alice"), te.encode("secret")), true);
    assert.equal(await verifyPassword(f.users.get("bob"), te.encode("p:w d é")), true);
    assert.equal(await verifyPassword(f.users.get("carol"), te.encode("hunter2")), true);
  });

  it("a wrong password, no password and an unknown user all fail", async () => {
    const f = parsePasswordFile(text);
    assert.equal(await verifyPassword(f.users.get("alice"), te.encode("Secret")), false);
    assert.equal(await verifyPassword(f.users.get("alice"), te.encode("")), false);
    assert.equal(await verifyPassword(f.users.get("alice"), undefined), false);
    assert.equal(await verifyPassword(f.users.get("carol"), te.encode("hunter3")), false);
    assert.equal(await verifyPassword(undefined, te.encode("secret")), false);
  });
});

describe("password file: SCRAM lines and lines left out", () => {
  it("a $scram-sha-256$ line alone verifies the password too; both lines of one user are one entry", async () => {
    const text = `dave:${await hashPbkdf2("pw1")}\ndave:${await hashScram("pw1")}\nerin:${await hashScram("pw2")}\n`;
    const f = parsePasswordFile(text);
    assert.deepEqual(f.warnings, []);
    const dave = f.users.get("dave")!;
    assert.ok(dave.password && dave.scram);
    assert.equal(await verifyPassword(f.users.get("erin"), te.encode("pw2")), true);
    assert.equal(await verifyPassword(f.users.get("erin"), te.encode("pw1")), false);
    const s = parseHash((await hashScram("x", 4096)).slice(0));
    assert.ok(typeof s !== "string" && !("kind" in s) && s.iterations === 4096 && s.storedKey.length === 32);
  });

  it("comments, blank lines, plain-text passwords and unknown hash types: skipped with a warning naming the line", () => {
    const f = parsePasswordFile("# comment\n\nplain:secret\nodd:$5$abc$def\nnocolon\nok:$6$c2FsdA==$aGFzaA==\r\n");
    assert.deepEqual([...f.users.keys()], ["ok"]);
    assert.equal(f.warnings.length, 3);
    assert.match(f.warnings[0], /^line 3: user "plain": not a hashed password/);
    assert.match(f.warnings[1], /^line 4: user "odd": unknown hash type \$5\$/);
    assert.match(f.warnings[2], /^line 5: no "username:hash"/);
  });

  it("colibri passwd's update keeps other users and comments, replaces a user's lines in place, deletes", () => {
    const before = "# users\nalice:$7$old\nalice:$scram-sha-256$old\nbob:$7$b\n";
    assert.equal(updateLines(before, "alice", ["alice:NEW1", "alice:NEW2"]), "# users\nalice:NEW1\nalice:NEW2\nbob:$7$b\n");
    assert.equal(updateLines(before, "carol", ["carol:C"]), before + "carol:C\n");
    assert.equal(updateLines(before, "alice", undefined), "# users\nbob:$7$b\n");
    assert.throws(() => updateLines(before, "zed", undefined), /not in the password file/);
  });
});
