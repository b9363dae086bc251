/**
 * Mosquitto ACL files: parsing (with Mosquitto's quirks) and the check order (the client's
 * rules, deny first; then patterns with %c / %u, deny first; wildcard names refused; `$` rule),
 * and the SUBSCRIBE check (refused only when nothing under the filter is readable).
 * The same file against a real Mosquitto: test/auth/acl-mosquitto.test.ts.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { AclFileError, DENY, parseAclFile, READ, WRITE } from "../../src/auth/acl-file.ts";
import { covers, FileAcl, intersect } from "../../src/auth/acl.ts";

const acl = (text: string) => new FileAcl(parseAclFile(text));

describe("ACL file parsing", () => {
  it("anonymous section, users (a user twice collects both), patterns; access words; no word = readwrite", () => {
    const f = parseAclFile([
      "# comment", "topic read public/#", "topic pub/#", "", "user alice", "topic write a/#",
      "pattern read p/%c", "user bob", "topic deny x", "user alice", "topic read b/#", "  user  spaced name ",
      "topic read  with space/x",
    ].join("\n"));
    assert.deepEqual(f.anonymous, [{ topic: "public/#", access: READ }, { topic: "pub/#", access: READ | WRITE }]);
    assert.deepEqual(f.users.get("alice"), [{ topic: "a/#", access: WRITE }, { topic: "b/#", access: READ }]);
    assert.deepEqual(f.users.get("bob"), [{ topic: "x", access: DENY }]);
    assert.deepEqual(f.users.get("spaced name"), [{ topic: "with space/x", access: READ }]);
    assert.deepEqual(f.patterns, [{ topic: "p/%c", access: READ }]);
  });

  it("deny rules go before the others of their list, whatever their place in the file", () => {
    const f = parseAclFile("topic read a/#\ntopic deny a/b\npattern read %c/#\npattern deny %c/x\n");
    assert.deepEqual(f.anonymous.map((r) => r.access), [DENY, READ]);
    assert.deepEqual(f.patterns.map((r) => r.access), [DENY, READ]);
  });

  it("Mosquitto's quirks: `topic read` grants readwrite on \"read\"; unknown keywords skipped with a warning", () => {
    const f = parseAclFile("topic read\nfoo bar\n\ttopic x\n");
    assert.deepEqual(f.anonymous, [{ topic: "read", access: READ | WRITE }]);
    assert.equal(f.warnings.length, 2);
    assert.match(f.warnings[0], /line 2: unknown keyword "foo"/);
  });

  it("errors name the line: bad access word, invalid filter, user without a name", () => {
    assert.throws(() => parseAclFile("topic rw a/b\n"), (e) => e instanceof AclFileError && /line 1: invalid access "rw"/.test(e.message));
    assert.throws(() => parseAclFile("\ntopic read a/#/b\n"), /line 2: invalid topic "a\/#\/b"/);
    assert.throws(() => parseAclFile("user\n"), /line 1: "user" without a user name/);
  });
});

describe("ACL check order (Mosquitto 2.0)", () => {
  const rules = acl([
    "topic read public/#",
    "topic deny public/secret",
    "user alice",
    "topic readwrite alice/#",
    "topic read sensors/#",
    "topic deny sensors/private/#",
    "topic write cmd/#",
    "pattern readwrite clients/%c/#",
    "pattern read users/%u/inbox",
    "pattern deny clients/%c/locked",
    "pattern read pre%c",
  ].join("\n"));

  it("anonymous clients get the anonymous section (deny first) and patterns without %u", () => {
    const p = rules.permissions({ clientId: "dev1" });
    assert.equal(p.canRead("public/news"), true);
    assert.equal(p.canRead("public/secret"), false);
    assert.equal(p.canPublish("public/news"), false);
    assert.equal(p.canRead("clients/dev1/x"), true);
    assert.equal(p.canPublish("clients/dev1/x"), true);
    assert.equal(p.canRead("clients/dev1/locked"), false);
    assert.equal(p.canRead("clients/dev2/x"), false);
    assert.equal(p.canRead("users/undefined/inbox"), false);
    assert.equal(p.canRead("predev1"), true, "%c is substituted inside a level too (text substitution)");
  });

  it("a user gets its own section, not the anonymous one; read/write rules decide only for their access", () => {
    const p = rules.permissions({ clientId: "c1", username: "alice" });
    assert.equal(p.canRead("public/news"), false);
    assert.equal(p.canRead("alice/x/y"), true);
    assert.equal(p.canPublish("alice/x"), true);
    assert.equal(p.canRead("sensors/t"), true);
    assert.equal(p.canPublish("sensors/t"), false);
    assert.equal(p.canRead("sensors/private/t"), false);
    assert.equal(p.canPublish("cmd/go"), true);
    assert.equal(p.canRead("cmd/go"), false);
    assert.equal(p.canRead("users/alice/inbox"), true);
    assert.equal(p.canRead("users/bob/inbox"), false);
  });

  it("a user without a section gets the patterns only; the user's allow rules come before pattern denies", () => {
    const p = rules.permissions({ clientId: "c2", username: "nobody" });
    assert.equal(p.canRead("alice/x"), false);
    assert.equal(p.canRead("clients/c2/y"), true);
    const q = acl("user u\ntopic read clients/#\npattern deny clients/%c/#\n").permissions({ clientId: "k", username: "u" });
    assert.equal(q.canRead("clients/k/a"), true);
  });

  it("a client id or user name with '+' or '#' loses the patterns (not its own rules)", () => {
    const p = rules.permissions({ clientId: "c+", username: "alice" });
    assert.equal(p.canRead("clients/c+/x"), false);
    assert.equal(p.canRead("alice/x"), true);
    assert.equal(rules.permissions({ clientId: "#" }).canRead("clients/#/x"), false);
  });

  it("`$`-topics only match rules that start with `$`", () => {
    const p = acl("topic read #\ntopic read $SYS/broker/#\n").permissions({ clientId: "x" });
    assert.equal(p.canRead("$SYS/broker/load"), true);
    assert.equal(p.canRead("$SYS/other"), false);
    assert.equal(p.canRead("a/b"), true);
  });

  it("no rules at all for the client: nothing allowed", () => {
    const p = acl("user bob\ntopic read #\n").permissions({ clientId: "x", username: "alice" });
    assert.equal(p.canRead("a"), false);
    assert.equal(p.canPublish("a"), false);
    assert.equal(p.canSubscribe("#"), false);
  });
});

describe("ACL: SUBSCRIBE is refused only when nothing under the filter is readable", () => {
  const rules = acl("user alice\ntopic read sensors/#\ntopic deny sensors/private/#\ntopic write cmd/#\npattern read clients/%c/#\n");
  const p = rules.permissions({ clientId: "c1", username: "alice" });

  it("overlapping filters are granted (delivery is filtered), disjoint or write-only ones refused", () => {
    assert.equal(p.canSubscribe("#"), true);
    assert.equal(p.canSubscribe("sensors/+"), true);
    assert.equal(p.canSubscribe("+/t"), true);
    assert.equal(p.canSubscribe("clients/c1/x"), true);
    assert.equal(p.canSubscribe("clients/c2/x"), false);
    assert.equal(p.canSubscribe("cmd/#"), false);
    assert.equal(p.canSubscribe("other/#"), false);
  });

  it("a filter wholly inside an earlier deny rule is refused; one reaching beyond it is not", () => {
    assert.equal(p.canSubscribe("sensors/private/#"), false);
    assert.equal(p.canSubscribe("sensors/private/x"), false);
    assert.equal(p.canSubscribe("sensors/+/x"), true);
  });

  it("filter algebra: intersect and covers (the `$` rule, '#' matching the parent level)", () => {
    const s = (t: string) => t.split("/");
    const i = (a: string, b: string) => intersect(s(a), s(b))?.join("/");
    assert.equal(i("a/#", "+/b"), "a/b");
    assert.equal(i("a/+", "a/b/#"), "a/b");
    assert.equal(i("a", "a/#"), "a");
    assert.equal(i("a/b", "a/c"), undefined);
    assert.equal(i("#", "$SYS/#"), undefined);
    assert.equal(i("$SYS/#", "$SYS/+"), "$SYS/+");
    assert.equal(covers(s("a/#"), s("a/+/c")), true);
    assert.equal(covers(s("a/+"), s("a/#")), false);
    assert.equal(covers(s("+/x"), s("$S/x")), false);
    assert.equal(covers(s("a/+/#"), s("a/#")), false);
  });
});
