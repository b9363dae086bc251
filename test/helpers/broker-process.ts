/**
 * The real broker as a separate process (`bun run src/main.ts` under bun test, `deno run -A
 * src/main.ts` under deno test), for tests that kill it with SIGKILL and start it again.
 */
import { freePort, spawnProcess, type SpawnedProcess } from "./system.ts";
import { isBun } from "./broker.ts";

export interface BrokerProcess {
  proc: SpawnedProcess;
  port: number;
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

export async function startBrokerProcess(args: string[], port?: number): Promise<BrokerProcess> {
  const p = port ?? await freePort();
  const cmd = isBun ? "node_modules/.bin/bun" : "node_modules/.bin/deno";
  const pre = isBun ? ["run", "src/main.ts"] : ["run", "-A", "src/main.ts"];
  // COLIBRI_TEST_ECHO=1 copies the broker's log to the test output (debugging a failure)
  const echo = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env.COLIBRI_TEST_ECHO === "1";
  const proc = spawnProcess(cmd, [...pre, "--host", "127.0.0.1", "--port", String(p), ...args], { echo });
  await proc.waitForLine(/colibri listening/, 20_000);
  return {
    proc,
    port: p,
    async kill9() {
      await proc.kill("SIGKILL");
    },
    async stop() {
      if (proc.running) await proc.kill("SIGTERM");
    },
  };
}
