/**
 * Every process the harness starts is registered here and killed by pid: after each run, at the
 * end, and on SIGINT/SIGTERM.
 */
import { spawn, type ChildProcess } from "node:child_process";
import process from "node:process";
import { isAlive } from "./procfs.ts";
import { sleep } from "./ports.ts";

const live = new Set<number>();

export interface Spawned {
  child: ChildProcess;
  pid: number;
  /** Last few KB of stdout+stderr, for error reports. */
  output(): string;
  exit: { code: number | null; signal: string | null } | null;
}

export function start(cmd: string, args: readonly string[], cwd: string): Spawned {
  const child = spawn(cmd, args, { cwd, stdio: ["ignore", "pipe", "pipe"], env: process.env });
  if (child.pid === undefined) throw new Error(`could not start ${cmd}`);
  const pid = child.pid;
  live.add(pid);
  let tail = "";
  const keep = (d: Uint8Array): void => {
    tail = (tail + new TextDecoder().decode(d)).slice(-4096);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const s: Spawned = { child, pid, output: () => tail, exit: null };
  child.on("exit", (code, signal) => {
    s.exit = { code, signal };
    live.delete(pid);
  });
  child.on("error", (e) => {
    tail += `\n${e.message}`;
    s.exit ??= { code: null, signal: null };
  });
  return s;
}

function signal(pid: number, sig: "SIGTERM" | "SIGKILL"): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; `extra` are descendants found to be the real server. */
export async function stop(s: Spawned, extra: readonly number[] = [], graceMs = 1500): Promise<void> {
  const others = extra.filter((p) => p !== s.pid);
  if (s.exit === null) signal(s.pid, "SIGTERM");
  for (const p of others) if (isAlive(p)) signal(p, "SIGTERM");
  const deadline = performance.now() + graceMs;
  while (performance.now() < deadline && (s.exit === null || others.some(isAlive))) await sleep(20);
  if (s.exit === null) signal(s.pid, "SIGKILL");
  for (const p of others) if (isAlive(p)) signal(p, "SIGKILL");
  while (s.exit === null && performance.now() < deadline + 2000) await sleep(20);
  live.delete(s.pid);
}

export function killAll(): void {
  for (const pid of live) signal(pid, "SIGKILL");
  live.clear();
}

let installed = false;

/** Kill all children on SIGINT/SIGTERM, then exit. */
export function installSignalHandlers(onExit: () => void): void {
  if (installed) return;
  installed = true;
  const handler = (): void => {
    process.stderr.write("\ninterrupted: stopping brokers\n");
    killAll();
    onExit();
    process.exit(130);
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
}
