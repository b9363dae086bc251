/**
 * The Dockerfile and deploy/compose.yaml cannot be built or run here (no Docker engine), so
 * they are checked against what does run: each node's command in the compose file goes through
 * the real option parser and must give the configuration scripts/cluster-up.sh gives that node
 * (COLIBRI_CLUSTER_DRY_RUN=1 prints its commands and HAProxy configuration), HAProxy's backend
 * is the same with its /readyz health check (and `haproxy -c` accepts the file), and the
 * Dockerfile starts the same entry point on Oven's official Bun image with the ports the
 * compose file uses.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseCli } from "../../src/cli.ts";
import type { Config } from "../../src/config.ts";
import { ensureBinary, runCommand } from "../helpers/system.ts";
import { parseYamlSubset, type Yaml } from "../helpers/yaml-subset.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const read = (p: string) => fs.readFileSync(path.join(root, p), "utf8");

function config(args: string[]): Config {
  const r = parseCli(args, {}, () => {
    throw new Error("no config file expected");
  });
  assert.equal(r.kind, "run");
  return (r as { config: Config }).config;
}

/** Option names given on a command line (`--port 1883` -> "port"). */
const flags = (args: string[]) => args.filter((a) => a.startsWith("--")).map((a) => a.slice(2)).sort();

/** The lines of one section of an HAProxy configuration ("backend all"). */
function section(cfg: string, head: string): string[] {
  const lines = cfg.split("\n").map((l) => l.replace(/#.*$/, "").trimEnd()).filter((l) => l.trim() !== "");
  const i = lines.indexOf(head);
  assert.ok(i >= 0, `no '${head}' section`);
  const out: string[] = [];
  for (const l of lines.slice(i + 1)) {
    if (!l.startsWith(" ")) break;
    out.push(l.trim().replace(/\s+/g, " "));
  }
  return out;
}

/** server lines of a backend: name -> { port, checkPort } */
function servers(lines: string[]): Map<string, { port: number; checkPort: number }> {
  const out = new Map<string, { port: number; checkPort: number }>();
  for (const l of lines.filter((x) => x.startsWith("server "))) {
    const m = /^server (\S+) \S*:(\d+) check port (\d+)\b/.exec(l);
    assert.ok(m, `server line without a health check port: ${l}`);
    out.set(m[1], { port: Number(m[2]), checkPort: Number(m[3]) });
  }
  return out;
}

describe("Dockerfile and deploy/compose.yaml", () => {
  const compose = parseYamlSubset(read("deploy/compose.yaml"));
  const services = compose.services as Record<string, Record<string, Yaml>>;
  const nodes = ["n1", "n2", "n3"];

  it("three nodes on one Redis behind HAProxy, built from the Dockerfile", () => {
    assert.deepEqual(Object.keys(services).sort(), ["haproxy", "n1", "n2", "n3", "redis"]);
    for (const n of nodes) {
      const s = services[n];
      const build = s.build as Record<string, string>;
      assert.ok(fs.existsSync(path.join(root, "deploy", build.context, build.dockerfile)), `${n}: no ${build.dockerfile}`);
      assert.deepEqual(s.depends_on, ["redis"]);
      assert.match(s.stop_grace_period as string, /^\d+s$/);
      // longer than the broker's own bound on SIGTERM, or Docker kills it mid-flush
      const c = config(s.command as string[]);
      assert.ok(Number.parseInt(s.stop_grace_period as string) * 1000 > c.shutdownTimeoutMs);
    }
    assert.deepEqual(services.haproxy.depends_on, nodes);
    assert.ok((services.haproxy.volumes as string[]).some((v) => v.startsWith("./haproxy.cfg:")));
  });

  it("each node's options are those scripts/cluster-up.sh gives it", async () => {
    const env: Record<string, string | undefined> = { ...process.env, COLIBRI_CLUSTER_DRY_RUN: "1", COLIBRI_RUNTIME: "bun" };
    for (const k of Object.keys(env)) if (k.startsWith("COLIBRI_") && k !== "COLIBRI_CLUSTER_DRY_RUN" && k !== "COLIBRI_RUNTIME") delete env[k];
    const dry = await runCommand("bash", ["scripts/cluster-up.sh", "3"], { cwd: root, env });
    assert.equal(dry.code, 0, dry.stderr);
    const parts = dry.stdout.split(/^# /m).filter((p) => p !== "");
    const script = new Map(parts.map((p) => {
      const [title, ...rest] = p.split("\n");
      return [title.trim(), rest.filter((l) => l !== "")] as const;
    }));
    for (const n of nodes) {
      const local = script.get(`node ${n}`)!;
      assert.deepEqual(local.slice(0, 3), ["node_modules/.bin/bun", "run", "src/main.ts"]);
      const here = local.slice(3);
      const there = services[n].command as string[];
      assert.deepEqual(flags(there), flags(here), `${n}: options differ`);
      const [a, b] = [config(here), config(there)];
      for (const k of ["nodeId", "persistence", "redisPrefix", "logFormat", "sysInterval", "drainRate"] as const) {
        assert.equal(b[k], a[k], `${n}: ${k}`);
      }
      // what differs is where things are: container addresses instead of 127.0.0.1
      assert.equal(b.host, "0.0.0.0");
      assert.equal(b.httpHost, "0.0.0.0");
      assert.equal(b.redisUrl, "redis://redis:6379");
      assert.equal(new URL(a.redisUrl).port, "6379");
    }

    // HAProxy: the same balanced backend, each server checked on its node's /readyz
    const localCfg = script.get("haproxy.cfg")!.join("\n") + "\n";
    const composeCfg = read("deploy/haproxy.cfg");
    const [lb1, lb2] = [section(localCfg, "backend all"), section(composeCfg, "backend all")];
    const settings = (l: string[]) => l.filter((x) => !x.startsWith("server "));
    assert.deepEqual(settings(lb2), settings(lb1));
    assert.ok(settings(lb1).includes("option httpchk GET /readyz"));
    const [s1, s2] = [servers(lb1), servers(lb2)];
    assert.deepEqual([...s2.keys()], [...s1.keys()]);
    for (const n of nodes) {
      const c = config(services[n].command as string[]);
      assert.deepEqual(s2.get(n), { port: c.port, checkPort: c.httpPort }, `${n}: HAProxy checks another port than it serves`);
      const l = config(script.get(`node ${n}`)!.slice(3));
      assert.deepEqual(s1.get(n), { port: l.port, checkPort: l.httpPort });
    }
    const bind = /^bind \S*:(\d+)$/.exec(section(composeCfg, "frontend lb").find((l) => l.startsWith("bind "))!)!;
    assert.ok((services.haproxy.ports as string[]).includes(`${bind[1]}:${bind[1]}`), "the balanced port is published");
  });

  it("HAProxy accepts the compose configuration (haproxy -c)", { timeout: 60_000 }, async () => {
    const haproxy = await ensureBinary("haproxy", "haproxy");
    const r = await runCommand(haproxy, ["-c", "-f", path.join(root, "deploy/haproxy.cfg")]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  it("the Dockerfile: Oven's Bun image, the broker's entry point, the ports and health check the compose file uses", () => {
    const df = read("Dockerfile");
    const froms = [...df.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
    assert.ok(froms.length > 0 && froms.every((f) => /^oven\/bun:/.test(f)), froms.join(", "));
    assert.match(df, /^ENTRYPOINT \["bun", "run", "src\/main\.ts"\]$/m);
    for (const m of df.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
      for (const src of m[1].split(" ")) assert.ok(fs.existsSync(path.join(root, src)), `COPY ${src}: not in the repository`);
    }
    const exposed = /^EXPOSE (.+)$/m.exec(df)![1].split(" ").map(Number);
    const health = /HEALTHCHECK[\s\S]*?127\.0\.0\.1:(\d+)\/healthz/.exec(df)!;
    for (const n of nodes) {
      const c = config(services[n].command as string[]);
      assert.ok(exposed.includes(c.port) && exposed.includes(c.httpPort), `EXPOSE ${exposed} lacks ${c.port} or ${c.httpPort}`);
      assert.equal(Number(health[1]), c.httpPort);
    }
    const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(df)![1]) as string[];
    assert.equal(config(cmd).httpPort, Number(health[1]), "the image's default command serves the health check's port");
    assert.match(read("README.md"), /cannot be built on this machine|no Docker engine/);
  });

  it("the subset reader refuses YAML it does not understand", () => {
    for (const bad of ["a:\n  - x\n", "a: &x 1\n", "a: 1\na: 2\n", "a:\n   b: 1\n", "a: |\n  x\n", "a:\tb\n"]) {
      assert.throws(() => parseYamlSubset(bad), Error, JSON.stringify(bad));
    }
    assert.deepEqual(parseYamlSubset('a:\n  b: [x, "y z"]\n  c: { d: e }\n# c\n'), { a: { b: ["x", "y z"], c: { d: "e" } } });
  });
});
