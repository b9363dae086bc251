/**
 * scripts/cluster-up.sh and cluster-down.sh as a user runs them: three nodes and HAProxy
 * (a Redis is already there), a message across nodes with mosquitto_pub/sub through the
 * balanced port (HAProxy checks each node's /readyz) and a node's own port, each node's HTTP
 * endpoint, then everything stopped.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { Redis } from "ioredis";
import net from "node:net";
import { makeTempDir, mosquittoPub, mosquittoSub, removeDir, runCommand } from "../helpers/system.ts";
import { isBun } from "../helpers/broker.ts";

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

/** A start port p in 20000-31999 with p + a .. p + b free for each [a, b]. */
async function freeRuns(runs: [number, number][]): Promise<number> {
  for (;;) {
    const p = 20000 + Math.floor(Math.random() * 12000);
    let ok = true;
    for (const [a, b] of runs) for (let i = a; ok && i <= b; i++) ok = await canListen(p + i);
    if (ok) return p;
  }
}

describe("scripts/cluster-up.sh", () => {
  const dir = makeTempDir("colibri-cluster-up-");
  const prefix = `colibri-test:cluster-up:${Math.random().toString(36).slice(2)}:`;
  let env: Record<string, string | undefined> = {};
  after(async () => {
    await runCommand("bash", ["scripts/cluster-down.sh"], { env, timeoutMs: 30_000 });
    removeDir(dir);
    const r = new Redis("redis://127.0.0.1:6379");
    const keys = await r.keys(`${prefix}*`);
    if (keys.length) await r.del(...keys);
    r.disconnect();
  });

  it("starts a 3-node cluster behind HAProxy that routes across nodes, and stops it", { timeout: 60_000 }, async () => {
    // the script takes runs of ports (lb + i, base + i, http + i): below the ephemeral range,
    // where the ports other tests get from the OS (freePort) are not, and checked free
    const lb = await freeRuns([[0, 3], [11, 13], [21, 23]]);
    const base = lb + 10;
    const http = lb + 20;
    env = {
      ...process.env, COLIBRI_CLUSTER_DIR: dir, COLIBRI_LB_PORT: String(lb), COLIBRI_NODE_BASE_PORT: String(base),
      COLIBRI_HTTP_BASE_PORT: String(http), COLIBRI_REDIS_PREFIX: prefix, COLIBRI_RUNTIME: isBun ? "bun" : "deno",
    };
    const up = await runCommand("bash", ["scripts/cluster-up.sh", "3"], { env, timeoutMs: 60_000 });
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, /colibri cluster of 3 nodes/);
    const sub = mosquittoSub(lb + 3, "cu/#", { count: 1, qos: 1 });
    await sub.ready;
    await mosquittoPub(lb + 1, "cu/x", "across", { qos: 1 });
    const got = await sub;
    assert.equal(got[0].payload, "across");
    for (const i of [1, 2, 3]) assert.equal(await (await fetch(`http://127.0.0.1:${http + i}/readyz`)).text(), "ready\n");
    // the balanced port, behind HAProxy's /readyz checks
    const sub2 = mosquittoSub(lb, "cu2/#", { count: 1, qos: 1 });
    await sub2.ready;
    await mosquittoPub(lb, "cu2/x", "balanced", { qos: 1 });
    assert.equal((await sub2)[0].payload, "balanced");
    const down = await runCommand("bash", ["scripts/cluster-down.sh"], { env, timeoutMs: 30_000 });
    assert.equal(down.code, 0);
    assert.match(down.stderr + down.stdout, /stopped/);
    const again = await runCommand("bash", ["scripts/cluster-down.sh"], { env });
    assert.match(again.stderr, /nothing recorded/);
  });
});
