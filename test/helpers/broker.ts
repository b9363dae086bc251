/**
 * Start a Colibri broker in this test process, on an ephemeral port, behind the adapters of the
 * runtime that runs the test (Bun.listen / Bun.serve under `bun test`, Deno.listen / node:tls /
 * Deno.serve under `deno test`, as src/main.ts picks them), so each runtime exercises its own
 * adapters over real sockets. `listen` URLs open more listeners beside the plain one.
 */
import { Broker } from "../../src/broker.ts";
import { type Config, resolveConfig } from "../../src/config.ts";
import type { Clock } from "../../src/clock.ts";
import { createLogger, type Logger } from "../../src/log.ts";
import { MemoryPersistence } from "../../src/persistence/memory.ts";
import type { Persistence } from "../../src/persistence/persistence.ts";
import type { ClusterBus } from "../../src/cluster/bus.ts";
import type { Security } from "../../src/auth/auth.ts";
import type { Listener } from "../../src/transport.ts";
import { listenerSpecs } from "../../src/listener-spec.ts";
import { closeListeners, openListeners, type OpenListener } from "../../src/listeners.ts";
import { loadTransports } from "../../src/main.ts";
import { after, before } from "node:test";
import { RawClient } from "./raw-client.ts";

export const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

/**
 * The store a test broker gets unless the test brings its own: memory, or with
 * COLIBRI_TEST_PERSISTENCE=redis the Redis backend under a fresh key prefix (the same wire
 * suites then run against Redis; run `COLIBRI_TEST_PERSISTENCE=redis npm test -- test/wire`).
 */
async function defaultPersistence(
  clock?: Clock,
): Promise<{ persistence: Persistence; bus?: ClusterBus; cleanup?: () => Promise<void> }> {
  const now = clock ? () => clock.now() : undefined;
  if ((globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env.COLIBRI_TEST_PERSISTENCE !== "redis") {
    return { persistence: new MemoryPersistence({ now }) };
  }
  const { RedisPersistence } = await import("../../adapters/redis/redis.ts");
  const { RedisBus } = await import("../../adapters/redis/bus.ts");
  const { deletePrefix } = await import("./redis-server.ts");
  const prefix = `colibri-test:wire:${Math.random().toString(36).slice(2)}:`;
  const url = "redis://127.0.0.1:6379";
  const quiet = { info() {}, warn() {}, error() {} };
  const persistence = await RedisPersistence.connect({ url, prefix, now, logger: quiet });
  // a node alone on Redis is a cluster of one: the same suites run through the cluster paths
  const bus = new RedisBus(persistence, {
    nodeId: `test-${Math.random().toString(36).slice(2, 8)}`, leaseMs: 3000, logger: quiet,
  });
  const cleanup = async () => {
    await persistence.close();
    await deletePrefix(url, prefix);
  };
  return { persistence, bus, cleanup };
}

export interface TestBroker {
  broker: Broker;
  port: number;
  persistence: Persistence;
  /** The plain TCP listener (`port`). */
  listener: Listener;
  /** Every listener, the plain one first; `url(scheme)` gives the URL of the first of a scheme. */
  listeners: OpenListener[];
  url(scheme: "mqtt" | "mqtts" | "ws" | "wss"): string;
  /** Log lines written by the broker (level >= info unless logLevel is given). */
  logs: string[];
  close(): Promise<void>;
}

export async function startBroker(
  config: Partial<Config> = {},
  opts: { persistence?: Persistence; clock?: Clock; log?: Logger; start?: boolean; bus?: ClusterBus; security?: Security } = {},
): Promise<TestBroker> {
  const logs: string[] = [];
  const cfg = resolveConfig({ host: "127.0.0.1", port: 0, logLevel: "info", ...config });
  const clock = opts.clock;
  const own = opts.persistence ? undefined : await defaultPersistence(clock);
  const persistence = opts.persistence ?? own!.persistence;
  const log = opts.log ?? createLogger(cfg.logLevel, (l) => logs.push(l));
  const broker = new Broker({ config: cfg, persistence, clock, log, bus: opts.bus ?? own?.bus, security: opts.security });
  if (opts.start !== false) await broker.start();
  const listeners = await openListeners(listenerSpecs(cfg), await loadTransports(), broker, cfg, log);
  const listener = listeners[0].listener;
  let closed = false;
  return {
    broker,
    port: listener.port,
    persistence,
    listener,
    listeners,
    url(scheme) {
      const o = listeners.find((l) => l.spec.scheme === scheme);
      if (!o) throw new Error(`no ${scheme}:// listener in this test broker`);
      return o.spec.name.replace(/^(\w+:\/\/)0\.0\.0\.0:/, "$1127.0.0.1:");
    },
    logs,
    async close() {
      if (closed) return;
      closed = true;
      await closeListeners(listeners);
      await broker.close();
      await own?.cleanup?.();
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

/**
 * Wait (polling every `everyMs`, bounded) until a condition holds: the broker's state, or
 * something asked over the network (an async condition, e.g. a scrape of /metrics).
 */
export async function until(
  cond: () => boolean | Promise<boolean>,
  what: string,
  ms = 1500,
  everyMs = 5,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out (${ms} ms) waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Publish as the broker itself (as its $SYS statistics are): clients may not publish to
 * `$`-topics, so tests of the `$` rule put their messages there this way.
 */
export async function brokerPublish(
  b: TestBroker, topic: string, payload: string, o: { qos?: 0 | 1 | 2; retain?: boolean } = {},
): Promise<void> {
  const r = b.broker.publish({
    id: b.broker.newMessageId(), topic, payload: new TextEncoder().encode(payload), qos: o.qos ?? 0,
    retain: o.retain ?? false, receivedAt: Date.now(),
  });
  await r.done;
}

/**
 * For a file whose tests each want a broker of their own configuration: the returned function
 * starts one; all of them (and every RawClient still open) are closed in after().
 */
export function brokersForFile(): (config?: Partial<Config>) => Promise<TestBroker> {
  const open: TestBroker[] = [];
  after(async () => {
    RawClient.destroyAll();
    for (const b of open) await b.close();
  });
  return async (config = {}) => {
    const b = await startBroker(config);
    open.push(b);
    return b;
  };
}
