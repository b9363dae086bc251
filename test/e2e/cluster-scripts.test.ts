/**
 * scripts/cluster-up.sh and cluster-down.sh as a user runs them: three nodes and HAProxy
 * (a Redis is already there), a message across nodes with mosquitto_pub/sub through the
 * balanced port and a node's own port, then everything stopped.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { Redis } from "ioredis";
import { freePortRange, makeTempDir, mosquittoPub, mosquittoSub, removeDir, runCommand } from "../helpers/system.ts";
import { isBun } from "../helpers/broker.ts";

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
    // the script uses lb, lb + 1..3 and base + 1..3: whole ranges, away from ephemeral ports
    const lb = await freePortRange(4);
    env = {
      ...process.env, COLIBRI_CLUSTER_DIR: dir, COLIBRI_LB_PORT: String(lb), COLIBRI_NODE_BASE_PORT: String(await freePortRange(4)),
      COLIBRI_REDIS_PREFIX: prefix, COLIBRI_RUNTIME: isBun ? "bun" : "deno",
    };
    const up = await runCommand("bash", ["scripts/cluster-up.sh", "3"], { env, timeoutMs: 60_000 });
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, /colibri cluster of 3 nodes/);
    const sub = mosquittoSub(lb + 3, "cu/#", { count: 1, qos: 1 });
    await sub.ready;
    await mosquittoPub(lb + 1, "cu/x", "across", { qos: 1 });
    const got = await sub;
    assert.equal(got[0].payload, "across");
    const down = await runCommand("bash", ["scripts/cluster-down.sh"], { env, timeoutMs: 30_000 });
    assert.equal(down.code, 0);
    assert.match(down.stderr + down.stdout, /stopped/);
    const again = await runCommand("bash", ["scripts/cluster-down.sh"], { env });
    assert.match(again.stderr, /nothing recorded/);
  });
});
