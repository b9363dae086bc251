/**
 * The Redis options (--redis-url, TLS files, Sentinel, Cluster, WAIT) checked together, and the
 * connection target they describe. Errors name the option, the value (a password masked) and
 * the fix. No I/O here: the TLS files are read when connecting (adapters/redis/connection.ts).
 */
import { type Config, ConfigError } from "./config.ts";
import { maskUrl } from "./cli-format.ts";

export interface HostPort {
  host: string;
  port: number;
}

/** Where and how to reach Redis (adapters/redis/connection.ts). */
export interface RedisTarget {
  /** Scheme (redis:// or rediss:// for TLS), credentials, database; host:port of a single Redis. */
  url: string;
  /** PEM files: the CA that signed the servers' certificates, and this client's certificate and key. */
  tls?: { ca?: string; cert?: string; key?: string };
  /** Sentinels to ask for the current master named `sentinelName`. */
  sentinels?: HostPort[];
  sentinelName?: string;
  /** Seed nodes of a Redis Cluster. */
  cluster?: HostPort[];
}

/** The URL with any password masked, for logs and errors (one place: cli-format.ts). */
export const safeUrl = maskUrl;

function bad(value: string, option: string, fix: string): ConfigError {
  return new ConfigError(`invalid value ${JSON.stringify(value)} for ${option}: ${fix}`);
}

/** "host:port,host:port" -> a list; every entry must have a host and a port. */
export function parseHostList(value: string, option: string): HostPort[] {
  const out: HostPort[] = [];
  for (const part of value.split(",")) {
    const item = part.trim();
    const m = /^(\[[^\]]+\]|[^:\s]+):(\d{1,5})$/.exec(item);
    const port = m ? Number(m[2]) : NaN;
    if (!m || port < 1 || port > 65535) {
      throw bad(value, option, `expected host:port[,host:port...] (e.g. 10.0.0.1:26379,10.0.0.2:26379); ${JSON.stringify(item)} is not one`);
    }
    out.push({ host: m[1].replace(/^\[|\]$/g, ""), port });
  }
  return out;
}

/**
 * Cross-checks of the Redis options (with --persistence redis; given without --persistence they
 * imply it, beside --persistence memory they are ignored with a warning: cli.ts); returns the
 * target they describe.
 */
export function redisTarget(c: Config): RedisTarget {
  const shown = safeUrl(c.redisUrl);
  const optionsSet = ([
    ["--redis-tls-ca", c.redisTlsCa], ["--redis-tls-cert", c.redisTlsCert], ["--redis-tls-key", c.redisTlsKey],
    ["--redis-sentinels", c.redisSentinels], ["--redis-cluster", c.redisCluster],
  ] as const).filter(([, v]) => v !== "");
  let u: URL;
  try {
    u = new URL(c.redisUrl);
  } catch {
    throw bad(shown, "--redis-url", "expected redis://[user:password@]host[:port][/db] or rediss://... for TLS");
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") {
    throw bad(shown, "--redis-url", `the scheme must be redis:// or rediss:// (TLS), not ${u.protocol}//`);
  }
  const db = u.pathname.replace(/^\//, "");
  if (db !== "" && !/^\d+$/.test(db)) throw bad(shown, "--redis-url", `the database after the host must be a number (e.g. /0), not /${db}`);
  const tls = u.protocol === "rediss:";
  for (const [name, v] of optionsSet) {
    if (name.startsWith("--redis-tls") && !tls) {
      throw bad(v, name, `TLS files need a TLS connection: use rediss:// in --redis-url (it is ${shown})`);
    }
  }
  if ((c.redisTlsCert === "") !== (c.redisTlsKey === "")) {
    const [given, missing] = c.redisTlsCert ? ["--redis-tls-cert", "--redis-tls-key"] : ["--redis-tls-key", "--redis-tls-cert"];
    throw bad(c.redisTlsCert || c.redisTlsKey, given, `a client certificate needs its key and the key its certificate: add ${missing}`);
  }
  const target: RedisTarget = { url: c.redisUrl };
  if (tls) target.tls = { ca: c.redisTlsCa || undefined, cert: c.redisTlsCert || undefined, key: c.redisTlsKey || undefined };
  if (c.redisSentinels !== "" && c.redisCluster !== "") {
    throw new ConfigError("--redis-sentinels and --redis-cluster are both set: Redis is either a Sentinel set-up or a Redis Cluster; keep one");
  }
  if (c.redisSentinels !== "") {
    target.sentinels = parseHostList(c.redisSentinels, "--redis-sentinels");
    if (c.redisSentinelName.trim() === "") {
      throw bad(c.redisSentinelName, "--redis-sentinel-name", "name the master the sentinels monitor (the name in `sentinel monitor <name> ...`)");
    }
    target.sentinelName = c.redisSentinelName;
  }
  if (c.redisCluster !== "") {
    target.cluster = parseHostList(c.redisCluster, "--redis-cluster");
    if (db !== "" && db !== "0") {
      throw bad(shown, "--redis-url", `Redis Cluster has only database 0: remove /${db} (use --redis-prefix to keep brokers apart)`);
    }
    if (/[{}]/.test(c.redisPrefix)) {
      throw bad(c.redisPrefix, "--redis-prefix", "on Redis Cluster a prefix cannot contain { or } (they would change the slot of every key): choose another prefix");
    }
  }
  return target;
}
