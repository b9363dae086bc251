/**
 * The real process (the runtime running the tests) as an operator meets it: JSON log lines in
 * a stable shape with connections at info level and payloads only at debug; SIGTERM tells MQTT
 * 5 clients 0x8B (or 0x9C with --drain-server-reference) and exits 0; SIGUSR2 drains; a stop
 * stuck on Redis still exits within --shutdown-timeout-ms (code 1, naming the step); the HTTP
 * endpoint's port in use names --http-port. Signals go to the broker's PID (process.kill), so
 * that both runtimes report its real exit code.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import process from "node:process";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { freePort, runCommand, runtime, type SpawnedProcess, spawnProcess } from "../helpers/system.ts";
import { connectV4, connectV5, RawClient } from "../helpers/raw-client.ts";
import { RedisServer } from "../helpers/redis-server.ts";

const SLOW = { timeout: 60_000 };
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const rt = runtime();
const bin = path.join(root, "node_modules/.bin", rt);
const entry = rt === "bun" ? ["run", "src/main.ts"] : ["run", "-A", "src/main.ts"];
const procs = new Set<SpawnedProcess>();

async function serve(args: string[]): Promise<{ proc: SpawnedProcess; port: number }> {
  const proc = spawnProcess(bin, [...entry, "--host", "127.0.0.1", "--port", "0", ...args], {
    cwd: root, env: { ...process.env, NO_COLOR: "1" }, name: `colibri (${rt})`,
  });
  procs.add(proc);
  const m = await proc.waitForLine(/colibri listening.*"?port"?[=:](\d+)/, 20_000);
  return { proc, port: Number(m[1]) };
}

async function signalAndWait(proc: SpawnedProcess, sig: "SIGTERM" | "SIGUSR2", ms: number) {
  const t0 = Date.now();
  process.kill(proc.pid, sig);
  const timeout = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), ms));
  const r = await Promise.race([proc.exited, timeout]);
  if (r === "timeout") assert.fail(`no exit within ${ms} ms after ${sig}; output:\n${proc.tail()}`);
  procs.delete(proc);
  return { ...r, ms: Date.now() - t0 };
}

describe("operating the process", () => {
  after(async () => {
    RawClient.destroyAll();
    for (const p of procs) await p.kill("SIGKILL");
  });

  it("--log-format json: one JSON object per line; connect/disconnect at info with who and why; no payloads", SLOW, async () => {
    const { proc, port } = await serve(["--log-format", "json", "--node-id", "j1"]);
    const { client } = await connectV5(port, "json-client");
    await client.publish("log/t", "secret-payload", { qos: 1 });
    client.disconnect();
    await client.waitClose();
    await proc.waitForLine(/client disconnected/, 5000);
    const { client: rude } = await connectV4(port, "json-rude");
    rude.destroy();
    await proc.waitForLine(/client disconnected.*json-rude/, 5000);
    const lines = proc.stderrLines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(lines.length >= 5);
    for (const o of lines) {
      assert.deepEqual(Object.keys(o).slice(0, 4), ["time", "level", "node", "event"]);
      assert.match(o.time as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.equal(o.node, "j1");
    }
    const connected = lines.find((o) => o.event === "client connected" && o.clientId === "json-client")!;
    assert.equal(connected.level, "info");
    assert.equal(connected.address, "127.0.0.1");
    assert.equal(connected.version, 5);
    const left = lines.filter((o) => o.event === "client disconnected");
    assert.deepEqual(left.map((o) => [o.clientId, o.reason]), [["json-client", "client disconnected"], ["json-rude", "connection lost"]]);
    assert.ok(!proc.lines.some((l) => l.includes("secret-payload")), "a payload in an info-level log");
    await signalAndWait(proc, "SIGTERM", 5000);
  });

  it("--log-level debug: the payload is logged (text format)", SLOW, async () => {
    const { proc, port } = await serve(["--log-level", "debug"]);
    const { client } = await connectV4(port, "debug-client");
    await client.publish("log/d", "visible-payload", { qos: 0 });
    const [line] = await proc.waitForLine(/DEBUG message received .*payload="visible-payload"/, 5000);
    assert.match(line, /clientId="debug-client"/);
    client.destroy();
    await signalAndWait(proc, "SIGTERM", 5000);
  });

  it("SIGTERM: MQTT 5 clients get 0x8B, 3.1.1 clients are closed, the process exits 0", SLOW, async () => {
    const { proc, port } = await serve(["--shutdown-timeout-ms", "5000"]);
    const { client: c5 } = await connectV5(port, "term-5");
    const { client: c4 } = await connectV4(port, "term-4");
    const exit = signalAndWait(proc, "SIGTERM", 6000);
    const d = await c5.waitForPacket("disconnect", () => true, 5000);
    assert.equal(d.reasonCode, 0x8b);
    await c4.waitClose(5000);
    const r = await exit;
    assert.equal(r.code, 0, proc.tail());
    assert.ok(proc.lines.some((l) => /shutting down .*reason="SIGTERM"/.test(l)) && proc.lines.some((l) => / stopped /.test(l)), proc.tail());
  });

  it("SIGTERM with --drain-server-reference: 0x9C Use another server and the reference", SLOW, async () => {
    const { proc, port } = await serve(["--drain-server-reference", "mqtt.example.net:1883"]);
    const { client } = await connectV5(port, "term-ref");
    const exit = signalAndWait(proc, "SIGTERM", 6000);
    const d = await client.waitForPacket("disconnect", () => true, 5000);
    assert.equal(d.reasonCode, 0x9c);
    assert.equal(d.properties?.serverReference, "mqtt.example.net:1883");
    assert.equal((await exit).code, 0);
  });

  it("SIGUSR2 drains: not ready, no new connections, clients sent away, the process stays until SIGTERM", SLOW, async () => {
    const http = await freePort();
    const { proc, port } = await serve(["--http-port", String(http), "--http-host", "127.0.0.1", "--drain-rate", "0"]);
    const { client } = await connectV5(port, "usr2");
    assert.equal((await fetch(`http://127.0.0.1:${http}/readyz`)).status, 200);
    process.kill(proc.pid, "SIGUSR2");
    const d = await client.waitForPacket("disconnect", () => true, 5000);
    assert.equal(d.reasonCode, 0x8b);
    await proc.waitForLine(/drained: every client sent away/, 5000);
    const r = await fetch(`http://127.0.0.1:${http}/readyz`);
    assert.equal(r.status, 503);
    assert.equal(await r.text(), "not ready: draining\n");
    await assert.rejects(RawClient.connect(port, "127.0.0.1", 1000));
    assert.equal(proc.running, true);
    assert.equal((await signalAndWait(proc, "SIGTERM", 5000)).code, 0);
  });

  it("a stop stuck on Redis exits within --shutdown-timeout-ms, code 1, naming the step", SLOW, async () => {
    const redis = new RedisServer(await freePort());
    await redis.start();
    try {
      const { proc, port } = await serve([
        "--redis-url", redis.url, "--redis-prefix", "ops-stuck:", "--shutdown-timeout-ms", "1500", "--node-lease-ms", "3000",
      ]);
      const { client } = await connectV4(port, "stuck", { clean: false });
      client.destroy();
      redis.pause(); // the socket stays open, nothing answers: the flush and the cluster leave wait
      const r = await signalAndWait(proc, "SIGTERM", 8000);
      assert.equal(r.code, 1);
      assert.ok(r.ms >= 1400 && r.ms < 4000, `exited after ${r.ms} ms`);
      assert.ok(proc.lines.some((l) => /ERROR shutdown did not finish within --shutdown-timeout-ms.*step=/.test(l)), proc.tail());
    } finally {
      redis.resume();
      await redis.kill();
    }
  });

  it("--http-port in use: exits naming the port and --http-port", SLOW, async () => {
    const blocker = net.createServer();
    const taken = await new Promise<number>((resolve) => blocker.listen(0, "127.0.0.1", () => resolve((blocker.address() as net.AddressInfo).port)));
    try {
      const r = await runCommand(bin, [...entry, "--port", "0", "--http-host", "127.0.0.1", "--http-port", String(taken)], {
        cwd: root, env: { ...process.env, NO_COLOR: "1" }, timeoutMs: 20_000,
      });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`port ${taken} .*in use.*--http-port`));
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });
});
