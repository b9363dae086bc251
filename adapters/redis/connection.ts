/**
 * The ioredis client as the persistence needs it:
 * - start: one attempt, bounded by connectTimeoutMs; failure names the URL (no endless retry
 *   while the operator waits for a broker that will never come up);
 * - running: ioredis reconnects by itself with capped exponential backoff, logged sparsely;
 * - never buffer: a command issued while disconnected rejects at once (enableOfflineQueue
 *   false) and commands in flight when the socket drops reject at once (maxRetriesPerRequest 0,
 *   no resend), so the broker never acknowledges a QoS 1/2 message it could not store;
 *   a watchdog bounds a Redis that stops answering without closing the socket (one
 *   interval per connection instead of ioredis's commandTimeout, which arms a timer per
 *   command: ~10 % of a Redis-backed QoS 1 profile, and much of its GC);
 * - auto-pipelining: every command issued in one tick leaves in one write (one round trip).
 */
import { Redis } from "ioredis";
import { createLogger, type Logger } from "../../src/log.ts";
import { maskUrl } from "../../src/cli-format.ts";

export type RedisLogger = Pick<Logger, "info" | "warn" | "error">;

export interface ConnectionOptions {
  url: string;
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

/** The URL with any password masked, for logs and errors (as --print-config shows it). */
export const safeUrl = maskUrl;

export async function openRedis(opts: ConnectionOptions): Promise<Redis> {
  const log = opts.logger ?? createLogger("info");
  const where = safeUrl(opts.url);
  const connectTimeout = opts.connectTimeoutMs ?? 3000;
  const maxBackoff = opts.maxBackoffMs ?? 2000;
  let started = false;
  let lastError: Error | undefined;
  let firstError: Error | undefined; // at start the first error is the cause, later ones echo it
  let attempts = 0;

  const redis = new Redis(opts.url, {
    lazyConnect: true,
    enableAutoPipelining: opts.autoPipelining ?? true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectTimeout,
    keepAlive: 5000,
    retryStrategy: (n) => (started ? Math.min(50 * 2 ** n, maxBackoff) : null),
  });

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
      `Redis unreachable at ${where}: ${reason}. Check that Redis is running and reachable at that URL.`,
      { cause: e },
    );
  } finally {
    clearTimeout(timer);
  }
  await checkDatabase(redis, opts.url, where);
  started = true;
  watchdogs.set(redis, watchdog(redis, opts.commandTimeoutMs ?? 5000, where));
  return redis;
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

const watchdogs = new WeakMap<Redis, ReturnType<typeof setInterval>>();

/**
 * Rejects the commands waiting for replies once the oldest has waited `timeout` ms, like
 * ioredis's commandTimeout does per command (the late replies are matched and ignored), but
 * with one interval instead of a timer per command.
 */
function watchdog(redis: Redis, timeout: number, where: string): ReturnType<typeof setInterval> {
  let head: QueuedCommand | undefined;
  let since = 0;
  const t = setInterval(() => {
    const q = (redis as unknown as { commandQueue?: CommandQueue }).commandQueue;
    const first = q && q.length > 0 ? q.peekFront() : undefined;
    if (first === undefined) {
      head = undefined;
      return;
    }
    const now = Date.now();
    if (first !== head) {
      head = first;
      since = now;
      return;
    }
    if (now - since < timeout) return;
    const err = new Error(`Redis at ${where} did not answer within ${timeout} ms`);
    for (const item of q!.toArray()) item.command?.reject?.(err);
    since = now; // commands sent from now on get a budget of their own
  }, Math.max(25, Math.min(1000, Math.floor(timeout / 4))));
  (t as { unref?: () => void }).unref?.();
  return t;
}

/** Quit politely, then make sure no socket or reconnect timer is left behind. */
export async function closeRedis(redis: Redis): Promise<void> {
  clearInterval(watchdogs.get(redis));
  redis.removeAllListeners("close"); // a deliberate close is not a lost connection
  redis.removeAllListeners("reconnecting");
  try {
    if (redis.status === "ready") await redis.quit();
  } catch {
    // already gone
  } finally {
    redis.disconnect();
  }
}
