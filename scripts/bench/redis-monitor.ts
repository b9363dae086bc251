/** Counting what a Redis topology's clients send it (MONITOR on every master), for the benchmarks. */
import type { RedisTopology } from "../redis-topology.ts";
import { sleep } from "./ports.ts";

/** The masters of a topology now (one, or every master of a Cluster). */
export async function mastersOf(t: RedisTopology) {
  return t.kind === "cluster" ? await t.masters() : [await t.masterOf()];
}

/**
 * Commands that came from clients (not from inside a script), counted with MONITOR on every
 * master while `fn` runs. MONITOR slows Redis down: only for counting, never for throughput.
 */
export async function clientCommands(t: RedisTopology, fn: () => Promise<void>): Promise<{ client: number; byName: Record<string, number> }> {
  const byName: Record<string, number> = {};
  let client = 0;
  const mark = `colibri-mark-${Math.random().toString(36).slice(2)}`;
  const masters = await mastersOf(t);
  const seen = new Set<number>();
  const monitors = await Promise.all(masters.map(async (m, i) => {
    const mon = await t.nodeClient(m).monitor();
    mon.on("monitor", (_time: string, args: string[], source: string) => {
      if (source.startsWith("lua")) return;
      const name = String(args[0]).toLowerCase();
      if (name === "echo" && args[1] === mark) seen.add(i);
      if (name === "info" || name === "monitor" || name === "echo") return;
      client++;
      byName[name] = (byName[name] ?? 0) + 1;
    });
    return mon;
  }));
  try {
    await fn();
    // MONITOR's stream lags behind under load: everything up to a marker is counted
    for (const m of masters) {
      const c = t.nodeClient(m);
      await c.echo(mark).finally(() => c.disconnect());
    }
    const deadline = Date.now() + 60_000;
    while (seen.size < masters.length && Date.now() < deadline) await sleep(50);
  } finally {
    for (const mon of monitors) mon.disconnect();
  }
  return { client, byName };
}
