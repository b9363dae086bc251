/**
 * Command line, environment and config file -> Config. Precedence: flags > environment
 * (COLIBRI_<OPTION>) > JSON config file (--config) > defaults. Every error names the option,
 * the value and the fix.
 */
import { coerce, type Config, ConfigError, defaults, flagName, resolveConfig, rules } from "./config.ts";
import { listenerSpecs } from "./listener-spec.ts";

export const VERSION = "0.1.0";

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
  nodeId: "node id in a cluster (default: random)",
  persistence: "memory (embedded, default) or redis",
  redisUrl: "Redis URL for --persistence redis",
  redisPrefix: "key prefix in Redis (several brokers or tests can share one Redis)",
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
};

export function helpText(): string {
  const lines = [
    `colibri ${VERSION} — MQTT 3.1 / 3.1.1 / 5.0 broker`,
    "",
    "usage: bun run src/main.ts [options]      deno run -P src/main.ts [options]",
    "",
    "options (also COLIBRI_<OPTION> in the environment, or keys of a JSON file given with --config):",
  ];
  for (const key of Object.keys(rules) as (keyof Config)[]) {
    const d = defaults[key];
    const shown = d === "" || (Array.isArray(d) && d.length === 0) ? "none" : String(d);
    lines.push(`  --${flagName(key).padEnd(28)} ${descriptions[key] ?? ""} (default: ${shown})`);
  }
  lines.push("  --config <file.json>           read options from a JSON file");
  lines.push("  --help, --version");
  return lines.join("\n");
}

export type CliResult = { kind: "help" } | { kind: "version" } | { kind: "run"; config: Config };

const byFlag = new Map<string, keyof Config>(
  (Object.keys(rules) as (keyof Config)[]).map((k) => [flagName(k), k]),
);
const byEnv = new Map<string, keyof Config>(
  (Object.keys(rules) as (keyof Config)[]).map((k) => ["COLIBRI_" + flagName(k).replace(/-/g, "_").toUpperCase(), k]),
);

export function parseCli(
  argv: string[],
  env: Record<string, string | undefined>,
  readFile: (path: string) => string,
): CliResult {
  const fromFlags: Partial<Record<keyof Config, unknown>> = {};
  let configFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--help" || a === "-h") return { kind: "help" };
    if (a === "--version" || a === "-v") return { kind: "version" };
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
      throw new ConfigError(`config file ${configFile} must hold a JSON object of options`);
    }
    for (const [k, v] of Object.entries(json)) {
      if (!(k in rules)) throw new ConfigError(`unknown option ${JSON.stringify(k)} in ${configFile}: see --help`);
      merged[k as keyof Config] = coerce(k as keyof Config, v, `${k} in ${configFile}`);
    }
  }
  for (const [envName, key] of byEnv) {
    const v = env[envName];
    if (v !== undefined && v !== "") merged[key] = coerce(key, v, envName);
  }
  Object.assign(merged, fromFlags);
  const config = resolveConfig(merged as Partial<Config>);
  listenerSpecs(config); // every listener checked now, before anything starts
  return { kind: "run", config };
}
