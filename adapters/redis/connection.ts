/**
 * The ioredis client as the persistence needs it, on any of the three topologies: one Redis
 * (`--redis-url`), a Sentinel set-up (ioredis's own Sentinel support: it asks the sentinels for
 * the master and follows failovers) or a Redis Cluster (ioredis's Cluster client: slots,
 * MOVED/ASK redirections). TLS and credentials come from the URL and the TLS files.
 *
 * - start: one attempt, bounded by connectTimeoutMs; failure names where it tried (no endless
 *   retry while the operator waits for a broker that will never come up);
 * - running: ioredis reconnects by itself with capped exponential backoff, logged sparsely;
 * - never buffer, never resend: a command issued while disconnected rejects at once
 *   (enableOfflineQueue false), commands in flight when a socket drops reject at once
 *   (maxRetriesPerRequest 0, no resend; on a Cluster no retry "on failover" either: such a
 *   command may have been applied), so the broker never acknowledges a QoS 1/2 message it
 *   could not store and never applies one twice. A Cluster still follows MOVED and ASK (the
 *   command was not run) and learns the new master of a failed shard from the slot table;
 * - a watchdog bounds a Redis that stops answering without closing the socket (one interval
 *   per client instead of ioredis's commandTimeout, which arms a timer per command);
 * - auto-pipelining: every command issued in one tick leaves in one write per server.
 */
import type { Buffer } from "node:buffer";
import { readFileSync } from "node:fs";
import { Cluster, Redis, type RedisOptions } from "ioredis";
import { createLogger, type Logger } from "../../src/log.ts";
import { type RedisTarget, safeUrl } from "../../src/redis-config.ts";

export { safeUrl };
export type { RedisTarget };

export type RedisLogger = Pick<Logger, "info" | "warn" | "error">;
/** One Redis (possibly found through Sentinel) or a Redis Cluster. */
export type RedisClient = Redis | Cluster;

export interface ConnectionOptions extends RedisTarget {
  /** Start-up connect budget in ms (default 3000). */
  connectTimeoutMs?: number;
  /** Per-command reply budget in ms while running (default 5000). */
  commandTimeoutMs?: number;
  /** Reconnect backoff cap in ms (default 2000). */
  maxBackoffMs?: number;
  /** Where connection loss / reconnects are reported (default: an info-level logger). */
  logger?: RedisLogger;
  /** Batch the commands of one tick into one write (default true; a blocking reader does not). */
  autoPipelining?: boolean;
}

/** Where a target is, for logs and errors (no password). */
export function describeTarget(t: RedisTarget): string {
  const list = (l: { host: string; port: number }[]) => l.map((h) => `${h.host}:${h.port}`).join(",");
  if (t.cluster) return `Redis Cluster ${list(t.cluster)}`;
  if (t.sentinels) return `master "${t.sentinelName}" of sentinels ${list(t.sentinels)}`;
  return safeUrl(t.url);
}

export function isCluster(r: RedisClient): r is Cluster {
  return (r as Cluster).isCluster === true;
}

function readPem(path: string | undefined, option: string, what: string): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(
      `cannot read ${option} ${JSON.stringify(path)}: ${(e as Error).message}. Give the path of ${what} (PEM).`,
    );
  }
}

/** The ioredis options a target implies (credentials and database from the URL, TLS files). */
function urlOptions(t: RedisTarget): RedisOptions {
  const u = new URL(t.url);
  const o: RedisOptions = {};
  if (u.username) o.username = decodeURIComponent(u.username);
  if (u.password) o.password = decodeURIComponent(u.password);
  const db = u.pathname.replace(/^\//, "");
  if (db) o.db = Number(db);
  if (u.protocol === "rediss:") {
    o.tls = {
      ca: readPem(t.tls?.ca, "--redis-tls-ca", "the CA certificate that signed the Redis servers' certificates"),
      cert: readPem(t.tls?.cert, "--redis-tls-cert", "this client's certificate"),
      key: readPem(t.tls?.key, "--redis-tls-key", "this client's private key"),
    };
  }
  if (!t.sentinels && !t.cluster) {
    o.host = u.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1";
    o.port = Number(u.port || 6379);
  }
  return o;
}

function create(opts: ConnectionOptions, started: () => boolean): RedisClient {
  const connectTimeout = opts.connectTimeoutMs ?? 3000;
  const maxBackoff = opts.maxBackoffMs ?? 2000;
  const backoff = (n: number) => (started() ? Math.min(50 * 2 ** n, maxBackoff) : null);
  const common: RedisOptions = {
    ...urlOptions(opts),
    enableAutoPipelining: opts.autoPipelining ?? true,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectTimeout,
    keepAlive: 5000,
  };
  if (opts.cluster) {
    const { enableAutoPipelining, ...node } = common;
    const cluster = new Cluster(opts.cluster, {
      lazyConnect: true,
      enableAutoPipelining,
      // see failFastWhileDown: nothing is buffered while the cluster is down; a command for a
      // node that is still connecting waits for that connection (bounded by connectTimeout)
      enableOfflineQueue: true,
      // a command on a connection that closed may have been applied: never re-sent
      retryDelayOnFailover: 0,
      // CLUSTERDOWN (a shard failing over): fail at once, like an outage. ioredis would retry
      // only once a slot-table refresh has finished, and commands issued meanwhile queue up
      // behind the retried ones: heartbeats stalled past their lease that way
      retryDelayOnClusterDown: 0,
      // TRYAGAIN (keys of one call split by a slot migration, nothing applied): retried
      retryDelayOnTryAgain: 50,
      // a failed shard's new master is learnt from the slot table (also refreshed on errors)
      slotsRefreshInterval: 1000,
      slotsRefreshTimeout: Math.min(connectTimeout, 1000),
      clusterRetryStrategy: (n: number) => backoff(n),
      redisOptions: node,
    });
    failFastWhileDown(cluster);
    return cluster;
  }
  if (opts.sentinels) {
    const { tls, ...rest } = common;
    return new Redis({
      ...rest,
      lazyConnect: true,
      enableOfflineQueue: false,
      sentinels: opts.sentinels,
      name: opts.sentinelName,
      // TLS (rediss://) applies to the sentinels and to the master alike
      ...(tls ? { tls, sentinelTLS: tls, enableTLSForSentinelMode: true } : {}),
      // a failover is learnt from the sentinels (+switch-master), not only from a dropped socket
      failoverDetector: true,
      sentinelRetryStrategy: (n: number) => backoff(n),
      retryStrategy: (n: number) => backoff(n),
    });
  }
  return new Redis({ ...common, lazyConnect: true, enableOfflineQueue: false, retryStrategy: (n: number) => backoff(n) });
}

export async function openRedis(opts: ConnectionOptions): Promise<RedisClient> {
  const log = opts.logger ?? createLogger("info");
  const where = describeTarget(opts);
  const connectTimeout = opts.connectTimeoutMs ?? 3000;
  let started = false;
  let lastError: Error | undefined;
  let firstError: Error | undefined; // at start the first error is the cause, later ones echo it
  let attempts = 0;

  const redis = create(opts, () => started);

  // An "error" listener is mandatory (ioredis prints unhandled ones); the reason is logged
  // with the reconnect lines below instead of once per failed attempt.
  redis.on("error", (e: Error) => {
    lastError = e;
    firstError ??= e;
  });
  redis.on("close", () => {
    if (started && attempts === 0 && redis.status !== "end") {
      log.warn("redis connection lost; persistent-session writes fail until it is back", {
        url: where,
        error: lastError?.message,
      });
    }
  });
  redis.on("reconnecting", (delay: number) => {
    attempts++;
    if ((attempts & (attempts - 1)) === 0) { // 1, 2, 4, 8, ...: sparse during a long outage
      log.warn("redis reconnecting", { url: where, attempt: attempts, delayMs: delay, error: lastError?.message });
    }
  });
  redis.on("ready", () => {
    if (started && attempts > 0) log.info("redis reconnected", { url: where, attempts });
    attempts = 0;
    lastError = undefined;
  });
  if (isCluster(redis)) watchShards(redis, log, where, () => started);

  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      redis.connect(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${connectTimeout} ms`)), connectTimeout + 500);
      }),
    ]);
  } catch (e) {
    redis.disconnect();
    const reason = (firstError?.message ?? (e as Error).message).replace(/\.+$/, "");
    throw new Error(
      `Redis unreachable at ${where}: ${reason}. Check that Redis is running and reachable there` +
        `${opts.url.startsWith("rediss:") ? " with TLS" : ""} and that the credentials are right.`,
      { cause: e },
    );
  } finally {
    clearTimeout(timer);
  }
  if (!isCluster(redis)) await checkDatabase(redis, opts.url, where);
  started = true;
  watchdogs.set(redis, watchdog(redis, opts.commandTimeoutMs ?? 5000, where));
  return redis;
}

/**
 * A Cluster client with ioredis's offline queue off refuses a command for a node whose
 * connection is still being made (a node learnt from the slot table is connected lazily, by the
 * first command for it). An auto-pipeline whose first command starts that connection then has
 * its other commands refused while the first waits for the rest of the pipeline to be written:
 * forever, and every later pipeline to that node waits behind it (leases stalled past their
 * lapse after a failover or an outage). So the offline queue is on, and this refuses at once,
 * as the option would, whatever is sent while the cluster as a whole is not ready: nothing is
 * buffered during an outage (its own slot-table and ready-check commands excepted).
 */
function failFastWhileDown(cluster: Cluster): void {
  type Send = (command: { name: string; reject(e: Error): void; promise: Promise<unknown> }, ...rest: unknown[]) => Promise<unknown>;
  const c = cluster as unknown as { sendCommand: Send };
  const send = c.sendCommand.bind(cluster);
  c.sendCommand = (command, ...rest) => {
    if (cluster.status !== "ready" && command.name !== "cluster") {
      command.reject(new Error("Cluster isn't ready and commands are not buffered"));
      return command.promise;
    }
    return send(command, ...rest);
  };
}

/**
 * A Cluster stays "ready" while one shard fails over: its shards' troubles are logged here,
 * sparsely, and a node that errors makes the client read the slot table again (the shard's
 * new master is found without waiting for the periodic refresh).
 */
function watchShards(cluster: Cluster, log: RedisLogger, where: string, started: () => boolean): void {
  const troubled = new Map<string, { count: number; since: number }>();
  cluster.on("node error", (e: Error, node: string) => {
    if (!started()) return;
    const now = Date.now();
    let t = troubled.get(node);
    if (t === undefined || now - t.since > 60_000) troubled.set(node, t = { count: 0, since: now });
    t.count++;
    if ((t.count & (t.count - 1)) === 0) { // 1, 2, 4, 8, ...: sparse while a shard is down
      log.warn("redis cluster node error", { url: where, server: node, count: t.count, error: e?.message });
    }
    (cluster as unknown as { refreshSlotsCache?: () => void }).refreshSlotsCache?.();
  });
}

/**
 * The database a URL names (`redis://host/5`) must exist: ioredis selects it on connect but
 * goes on with database 0 when the server refuses, which would silently mix data.
 */
async function checkDatabase(redis: Redis, url: string, where: string): Promise<void> {
  let db: number;
  try {
    db = Number(new URL(url).pathname.replace(/^\//, "") || "0");
  } catch {
    return;
  }
  if (!Number.isInteger(db) || db === 0) return;
  try {
    await redis.select(db);
  } catch (e) {
    let have = "";
    try {
      const r = await redis.config("GET", "databases") as string[];
      if (r[1]) have = ` (it has ${r[1]}: 0 to ${Number(r[1]) - 1})`;
    } catch { /* CONFIG may be disabled */ }
    redis.disconnect();
    throw new Error(
      `Redis at ${where} has no database ${db}${have}: ${(e as Error).message}. Use a database number that exists in --redis-url.`,
    );
  }
}

interface QueuedCommand {
  command?: { reject?: (e: Error) => void };
}
interface CommandQueue {
  length: number;
  peekFront(): QueuedCommand | undefined;
  toArray(): QueuedCommand[];
}

/** The servers a client talks to (one, or every node of a Cluster). */
export function servers(r: RedisClient): Redis[] {
  return isCluster(r) ? r.nodes("all") : [r];
}

const watchdogs = new WeakMap<RedisClient, ReturnType<typeof setInterval>>();

/**
 * Rejects the commands waiting for replies on a connection once the oldest has waited
 * `timeout` ms, like ioredis's commandTimeout does per command (the late replies are matched
 * and ignored), but with one interval instead of a timer per command.
 */
function watchdog(client: RedisClient, timeout: number, where: string): ReturnType<typeof setInterval> {
  const state = new WeakMap<Redis, { head: QueuedCommand | undefined; since: number }>();
  const t = setInterval(() => {
    const now = Date.now();
    for (const redis of servers(client)) {
      const q = (redis as unknown as { commandQueue?: CommandQueue }).commandQueue;
      const first = q && q.length > 0 ? q.peekFront() : undefined;
      let s = state.get(redis);
      if (s === undefined) state.set(redis, s = { head: undefined, since: now });
      if (first === undefined) {
        s.head = undefined;
        continue;
      }
      if (first !== s.head) {
        s.head = first;
        s.since = now;
        continue;
      }
      if (now - s.since < timeout) continue;
      const err = new Error(`Redis at ${where} did not answer within ${timeout} ms`);
      for (const item of q!.toArray()) item.command?.reject?.(err);
      s.since = now; // commands sent from now on get a budget of their own
    }
  }, Math.max(25, Math.min(1000, Math.floor(timeout / 4))));
  (t as { unref?: () => void }).unref?.();
  return t;
}

/** Close at once (a connection with nothing to finish, e.g. a blocked reader). */
export function dropConnection(redis: RedisClient): void {
  clearInterval(watchdogs.get(redis));
  redis.removeAllListeners("close");
  redis.removeAllListeners("reconnecting");
  redis.removeAllListeners("node error");
  redis.disconnect();
}

/**
 * Load scripts into every server a client talks to, now and whenever it connects to a server
 * again (one that restarted, a promoted replica: Redis does not copy scripts to replicas).
 * ioredis answers a NOSCRIPT by sending EVAL after the commands queued behind the call, so a
 * script Redis does not know reorders a connection's writes (a retained message was lost to
 * the SUBSCRIBE right after it that way). SCRIPT LOAD is sent at once, never auto-pipelined:
 * on a connection that just came back it goes before the writes waiting for the next tick.
 */
export async function keepScriptsLoaded(client: RedisClient, luas: string[]): Promise<void> {
  const load = (r: Redis) => Promise.all(luas.map((l) => r.script("LOAD", l)));
  if (isCluster(client)) {
    client.on("+node", (r: Redis) => r.once("ready", () => void load(r).catch(() => {})));
    await Promise.all(client.nodes("all").map(load));
  } else {
    client.on("ready", () => void load(client).catch(() => {}));
    await load(client);
  }
}

/** Quit politely, then make sure no socket or reconnect timer is left behind. */
export async function closeRedis(redis: RedisClient): Promise<void> {
  clearInterval(watchdogs.get(redis));
  redis.removeAllListeners("close"); // a deliberate close is not a lost connection
  redis.removeAllListeners("reconnecting");
  redis.removeAllListeners("node error");
  try {
    if (redis.status === "ready") await redis.quit();
  } catch {
    // already gone
  } finally {
    redis.disconnect();
  }
}
