/**
 * Start a Colibri broker in this test process, on an ephemeral port, behind the adapter of the
 * runtime that runs the test (Bun.listen under `bun test`, Deno.listen under `deno test`), so
 * each runtime exercises its own adapter over real sockets.
 */
import { Broker } from "../../src/broker.ts";
import { type Config, resolveConfig } from "../../src/config.ts";
import type { Clock } from "../../src/clock.ts";
import { createLogger, type Logger } from "../../src/log.ts";
import { MemoryPersistence } from "../../src/persistence/memory.ts";
import type { Persistence } from "../../src/persistence/persistence.ts";
import type { Listener, ListenFn } from "../../src/transport.ts";
import { after, before } from "node:test";
import { RawClient } from "./raw-client.ts";

export const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

export async function listenFn(): Promise<ListenFn> {
  const mod = isBun ? await import("../../adapters/bun/tcp.ts") : await import("../../adapters/deno/tcp.ts");
  return mod.listenTcp as ListenFn;
}

export interface TestBroker {
  broker: Broker;
  port: number;
  persistence: Persistence;
  listener: Listener;
  /** Log lines written by the broker (level >= info unless logLevel is given). */
  logs: string[];
  close(): Promise<void>;
}

export async function startBroker(
  config: Partial<Config> = {},
  opts: { persistence?: Persistence; clock?: Clock; log?: Logger; start?: boolean } = {},
): Promise<TestBroker> {
  const logs: string[] = [];
  const cfg = resolveConfig({ host: "127.0.0.1", port: 0, logLevel: "info", ...config });
  const clock = opts.clock;
  const persistence = opts.persistence ?? new MemoryPersistence({ now: clock ? () => clock.now() : undefined });
  const log = opts.log ?? createLogger(cfg.logLevel, (l) => logs.push(l));
  const broker = new Broker({ config: cfg, persistence, clock, log });
  if (opts.start !== false) await broker.start();
  const listen = await listenFn();
  const listener = await listen(broker, { host: cfg.host, port: 0 });
  let closed = false;
  return {
    broker,
    port: listener.port,
    persistence,
    listener,
    logs,
    async close() {
      if (closed) return;
      closed = true;
      await listener.close();
      await broker.close();
    },
  };
}

/**
 * One broker for a describe block: started in before() and handed to `set`, closed (with
 * every RawClient still open) in after().
 */
export function useBroker(
  set: (b: TestBroker) => void,
  config: Partial<Config> = {},
  opts: Parameters<typeof startBroker>[1] = {},
): void {
  let b: TestBroker | undefined;
  before(async () => {
    b = await startBroker(config, opts);
    set(b);
  });
  after(async () => {
    RawClient.destroyAll();
    await b?.close();
  });
}

/** Unique client ids / topics within a file: uid("s") -> "s-1", "s-2", ... */
export function uniqueIds(): (prefix: string) => string {
  let n = 0;
  return (prefix) => `${prefix}-${++n}`;
}
