/**
 * The real entry point, spawned as a process with the runtime running the tests
 * (`bun run src/main.ts` under `bun test`, `deno run -A src/main.ts` under `deno test`):
 * it serves mosquitto_pub/sub, answers --help and --version, and refuses bad input with a
 * message that names the option, the value and the fix. Every process is killed by its PID.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { helpText, parseCli } from "../../src/cli.ts";
import { rules } from "../../src/config.ts";
import { connectV5 } from "../helpers/raw-client.ts";
import {
  freePort,
  mosquittoPub,
  mosquittoSub,
  runCommand,
  runtime,
  type SpawnedProcess,
  spawnProcess,
} from "../helpers/system.ts";

/** Real sockets and processes: more than bun test's 5 s default on a loaded machine. */
const SLOW = { timeout: 30_000 };

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const rt = runtime();
const bin = path.join(root, "node_modules/.bin", rt);
const entry = rt === "bun" ? ["run", "src/main.ts"] : ["run", "-A", "src/main.ts"];
const version = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")).version as string;
const started = new Set<SpawnedProcess>();

/** Run the CLI to completion (for flags that exit). */
function run(args: string[], env: Record<string, string> = {}) {
  return runCommand(bin, [...entry, ...args], { cwd: root, env: { ...process.env, NO_COLOR: "1", ...env }, timeoutMs: 20_000 });
}

/** Start the broker and wait until it logs that it listens; returns the process and its port. */
async function serve(args: string[], env: Record<string, string> = {}): Promise<{ proc: SpawnedProcess; port: number }> {
  const proc = spawnProcess(bin, [...entry, ...args], {
    cwd: root,
    env: { ...process.env, NO_COLOR: "1", ...env },
    name: `colibri (${rt})`,
  });
  started.add(proc);
  const m = await proc.waitForLine(/colibri listening .*port=(\d+)/, 15_000);
  return { proc, port: Number(m[1]) };
}

async function roundTrip(port: number, topic: string) {
  const sub = mosquittoSub(port, topic, { count: 1, qos: 1, timeoutMs: 5000 });
  await sub.ready;
  await mosquittoPub(port, topic, "via-cli", { qos: 1 });
  const [m] = await sub;
  assert.equal(m.payload, "via-cli");
}

describe(`CLI: ${rt} ${entry.join(" ")}`, () => {
  after(async () => {
    for (const p of started) await p.kill("SIGKILL");
  });

  it("serves MQTT on --host/--port: mosquitto_pub/sub round trip; SIGTERM shuts it down cleanly", SLOW, async () => {
    const want = await freePort();
    const { proc, port } = await serve(["--host", "127.0.0.1", "--port", String(want), "--log-level", "info"]);
    assert.equal(port, want);
    await roundTrip(port, "cli/serve");
    const t0 = Date.now();
    const exit = await proc.kill("SIGTERM", 5000);
    started.delete(proc);
    // it handled the signal and exited by itself (no SIGKILL escalation after 5 s)
    assert.ok(Date.now() - t0 < 4000, `did not exit on SIGTERM; output:\n${proc.tail()}`);
    assert.ok(proc.lines.some((l) => /shutting down/.test(l)), `no shutdown log line:\n${proc.tail()}`);
    // (Deno's node:child_process reports the signal it sent instead of the child's exit code)
    if (rt === "bun") assert.equal(exit.code, 0, `exit ${JSON.stringify(exit)}; output:\n${proc.tail()}`);
  });

  it("--help prints the options and exits 0", async () => {
    const r = await run(["--help"]);
    assert.equal(r.code, 0, r.stderr);
    for (const opt of ["--host", "--port", "--max-packet-size", "--log-level", "--config", "--version"]) {
      assert.ok(r.stdout.includes(opt), `--help does not mention ${opt}:\n${r.stdout}`);
    }
  });

  it("--version prints the package version and exits 0", async () => {
    const r = await run(["--version"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), `colibri ${version}`);
  });

  it("a port already in use: non-zero exit, the message names the port and --port", async () => {
    const blocker = net.createServer();
    const port = await new Promise<number>((resolve, reject) => {
      blocker.once("error", reject);
      blocker.listen(0, "127.0.0.1", () => resolve((blocker.address() as net.AddressInfo).port));
    });
    try {
      const r = await run(["--host", "127.0.0.1", "--port", String(port)]);
      assert.notEqual(r.code, 0, `exited 0 while ${port} was taken:\n${r.stdout}${r.stderr}`);
      assert.match(r.stderr, new RegExp(`\\b${port}\\b`));
      assert.match(r.stderr, /--port/);
      assert.match(r.stderr, /in use/);
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });

  const bad: Array<[string, string[], RegExp[]]> = [
    ["--port abc", ["--port", "abc"], [/--port/, /"abc"/, /whole number from 0 to 65535/]],
    ["--port 70000", ["--port", "70000"], [/--port/, /70000/, /whole number from 0 to 65535/]],
    ["--max-packet-size -1", ["--max-packet-size", "-1"], [/--max-packet-size/, /"-1"/, /whole number from \d+ to \d+/]],
    ["--bogus", ["--bogus"], [/--bogus/, /unknown option/, /--help/]],
    ["--port with no value", ["--port"], [/--port/, /needs a value/]],
    ["--config with a missing file", ["--config", "/nonexistent/colibri.json"], [/\/nonexistent\/colibri\.json/, /fix the path/]],
    ["--listen with an unknown scheme", ["--listen", "http://0.0.0.0:8080"], [/--listen/, /"http:\/\/0\.0\.0\.0:8080"/, /unknown scheme "http"/, /mqtt:\/\/, mqtts:\/\//]],
    ["--listen that is not a URL", ["--listen", "0.0.0.0:1883"], [/--listen/, /"0\.0\.0\.0:1883"/, /expected scheme:\/\/host:port/]],
    ["--listen ws:// without a port", ["--listen", "ws://0.0.0.0/mqtt"], [/--listen/, /"ws:\/\/0\.0\.0\.0\/mqtt"/, /needs a port: ws:\/\/0\.0\.0\.0:8080\/mqtt/]],
    ["--listen with an unknown listener option", ["--listen", "mqtt://127.0.0.1:0?colour=blue"], [/--listen/, /unknown listener option "colour"/, /proxy-protocol/]],
    ["mqtts:// without --certfile", ["--listen", "mqtts://127.0.0.1:0"], [/mqtts:\/\/127\.0\.0\.1:0/, /needs --certfile <file\.pem>/]],
    ["an unreadable --certfile", ["--listen", "mqtts://127.0.0.1:0", "--certfile", "/nonexistent/server.pem", "--keyfile", "/nonexistent/server.key"], [/cannot read --certfile "\/nonexistent\/server\.pem"/, /mqtts:\/\/127\.0\.0\.1:0/, /readable PEM file/]],
    ["--require-certificate without --cafile", ["--listen", "mqtts://127.0.0.1:0", "--certfile", "a.pem", "--keyfile", "a.key", "--require-certificate"], [/needs --cafile/, /--require-certificate/]],
    ["--use-identity-as-username without --require-certificate", ["--listen", "mqtts://127.0.0.1:0", "--certfile", "a.pem", "--keyfile", "a.key", "--use-identity-as-username"], [/needs --require-certificate/, /--use-identity-as-username/]],
    ["?proxy-protocol on a ws:// listener", ["--listen", "ws://127.0.0.1:0/mqtt?proxy-protocol=true"], [/--proxy-protocol/, /ws:\/\/127\.0\.0\.1:0\/mqtt/, /mqtt:\/\/ listeners only/]],
  ];
  for (const [name, args, patterns] of bad) {
    it(`${name}: non-zero exit; the message names the option, the value and the fix`, async () => {
      const r = await run(args);
      assert.notEqual(r.code, 0);
      assert.equal(r.stdout.trim(), "", "nothing on stdout for an error");
      for (const p of patterns) assert.match(r.stderr, p);
    });
  }

  it("--maximum-qos (the spelling the README documents) is accepted and advertised in CONNACK", SLOW, async () => {
    const { proc, port } = await serve(["--host", "127.0.0.1", "--port", "0", "--maximum-qos", "1"]);
    const { client, connack } = await connectV5(port, "cli-maxqos");
    // MQTT 5 §3.2.2.3.4 Maximum QoS in CONNACK; a SUBSCRIBE for QoS 2 is granted 1
    assert.equal(connack.properties?.maximumQoS, 1);
    assert.deepEqual((await client.subscribe("cli/q", { qos: 2 })).granted, [1]);
    client.destroy();
    await proc.kill("SIGTERM", 5000);
    started.delete(proc);
  });

  it("every option --help lists is accepted as a flag and as a COLIBRI_* variable", () => {
    const listed = [...helpText().matchAll(/^ {2}--([a-z0-9-]+)\s/gm)].map((m) => m[1]);
    const parse = (argv: string[], env: Record<string, string> = {}) => {
      try {
        const r = parseCli(argv, env, () => "{}");
        return r.kind === "run" ? (r.config as unknown as Record<string, unknown>) : undefined;
      } catch {
        return undefined;
      }
    };
    const base = parse([])!;
    for (const key of Object.keys(rules) as (keyof typeof rules)[]) {
      // a value different from the default, so that only the right option can produce it
      const r = rules[key];
      const d = base[key];
      const value = r.kind === "int" ? String(d === r.max ? r.max - 1 : Math.max(r.min, Number(d) + 1))
        : r.kind === "bool" ? String(!d)
        : r.kind === "enum" ? String(r.values.find((v) => v !== d))
        : r.kind === "listen" ? "ws://127.0.0.1:18080/mqtt"
        : key === "redisUrl" ? "redis://127.0.0.1:6380" : "x-test";
      const setters = listed.filter((f) => String(parse([`--${f}`, value])?.[key]) === value);
      assert.equal(setters.length, 1, `options in --help that set ${key}: ${setters.join(", ") || "none"}`);
      const env = `COLIBRI_${setters[0].replace(/-/g, "_").toUpperCase()}`;
      assert.equal(String(parse([], { [env]: value })?.[key]), value, `${env}=${value} does not set ${key}`);
    }
  });

  it("COLIBRI_PORT sets the port; a flag overrides it; a bad value names the variable", SLOW, async () => {
    const envPort = await freePort();
    const a = await serve([], { COLIBRI_PORT: String(envPort), COLIBRI_HOST: "127.0.0.1" });
    assert.equal(a.port, envPort);
    await roundTrip(envPort, "cli/env");
    await a.proc.kill("SIGTERM", 5000);
    started.delete(a.proc);

    const flagPort = await freePort();
    const c = await serve(["--port", String(flagPort)], { COLIBRI_PORT: String(envPort), COLIBRI_HOST: "127.0.0.1" });
    assert.equal(c.port, flagPort);
    await c.proc.kill("SIGTERM", 5000);
    started.delete(c.proc);

    const r = await run([], { COLIBRI_PORT: "eighteen" });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /COLIBRI_PORT/);
    assert.match(r.stderr, /"eighteen"/);
  });
});

describe("the README's start commands", () => {
  const procs: SpawnedProcess[] = [];
  after(async () => {
    for (const p of procs) await p.kill("SIGKILL");
  });

  for (const [name, cmd, args] of [
    ["npm start -- (Bun)", "npm", ["start", "--"]],
    ["deno task start (Deno)", path.join(root, "node_modules/.bin/deno"), ["task", "start"]],
  ] as const) {
    it(`${name} serves MQTT`, SLOW, async () => {
      const want = await freePort();
      const proc = spawnProcess(cmd, [...args, "--host", "127.0.0.1", "--port", String(want)], {
        cwd: root,
        env: { ...process.env, NO_COLOR: "1" },
        name,
        group: true, // npm and deno task run the broker as a child: stop the whole group
      });
      procs.push(proc);
      const m = await proc.waitForLine(/colibri listening .*port=(\d+)/, 20_000);
      assert.equal(Number(m[1]), want);
      await roundTrip(want, `readme/${name.length}`);
    });
  }
});

describe("config file (--config / COLIBRI_CONFIG)", () => {
  const files: Record<string, string> = {
    "/cfg/a.json": JSON.stringify({ port: 1999, persistence: "redis", redisPrefix: "from-file:", maxQueuedMessages: 7 }),
    "/cfg/bad.json": JSON.stringify({ port: "nope" }),
    "/cfg/unknown.json": JSON.stringify({ colour: "blue" }),
    "/cfg/array.json": "[1, 2]",
  };
  const read = (p: string) => {
    if (!(p in files)) throw new Error(`ENOENT: ${p}`);
    return files[p];
  };
  const cfg = (argv: string[], env: Record<string, string> = {}) => {
    const r = parseCli(argv, env, read);
    assert.equal(r.kind, "run");
    return (r as unknown as { config: Record<string, unknown> }).config;
  };

  it("options come from the file; the environment overrides it; flags override both", () => {
    const c = cfg(["--config", "/cfg/a.json"]);
    assert.equal(c.port, 1999);
    assert.equal(c.persistence, "redis");
    assert.equal(c.redisPrefix, "from-file:");
    assert.equal(c.maxQueuedMessages, 7);
    assert.equal(cfg([], { COLIBRI_CONFIG: "/cfg/a.json" }).port, 1999);
    assert.equal(cfg(["--config", "/cfg/a.json"], { COLIBRI_PORT: "2001" }).port, 2001);
    assert.equal(cfg(["--config", "/cfg/a.json", "--port", "2002"], { COLIBRI_PORT: "2001" }).port, 2002);
  });

  it("a bad value, an unknown key or a non-object names the file, the key and the fix", () => {
    assert.throws(() => cfg(["--config", "/cfg/bad.json"]), /"nope".*port in \/cfg\/bad\.json.*whole number/);
    assert.throws(() => cfg(["--config", "/cfg/unknown.json"]), /unknown option "colour" in \/cfg\/unknown\.json/);
    assert.throws(() => cfg(["--config", "/cfg/array.json"]), /must hold a JSON object/);
  });
});
