/**
 * `npm start … &` (under bun test) and `npx deno task start … &` (under deno test) hand the
 * shell the PID of npm: SIGTERM to that PID alone (not its process group) must not leave the
 * broker running as an orphan (--exit-with-parent, which both start scripts pass; see
 * src/ops/parent-watch.ts). Without the flag a broker started in the background by a script
 * that then exits keeps running (what cluster-up.sh and nohup rely on). Deno starts without
 * the "Permissions in the config file is an experimental feature" warning.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { freePort, runCommand, runtime, type SpawnedProcess, spawnProcess, waitForPort } from "../helpers/system.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const rt = runtime();
const SLOW = { timeout: 60_000 };

/** Running, and not a zombie waiting to be reaped. */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

async function gone(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !alive(pid);
}

describe("the broker exits with its launcher", () => {
  const procs: SpawnedProcess[] = [];
  const pids: number[] = [];
  after(async () => {
    for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
    for (const p of procs) await p.kill("SIGKILL");
  });

  const [name, cmd, args] = rt === "bun"
    ? ["npm start", "npm", ["start", "--"]]
    : ["npx deno task start", "npx", ["deno", "task", "start"]];

  it(`SIGTERM to the PID of \`${name} &\` stops the broker too`, SLOW, async () => {
    const port = await freePort();
    // its own process group, as a shell gives a background job; only npm's PID is signalled
    const proc = spawnProcess(cmd, [...args, "--host", "127.0.0.1", "--port", String(port)], {
      cwd: root, env: { ...process.env, NO_COLOR: "1" }, name, group: true,
    });
    procs.push(proc);
    const m = await proc.waitForLine(/colibri listening .*pid=(\d+)/, 30_000);
    const broker = Number(m[1]);
    pids.push(broker);
    assert.notEqual(broker, proc.pid, "the broker runs as a child of the launcher");
    await waitForPort(port);
    process.kill(proc.pid, "SIGTERM");
    if (!(await gone(broker, 10_000))) {
      const ps = await runCommand("ps", ["-o", "pid,ppid,pgid,stat,cmd", "-g", String(proc.pid)]);
      assert.fail(`the broker (pid ${broker}) outlived its launcher; processes:\n${ps.stdout}\noutput:\n${proc.tail()}`);
    }
    // the broker's last lines may still be in the pipe when its PID is gone: read to the end
    await Promise.race([proc.exited, new Promise((r) => setTimeout(r, 5000))]);
    assert.ok(proc.lines.some((l) => /shutting down .*launcher went away/.test(l)), proc.tail());
    assert.ok(!proc.lines.some((l) => /experimental feature/.test(l)), `a runtime warning at start:\n${proc.tail()}`);
  });

  it("without --exit-with-parent a broker started in the background by a script outlives it", SLOW, async () => {
    const port = await freePort();
    const log = path.join(fs.mkdtempSync(path.join("/tmp", "colibri-bg-")), "broker.log");
    const entry = rt === "bun" ? "node_modules/.bin/bun run" : "node_modules/.bin/deno run -A";
    const script = `${entry} src/main.ts --host 127.0.0.1 --port ${port} > ${log} 2>&1 < /dev/null & echo $!`;
    const sh = spawnProcess("sh", ["-c", script], { cwd: root, name: "sh" });
    procs.push(sh);
    const [pidLine] = await sh.waitForLine(/^\d+$/, 5000);
    const broker = Number(pidLine);
    pids.push(broker);
    await sh.exited;
    await waitForPort(port, 20_000);
    await new Promise((r) => setTimeout(r, 1500)); // longer than the watch's period
    assert.ok(alive(broker), "the broker stopped with the script that started it");
    process.kill(broker, "SIGTERM");
    assert.ok(await gone(broker, 5000));
    fs.rmSync(path.dirname(log), { recursive: true, force: true });
  });
});
