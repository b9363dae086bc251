/**
 * Configuration as a new user meets it: a config file written with the flags' spelling
 * ("log-level") works as well as camelCase; --print-config shows every effective value and
 * where it came from (default, file, env, flag, implied), with secrets masked; --redis-url
 * alone means Redis (said in the log), beside --persistence memory it is ignored with a
 * warning; --help wraps instead of breaking its columns and shows each default once.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { helpText, parseCli } from "../../src/cli.ts";
import { rules } from "../../src/config.ts";
import { runCommand, runtime } from "../helpers/system.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const rt = runtime();
const bin = path.join(root, "node_modules/.bin", rt);
const entry = rt === "bun" ? ["run", "src/main.ts"] : ["run", "-A", "src/main.ts"];

const files: Record<string, string> = {
  "/c/flags.json": JSON.stringify({ "log-level": "warn", "max-inflight": 7, "retain-available": false }),
  "/c/camel.json": JSON.stringify({ logLevel: "warn", maxInflight: 7, retainAvailable: false }),
  "/c/both.json": JSON.stringify({ "log-level": "warn", logLevel: "error" }),
  "/c/typo.json": JSON.stringify({ "log-levle": "warn" }),
};
const read = (p: string) => {
  if (!(p in files)) throw new Error(`ENOENT: ${p}`);
  return files[p];
};
function run(argv: string[], env: Record<string, string> = {}) {
  const r = parseCli(argv, env, read);
  if (r.kind !== "run" && r.kind !== "print-config") throw new Error(r.kind);
  return r;
}

describe("config file spelling", () => {
  it("flag spelling and camelCase give the same configuration", () => {
    const a = run(["--config", "/c/flags.json"]).config;
    const b = run(["--config", "/c/camel.json"]).config;
    assert.equal(a.logLevel, "warn");
    assert.equal(a.maxInflight, 7);
    assert.equal(a.retainAvailable, false);
    assert.deepEqual({ ...a, nodeId: "" }, { ...b, nodeId: "" });
  });

  it("one option under both spellings, or a misspelt one, is refused with the file and the key", () => {
    assert.throws(() => run(["--config", "/c/both.json"]), /"logLevel" given twice in \/c\/both\.json \(also as "log-level"\)/);
    assert.throws(() => run(["--config", "/c/typo.json"]), /unknown option "log-levle" in \/c\/typo\.json: keys are the option names of --help/);
  });
});

describe("where each value came from", () => {
  it("default, file, env, flag; a random node id is 'generated'", () => {
    const r = run(["--config", "/c/flags.json", "--port", "2000"], { COLIBRI_MAX_INFLIGHT: "9", COLIBRI_HOST: "127.0.0.1" });
    assert.deepEqual(r.origins.port, { source: "flag", where: "--port" });
    assert.deepEqual(r.origins.maxInflight, { source: "env", where: "COLIBRI_MAX_INFLIGHT" });
    assert.equal(r.config.maxInflight, 9);
    assert.deepEqual(r.origins.logLevel, { source: "file", where: "/c/flags.json" });
    assert.deepEqual(r.origins.maxPacketSize, { source: "default" });
    assert.deepEqual(r.origins.nodeId, { source: "generated" });
    assert.equal(Object.keys(r.origins).length, Object.keys(rules).length);
  });

  it("--redis-url alone means --persistence redis (told at start); with --persistence memory: a warning", () => {
    const r = run(["--redis-url", "redis://127.0.0.1:6390"]);
    assert.equal(r.config.persistence, "redis");
    assert.deepEqual(r.origins.persistence, { source: "implied", where: "--redis-url" });
    assert.deepEqual(r.notes, [{ level: "info", text: "persistence redis, implied by --redis-url" }]);
    const m = run(["--persistence", "memory"], { COLIBRI_REDIS_URL: "redis://h:1" });
    assert.equal(m.config.persistence, "memory");
    assert.equal(m.notes.length, 1);
    assert.equal(m.notes[0].level, "warn");
    assert.match(m.notes[0].text, /COLIBRI_REDIS_URL ignored: persistence is memory \(--persistence\)/);
    assert.deepEqual(run([]).notes, []);
  });

  it("--print-config prints every option with its value and source, password masked, and exits 0", { timeout: 30_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "colibri-cfg-"));
    const file = path.join(dir, "colibri.json");
    fs.writeFileSync(file, JSON.stringify({ "log-level": "warn", "redis-url": "redis://app:hunter2@10.0.0.5:6379/1" }));
    try {
      const r = await runCommand(bin, [...entry, "--config", file, "--port", "1999", "--print-config"], {
        cwd: root, env: { ...process.env, COLIBRI_MAX_INFLIGHT: "17", NO_COLOR: "1" }, timeoutMs: 20_000,
      });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, "", "nothing started, nothing logged");
      const rows = new Map(r.stdout.trim().split("\n").slice(1).map((l) => {
        const m = /^(--\S+)\s+(\S+)\s+(.+)$/.exec(l);
        assert.ok(m, `row ${JSON.stringify(l)}`);
        return [m[1], [m[2], m[3]]] as const;
      }));
      assert.equal(rows.size, Object.keys(rules).length);
      assert.deepEqual(rows.get("--port"), ["1999", "flag --port"]);
      assert.deepEqual(rows.get("--max-inflight"), ["17", "env COLIBRI_MAX_INFLIGHT"]);
      assert.deepEqual(rows.get("--log-level"), ["warn", `file ${file}`]);
      assert.deepEqual(rows.get("--redis-url"), ["redis://app:***@10.0.0.5:6379/1", `file ${file}`]);
      assert.deepEqual(rows.get("--persistence"), ["redis", "implied by --redis-url"]);
      assert.deepEqual(rows.get("--host"), ["0.0.0.0", "default"]);
      assert.equal(rows.get("--node-id")![1], "generated (no --node-id)");
      assert.doesNotMatch(r.stdout, /hunter2/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("--help layout", () => {
  const text = helpText();
  it("no line longer than 100 characters; every option once, its default once", () => {
    for (const l of text.split("\n")) assert.ok(l.length <= 100, `too long: ${l}`);
    // one block per option: its flag line and the lines indented under it
    const blocks = text.split("\n").reduce<string[]>((acc, l) => {
      if (/^ {2}--/.test(l)) acc.push(l);
      else if (/^ {30,}\S/.test(l) && acc.length) acc[acc.length - 1] += " " + l.trim();
      return acc;
    }, []);
    for (const key of Object.keys(rules)) {
      const flag = "--" + key.replace(/QoS/g, "Qos").replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
      const mine = blocks.filter((b) => b.startsWith(`  ${flag} `));
      assert.equal(mine.length, 1, `${flag} listed ${mine.length} times`);
      assert.equal(mine[0].match(/\(default:/g)?.length, 1, `${flag}: ${mine[0]}`);
    }
    const node = blocks.find((b) => b.startsWith("  --node-id "))!;
    assert.match(node, /\(default: random\)$/);
    assert.doesNotMatch(node, /none/);
  });

  it("a flag too long for the first column gets a line of its own; descriptions start in one column", () => {
    const lines = text.split("\n");
    const i = lines.findIndex((l) => l.startsWith("  --subscription-identifiers-available "));
    assert.equal(lines[i].trim(), "--subscription-identifiers-available [true|false]");
    assert.match(lines[i + 1], /^ {34}accept subscription identifiers/);
    const firstLines = lines.filter((l) => /^ {2}--\S+ \S+ +\S/.test(l));
    assert.ok(firstLines.length > 20);
    for (const l of firstLines) assert.equal(/^ {2}--\S+ \S+ +(?=\S)/.exec(l)![0].length, 34, l);
    assert.match(text, /"log-level"/, "the config file format is explained");
  });
});
