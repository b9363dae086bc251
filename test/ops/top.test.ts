/**
 * `colibri top` (src/cli/top.ts) in a real terminal: tmux runs it against a broker's /metrics
 * and a node that does not answer; capture-pane reads the screen (the connections count, a
 * message rate that follows a publisher, DOWN for the dead node); send-keys q quits it.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { startBroker, type TestBroker } from "../helpers/broker.ts";
import { startOps, type TestOps } from "../helpers/ops.ts";
import { connectV4, connectV5, RawClient } from "../helpers/raw-client.ts";
import { ensureBinary, freePort, runCommand, runtime } from "../helpers/system.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const rt = runtime();
const SLOW = { timeout: 60_000 };

describe("colibri top under tmux", () => {
  let b: TestBroker;
  let o: TestOps;
  let tmux: string;
  const socket = `colibri-top-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const errFile = path.join(os.tmpdir(), `${socket}.err`);
  const t = (...args: string[]) => runCommand(tmux, ["-L", socket, ...args], { timeoutMs: 10_000 });
  before(async () => {
    tmux = await ensureBinary("tmux", "tmux");
    b = await startBroker({ nodeId: "topnode" });
    o = await startOps(b);
  });
  after(async () => {
    RawClient.destroyAll();
    await t("kill-server").catch(() => {});
    fs.rmSync(errFile, { force: true });
    await o?.close();
    await b?.close();
  });

  /** The screen, once `ok(screen)` holds (polling), or fail with what it showed. */
  async function screenWhen(ok: (s: string) => boolean, what: string, ms = 8000): Promise<string> {
    const end = Date.now() + ms;
    let s = "";
    while (Date.now() < end) {
      const r = await t("capture-pane", "-p", "-t", "top");
      s = r.stdout;
      if (ok(s)) return s;
      await new Promise((r) => setTimeout(r, 200));
    }
    const err = fs.existsSync(errFile) ? fs.readFileSync(errFile, "utf8") : "";
    assert.fail(`the screen never showed ${what}:\n${s}\nstderr: ${err}`);
  }

  it("shows connections and rates from /metrics, a dead node as DOWN, and quits on q", SLOW, async () => {
    const dead = await freePort();
    const entry = rt === "bun" ? "node_modules/.bin/bun run" : "node_modules/.bin/deno run -A";
    const cmd = `cd ${root} && NO_COLOR=1 ${entry} src/cli/top.ts --url ${o.url} --url http://127.0.0.1:${dead} --interval 0.5 2>${errFile}`;
    const started = await t("new-session", "-d", "-s", "top", "-x", "160", "-y", "30", cmd);
    assert.equal(started.code, 0, started.stderr);

    const clients = [];
    for (let i = 0; i < 3; i++) clients.push((await connectV4(b.port, `top-${i}`, { keepalive: 0 })).client);
    await clients[0].subscribe("top/t", { qos: 0 });
    const { client: pub } = await connectV5(b.port, "top-pub", { keepalive: 0 });
    const publishing = setInterval(() => {
      for (let i = 0; i < 20; i++) void pub.publish("top/t", "x", { qos: 0 });
    }, 50);
    try {
      const row = (s: string) => s.split("\n").find((l) => l.startsWith("topnode"))?.trim().split(/\s+/);
      const head = (s: string) => s.split("\n").find((l) => l.startsWith("node "))?.trim().split(/\s{2,}|\s(?=\S)/);
      const screen = await screenWhen((s) => {
        const r = row(s);
        return r !== undefined && r[2] === "4" && Number(r[5]?.replace(/,/g, "")) > 50;
      }, "4 connections and a message rate on the topnode row");
      assert.match(screen, /^colibri top — 2 nodes — /m);
      assert.ok(head(screen)?.includes("conns"));
      const r = row(screen)!;
      assert.equal(r[1], "yes", "ready");
      assert.ok(Number(r[6].replace(/,/g, "")) > 50, `messages out per second: ${r[6]}`);
      assert.match(screen, new RegExp(`^127\\.0\\.0\\.1: +DOWN`, "m"));
      assert.match(screen, new RegExp(`http://127\\.0\\.0\\.1:${dead}: `));
    } finally {
      clearInterval(publishing);
    }
    // the rate falls back once the publisher stops
    await screenWhen((s) => s.split("\n").find((l) => l.startsWith("topnode"))?.trim().split(/\s+/)[5] === "0", "the rate back at 0");

    await t("send-keys", "-t", "top", "q");
    const end = Date.now() + 5000;
    while ((await t("has-session", "-t", "top")).code === 0) {
      if (Date.now() > end) assert.fail("top did not quit on q");
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  it("refuses a bad --url with the option and the fix", { timeout: 30_000 }, async () => {
    const bin = path.join(root, "node_modules/.bin", rt);
    const args = rt === "bun" ? ["run", "src/cli/top.ts"] : ["run", "-A", "src/cli/top.ts"];
    const r = await runCommand(bin, [...args, "--url", "localhost:9100"], { cwd: root, timeoutMs: 20_000 });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--url "localhost:9100": expected http:\/\/host:port/);
  });
});
