/** A private redis-server process for tests that need to stop and restart Redis. */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer, type Socket } from "node:net";
import process from "node:process";
import { Redis } from "ioredis";

export const REDIS_SERVER = "/usr/bin/redis-server";

/** A TCP port that was free a moment ago (nothing listens on it after this returns). */
export { freePort } from "./system.ts";

/** A TCP server that accepts connections and never answers (a hung or wrong service). */
export function silentServer(): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const srv = createServer((s) => {
    sockets.add(s);
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
  });
  return new Promise((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      resolve({
        port: typeof addr === "object" && addr !== null ? addr.port : 0,
        close: () => {
          for (const s of sockets) s.destroy();
          return new Promise<void>((res) => srv.close(() => res()));
        },
      });
    });
  });
}

/** Every key matching a pattern (SCAN, not KEYS), e.g. `${prefix}*`. */
export async function keysMatching(redis: Redis, pattern: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    cursor = next;
    out.push(...keys);
  } while (cursor !== "0");
  return out;
}

/** Delete every key under a prefix (a test's own keys, at its end). */
export async function deletePrefix(url: string, prefix: string): Promise<void> {
  const r = new Redis(url);
  try {
    const keys = await keysMatching(r, `${prefix}*`);
    if (keys.length) await r.del(...keys);
  } finally {
    r.disconnect();
  }
}

export class RedisServer {
  private proc: ChildProcess | undefined;
  /** extraArgs replace the no-persistence defaults (e.g. an AOF in a temp dir). */
  constructor(readonly port: number, private readonly extraArgs: string[] = ["--save", "", "--appendonly", "no"]) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Start and wait until it answers PING. */
  async start(): Promise<void> {
    const proc = spawn(REDIS_SERVER, [
      "--port", String(this.port), "--bind", "127.0.0.1", ...this.extraArgs,
    ], { stdio: "ignore" });
    this.proc = proc;
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`redis-server on port ${this.port} exited with ${proc.exitCode}`);
      const r = new Redis(this.url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
      r.on("error", () => {});
      try {
        await r.connect();
        await r.ping();
        return;
      } catch {
        await new Promise((res) => setTimeout(res, 50));
      } finally {
        r.disconnect();
      }
    }
    throw new Error(`redis-server on port ${this.port} did not answer within 5 s`);
  }

  /** SIGSTOP / SIGCONT by PID: a Redis that keeps the socket open but stops answering. */
  pause(): void {
    process.kill(this.proc!.pid!, "SIGSTOP");
  }
  resume(): void {
    process.kill(this.proc!.pid!, "SIGCONT");
  }

  /** Kill by PID and wait for the process to be gone. */
  async kill(): Promise<void> {
    const proc = this.proc;
    this.proc = undefined;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise((res) => proc.once("exit", res));
    process.kill(proc.pid!, "SIGKILL");
    await gone;
  }
}
