/**
 * Command line, environment and config file -> Config. Precedence: flags > environment
 * (COLIBRI_<OPTION>) > JSON config file (--config) > defaults; where each value came from is
 * kept for --print-config. Every error names the option, the value and the fix.
 */
import { coerce, type Config, ConfigError, defaults, flagName, resolveConfig, rules } from "./config.ts";
import { formatConfig, formatHelp, type Note, type Origin, type Origins } from "./cli-format.ts";
import { listenerSpecs } from "./listener-spec.ts";

export { VERSION } from "./version.ts";
import { VERSION } from "./version.ts";

const descriptions: Partial<Record<keyof Config, string>> = {
  host: "address of the plain TCP listener",
  port: "port of the plain TCP listener (0 = any free port)",
  listen: "a listener URL, repeatable: mqtt://host:port, mqtts://, ws://host:port/path, wss://; options in the query (?proxy-protocol=true)",
  cafile: "PEM CA file that client certificates must chain to",
  certfile: "PEM certificate (chain) of mqtts:// and wss:// listeners",
  keyfile: "PEM private key of mqtts:// and wss:// listeners",
  requireCertificate: "TLS listeners refuse clients without a certificate signed by --cafile",
  useIdentityAsUsername: "the client certificate's CN (or SAN) is the user name (needs --require-certificate)",
  proxyProtocol: "mqtt:// listeners expect a PROXY protocol v1/v2 header (HAProxy send-proxy-v2)",
  nodeId: "this node's name in a cluster and in logs; unique per process either way",
  persistence: "memory (embedded) or redis; a --redis-url without --persistence means redis",
  redisUrl: "Redis URL (redis://[user:password@]host:port[/db], rediss:// for TLS)",
  redisPrefix: "key prefix in Redis (several brokers or tests can share one Redis)",
  redisTlsCa: "with rediss://: CA certificate (PEM) that signed the Redis servers' certificates",
  redisTlsCert: "with rediss://: client certificate (PEM) for Redis servers that require one",
  redisTlsKey: "with rediss://: the client certificate's private key (PEM)",
  redisSentinels: "Sentinel set-up: host:port,... of the sentinels (--redis-url gives credentials and db)",
  redisSentinelName: "Sentinel set-up: the name of the master the sentinels monitor",
  redisCluster: "Redis Cluster: host:port,... of some of its nodes (--redis-url gives credentials)",
  redisWaitReplicas: "acknowledge QoS 1/2 only once this many Redis replicas have the write (WAIT; 0 = no wait)",
  connectTimeoutMs: "ms a connection may take to send CONNECT",
  maxPacketSize: "largest packet accepted, bytes",
  maxConnectSize: "largest CONNECT accepted, bytes (capped by --max-packet-size)",
  maxQueuedMessages: "QoS 1/2 messages queued per session behind its inflight window",
  maxQueuedBytes: "bytes of QoS 1/2 messages held per session, in flight and queued together",
  maxInflight: "QoS 1/2 messages in flight per client",
  receiveMaximum: "QoS 1/2 publishes a client may leave unacknowledged (MQTT 5)",
  maxOutputBuffer: "bytes buffered per slow connection before QoS 0 is dropped",
  maxMemoryBytes: "bytes held for messages broker-wide: past 80% QoS 0 shed, 90% QoS 1/2 refused, 100% connections refused (0 = no limit)",
  maxTopicLevels: "levels a topic name or filter may have",
  sysInterval: "seconds between $SYS/broker/... statistics (0 = none)",
  topicAliasMaximum: "topic aliases accepted per client (MQTT 5)",
  maxKeepalive: "cap on client keepalive, seconds (0 = none)",
  maxSessionExpiry: "cap on session expiry interval, seconds",
  maximumQoS: "highest QoS granted",
  retainAvailable: "accept retained messages (MQTT 5 Retain Available)",
  wildcardSubscriptionAvailable: "accept '+' and '#' in topic filters",
  subscriptionIdentifiersAvailable: "accept subscription identifiers (MQTT 5)",
  sharedSubscriptionAvailable: "accept $share/{group}/{filter} subscriptions",
  responseInformation: "Response Information returned when requested (MQTT 5)",
  serverReference: "redirect every client to this server (MQTT 5 0x9C/0x9D)",
  serverMoved: "with --server-reference: 0x9D server moved instead of 0x9C",
  logLevel: "debug, info, warn, error or silent",
  nodeLeaseMs: "cluster: ms after which a silent node is dead and its sessions and wills move",
  takeoverTimeoutMs: "cluster: ms to wait for the old node when a client id moves",
  allowAnonymous: "clients without a user name may connect (false: only users of --password-file)",
  passwordFile: "Mosquitto password file (mosquitto_passwd, or bun run src/cli/passwd.ts)",
  aclFile: "Mosquitto ACL file (user / topic / pattern lines)",
  authFailureDelayMs: "ms before a failed login is answered",
  maxConnections: "open connections on this node (0 = no limit)",
  maxConnectionsPerAddress: "open connections from one client address (0 = no limit)",
  maxConnectRate: "CONNECTs per second from one client address (0 = no limit)",
  maxSubscriptionsPerClient: "subscriptions one client may hold (0 = no limit)",
  maxRetainedMessages: "retained messages kept (0 = no limit)",
  maxRetainedBytes: "payload bytes of all retained messages (0 = no limit)",
  maxPublishRate: "PUBLISH packets per second per client; faster ones are slowed (0 = no limit)",
  publishRateGraceMs: "ms a client may stay slowed by --max-publish-rate before it is disconnected (0x96)",
  httpPort: "HTTP port for /metrics, /healthz, /readyz and POST /drain (0 = no HTTP endpoint)",
  httpHost: "address of the HTTP endpoint",
  logFormat: "text (one line per event, key=value) or json (one object per line)",
  shutdownTimeoutMs: "on SIGTERM, exit within this many ms even if closing is not finished",
  drainRate: "clients sent away per second when draining (SIGUSR2, POST /drain); 0 = all at once",
  drainServerReference: "MQTT 5 clients sent away by a drain or a shutdown get 0x9C Use another server with this reference instead of 0x8B",
  exitWithParent: "exit when the launcher that started the broker (npm start, deno task) goes away",
};

export function helpText(): string {
  return formatHelp(VERSION, (Object.keys(rules) as (keyof Config)[]).map((key) => ({
    flag: flagName(key),
    rule: rules[key],
    description: descriptions[key] ?? "",
    default: key === "nodeId" ? "random" : defaults[key],
  })));
}

export type CliResult =
  | { kind: "help" }
  | { kind: "version" }
  | { kind: "run" | "print-config"; config: Config; origins: Origins; notes: Note[] };

const keys = Object.keys(rules) as (keyof Config)[];
const byFlag = new Map<string, keyof Config>(keys.map((k) => [flagName(k), k]));
const envName = (k: keyof Config) => "COLIBRI_" + flagName(k).replace(/-/g, "_").toUpperCase();
/** A config file's keys: the flag spelling ("log-level") or the camelCase one ("logLevel"). */
const byFileKey = new Map<string, keyof Config>([...keys.map((k) => [k, k] as const), ...byFlag]);

export function parseCli(
  argv: string[],
  env: Record<string, string | undefined>,
  readFile: (path: string) => string,
): CliResult {
  const fromFlags: Partial<Record<keyof Config, unknown>> = {};
  const origins = {} as Origins;
  let configFile: string | undefined;
  let print = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--help" || a === "-h") return { kind: "help" };
    if (a === "--version" || a === "-v") return { kind: "version" };
    if (a === "--print-config") {
      print = true;
      continue;
    }
    if (!a.startsWith("--")) throw new ConfigError(`unexpected argument ${JSON.stringify(a)}: options start with --; see --help`);
    let name = a.slice(2);
    let value: string | undefined;
    const eq = name.indexOf("=");
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    if (name === "config") {
      configFile = value ?? argv[++i];
      if (!configFile) throw new ConfigError("--config needs a file path: --config colibri.json");
      continue;
    }
    const key = byFlag.get(name);
    if (!key) throw new ConfigError(`unknown option --${name}: see --help for the list of options`);
    if (value === undefined) {
      const next = argv[i + 1];
      if (rules[key].kind === "bool" && (next === undefined || next.startsWith("--"))) value = "true";
      else if (next === undefined) throw new ConfigError(`--${name} needs a value: --${name} <value>`);
      else value = argv[++i];
    }
    const v = coerce(key, value, `--${name}`);
    // a repeated --listen adds a listener; any other repeated flag: the last one wins
    fromFlags[key] = rules[key].kind === "listen" ? [...(fromFlags[key] as string[] ?? []), ...(v as string[])] : v;
    origins[key] = { source: "flag", where: `--${name}` };
  }
  const merged: Partial<Record<keyof Config, unknown>> = {};
  configFile ??= env.COLIBRI_CONFIG;
  if (configFile) {
    let json: unknown;
    try {
      json = JSON.parse(readFile(configFile));
    } catch (e) {
      throw new ConfigError(`cannot read config file ${configFile}: ${(e as Error).message}; fix the path or the JSON`);
    }
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      throw new ConfigError(`config file ${configFile} must hold a JSON object of options, e.g. {"port": 1884, "log-level": "warn"}`);
    }
    const seen = new Map<keyof Config, string>();
    for (const [k, v] of Object.entries(json)) {
      const key = byFileKey.get(k);
      if (!key) {
        throw new ConfigError(
          `unknown option ${JSON.stringify(k)} in ${configFile}: keys are the option names of --help, as "log-level" or "logLevel"`,
        );
      }
      if (seen.has(key)) throw new ConfigError(`option ${JSON.stringify(k)} given twice in ${configFile} (also as ${JSON.stringify(seen.get(key))})`);
      seen.set(key, k);
      merged[key] = coerce(key, v, `${k} in ${configFile}`);
      if (!origins[key]) origins[key] = { source: "file", where: configFile };
    }
  }
  for (const key of keys) {
    const name = envName(key);
    const v = env[name];
    if (v === undefined || v === "") continue;
    merged[key] = coerce(key, v, name);
    if (origins[key]?.source !== "flag") origins[key] = { source: "env", where: name };
  }
  Object.assign(merged, fromFlags);
  const notes = implied(merged, origins);
  const config = resolveConfig(merged as Partial<Config>);
  listenerSpecs(config); // every listener checked now, before anything starts
  for (const key of keys) origins[key] ??= { source: "default" };
  if (origins.nodeId.source === "default") origins.nodeId = { source: "generated" };
  return { kind: print ? "print-config" : "run", config, origins, notes };
}

/**
 * A Redis URL given without --persistence means Redis (said at start); given with
 * --persistence memory it is ignored (a warning). Nothing is silently dropped.
 */
function implied(merged: Partial<Record<keyof Config, unknown>>, origins: Origins): Note[] {
  // any Redis option means Redis: the URL, or where to find it (Sentinel, Cluster), TLS, WAIT
  const key = REDIS_OPTIONS.find((k) => origins[k] !== undefined);
  if (key === undefined) return [];
  const what = describeOrigin(origins[key]!, key);
  if (origins.persistence === undefined) {
    merged.persistence = "redis";
    origins.persistence = { source: "implied", where: `--${flagName(key)}` };
    return [{ level: "info", text: `persistence redis, implied by ${what}` }];
  }
  if (merged.persistence === "memory") {
    return [{ level: "warn", text: `${what} ignored: persistence is memory (${describeOrigin(origins.persistence, "persistence")})` }];
  }
  return [];
}

const REDIS_OPTIONS: readonly (keyof Config)[] = [
  "redisUrl", "redisCluster", "redisSentinels", "redisTlsCa", "redisTlsCert", "redisTlsKey", "redisWaitReplicas",
];

function describeOrigin(o: Origin, key: keyof Config): string {
  return o.source === "file" ? `"${flagName(key)}" in ${o.where}` : o.where ?? `--${flagName(key)}`;
}

/** The effective configuration, one option per line with where its value came from. */
export function configText(config: Config, origins: Origins): string {
  return formatConfig(VERSION, keys.map((key) => ({
    flag: flagName(key),
    value: config[key],
    secret: isSecret(key),
    origin: origins[key],
  })));
}

/** Options whose values are (or hold) secrets: masked by --print-config. */
function isSecret(key: keyof Config): boolean | "url" {
  if (key === "redisUrl") return "url";
  return /password|secret|token/i.test(key);
}
