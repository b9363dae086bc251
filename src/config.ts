/**
 * Configuration: defaults, and validation that names the option, the value and the fix.
 * Sources (flags, environment, JSON file) are merged in cli.ts; this module only knows
 * the shape and the rules.
 */
import { authority, type ListenUrl, parseListenUrl } from "./listen-url.ts";
import { redisTarget } from "./redis-config.ts";

export interface Config {
  host: string;
  port: number;
  /**
   * Listeners as URLs (mqtt://, mqtts://, ws://, wss://), per-listener options in the query
   * (listener-spec.ts). After resolveConfig it is the complete list: empty -> the plain TCP
   * listener on host:port; given -> those, plus host:port when --host or --port was set too.
   */
  listen: string[];
  /** PEM CA certificates that client certificates must chain to (mutual TLS). */
  cafile: string;
  /** PEM certificate chain of TLS listeners (mqtts://, wss://). */
  certfile: string;
  /** PEM private key of TLS listeners. */
  keyfile: string;
  /** TLS listeners refuse clients without a certificate signed by --cafile. */
  requireCertificate: boolean;
  /** The client certificate's CN (or first SAN) is the connection's user name. */
  useIdentityAsUsername: boolean;
  /** mqtt:// listeners expect a PROXY protocol v1/v2 header (HAProxy send-proxy[-v2]) first. */
  proxyProtocol: boolean;
  /** Node id (cluster); random per process unless set. */
  nodeId: string;
  persistence: "memory" | "redis";
  redisUrl: string;
  redisPrefix: string;
  /** TLS (rediss://): CA certificate file, client certificate and key files (PEM). */
  redisTlsCa: string;
  redisTlsCert: string;
  redisTlsKey: string;
  /** Sentinel set-up: "host:port,..." of the sentinels, and the name of the master they watch. */
  redisSentinels: string;
  redisSentinelName: string;
  /** Redis Cluster: "host:port,..." of some of its nodes. */
  redisCluster: string;
  /** Acknowledge QoS 1/2 only once this many replicas have the write (Redis WAIT); 0 = do not wait. */
  redisWaitReplicas: number;
  /** Milliseconds a new connection may take to send CONNECT. */
  connectTimeoutMs: number;
  /** Largest packet accepted (bytes, whole packet) — MQTT 5 Maximum Packet Size. */
  maxPacketSize: number;
  /**
   * Largest CONNECT accepted (bytes, whole packet), checked from its fixed header before
   * anything else; capped by maxPacketSize. Later packets may be up to maxPacketSize.
   */
  maxConnectSize: number;
  /** Bounded offline/outgoing queue per session (QoS 1/2 messages). */
  maxQueuedMessages: number;
  /** Bytes of QoS 1/2 messages one session may hold, in flight and queued together. */
  maxQueuedBytes: number;
  /** Outgoing QoS 1/2 messages in flight per client (capped by the client's Receive Maximum). */
  maxInflight: number;
  /** Broker's Receive Maximum: incoming QoS 1/2 publishes a client may have unacknowledged. */
  receiveMaximum: number;
  /** Bytes an adapter may hold for one slow connection before QoS 0 traffic is dropped. */
  maxOutputBuffer: number;
  /**
   * Bytes the broker may hold for messages (queued and in flight, retained in memory, output
   * buffers); past 80 % QoS 0 is shed, past 90 % QoS 1/2 publishes are refused, past 100 % new
   * connections. 0 = no limit.
   */
  maxMemoryBytes: number;
  /** Levels a topic name or filter may have (PUBLISH, SUBSCRIBE, will topics). */
  maxTopicLevels: number;
  /** Seconds between $SYS/broker/... statistics publications; 0 = none. */
  sysInterval: number;
  /** Client-to-server topic aliases accepted (MQTT 5 Topic Alias Maximum); 0 disables. */
  topicAliasMaximum: number;
  /** Cap on the client's keepalive in seconds (MQTT 5 Server Keep Alive); 0 = no cap. */
  maxKeepalive: number;
  /** Cap on session expiry interval (seconds). */
  maxSessionExpiry: number;
  maximumQoS: 0 | 1 | 2;
  retainAvailable: boolean;
  wildcardSubscriptionAvailable: boolean;
  subscriptionIdentifiersAvailable: boolean;
  sharedSubscriptionAvailable: boolean;
  /** Returned as Response Information when a client requests it (MQTT 5). */
  responseInformation: string;
  /** Server Reference for redirection (MQTT 5); empty = none. */
  serverReference: string;
  /** With serverReference: true = 0x9D Server moved (permanent), false = 0x9C Use another server. */
  serverMoved: boolean;
  logLevel: "debug" | "info" | "warn" | "error" | "silent";
  /** Cluster: a node whose lease (renewed every third of it) lapsed this long is dead. */
  nodeLeaseMs: number;
  /** Cluster: how long a takeover waits for the old owner node's answer. */
  takeoverTimeoutMs: number;
  // --- authentication, authorization (src/auth) ---
  /** Clients without a user name may connect. */
  allowAnonymous: boolean;
  /** Mosquitto password file (mosquitto_passwd / colibri passwd); "" = none. */
  passwordFile: string;
  /** Mosquitto ACL file; "" = none (everything allowed). */
  aclFile: string;
  /** A failed login is answered after this long (ms). */
  authFailureDelayMs: number;
  // --- limits and overload protection (src/limits) ---
  /** Open connections on this node; 0 = no limit. */
  maxConnections: number;
  /** Open connections from one client address on this node; 0 = no limit. */
  maxConnectionsPerAddress: number;
  /** CONNECT packets per second from one client address (token bucket, burst of one second); 0 = no limit. */
  maxConnectRate: number;
  /** Subscriptions one client may hold; 0 = no limit. */
  maxSubscriptionsPerClient: number;
  /** Retained messages the broker keeps (cluster-wide with Redis); 0 = no limit. */
  maxRetainedMessages: number;
  /** Payload bytes of all retained messages together; 0 = no limit. */
  maxRetainedBytes: number;
  /** PUBLISH packets per second one client may send (token bucket, burst of one second); 0 = no limit. */
  maxPublishRate: number;
  /** A client held back by the publish rate this long without a pause is disconnected (0x96). */
  publishRateGraceMs: number;
  // --- operations (src/ops) ---
  /** Port of the HTTP endpoint (/metrics, /healthz, /readyz, POST /drain); 0 = none. */
  httpPort: number;
  httpHost: string;
  logFormat: "text" | "json";
  /** SIGTERM: the process exits within this many ms, done or not. */
  shutdownTimeoutMs: number;
  /** Draining sends this many clients away per second; 0 = all at once. */
  drainRate: number;
  /** Server Reference for MQTT 5 clients sent away by a drain or a shutdown (0x9C); "" = 0x8B. */
  drainServerReference: string;
  /** Exit when the launcher (npm start, deno task) that started the process goes away. */
  exitWithParent: boolean;
}

export const defaults: Config = {
  host: "0.0.0.0",
  port: 1883,
  listen: [],
  cafile: "",
  certfile: "",
  keyfile: "",
  requireCertificate: false,
  useIdentityAsUsername: false,
  proxyProtocol: false,
  nodeId: "",
  persistence: "memory",
  redisUrl: "redis://127.0.0.1:6379",
  redisPrefix: "colibri:",
  redisTlsCa: "",
  redisTlsCert: "",
  redisTlsKey: "",
  redisSentinels: "",
  redisSentinelName: "mymaster",
  redisCluster: "",
  redisWaitReplicas: 0,
  connectTimeoutMs: 10_000,
  maxPacketSize: 16 * 1024 * 1024,
  maxConnectSize: 64 * 1024,
  maxQueuedMessages: 1000,
  maxQueuedBytes: 4 * 1024 * 1024,
  maxInflight: 1024,
  receiveMaximum: 1024,
  maxOutputBuffer: 1024 * 1024,
  maxMemoryBytes: 1024 * 1024 * 1024,
  maxTopicLevels: 200,
  sysInterval: 10,
  topicAliasMaximum: 100,
  maxKeepalive: 0,
  maxSessionExpiry: 0xffffffff,
  maximumQoS: 2,
  retainAvailable: true,
  wildcardSubscriptionAvailable: true,
  subscriptionIdentifiersAvailable: true,
  sharedSubscriptionAvailable: true,
  responseInformation: "",
  serverReference: "",
  serverMoved: false,
  logLevel: "info",
  nodeLeaseMs: 3000,
  takeoverTimeoutMs: 2000,
  allowAnonymous: true,
  passwordFile: "",
  aclFile: "",
  authFailureDelayMs: 1000,
  maxConnections: 100_000,
  // off by default: behind NAT or a load balancer without the PROXY protocol many clients share
  // one address; the node's own limit (maxConnections) protects the process either way
  maxConnectionsPerAddress: 0,
  maxConnectRate: 1000,
  maxSubscriptionsPerClient: 10_000,
  maxRetainedMessages: 1_000_000,
  maxRetainedBytes: 256 * 1024 * 1024,
  maxPublishRate: 10_000,
  publishRateGraceMs: 10_000,
  httpPort: 0,
  httpHost: "0.0.0.0",
  logFormat: "text",
  shutdownTimeoutMs: 10_000,
  drainRate: 200,
  drainServerReference: "",
  exitWithParent: false,
};

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

type Rule = { kind: "int"; min: number; max: number } | { kind: "bool" } | { kind: "string" } | {
  kind: "enum";
  values: readonly (string | number)[];
} | { kind: "listen" };

export const rules: Record<keyof Config, Rule> = {
  host: { kind: "string" },
  port: { kind: "int", min: 0, max: 65535 },
  listen: { kind: "listen" },
  cafile: { kind: "string" },
  certfile: { kind: "string" },
  keyfile: { kind: "string" },
  requireCertificate: { kind: "bool" },
  useIdentityAsUsername: { kind: "bool" },
  proxyProtocol: { kind: "bool" },
  nodeId: { kind: "string" },
  persistence: { kind: "enum", values: ["memory", "redis"] },
  redisUrl: { kind: "string" },
  redisPrefix: { kind: "string" },
  redisTlsCa: { kind: "string" },
  redisTlsCert: { kind: "string" },
  redisTlsKey: { kind: "string" },
  redisSentinels: { kind: "string" },
  redisSentinelName: { kind: "string" },
  redisCluster: { kind: "string" },
  redisWaitReplicas: { kind: "int", min: 0, max: 100 },
  connectTimeoutMs: { kind: "int", min: 100, max: 3_600_000 },
  maxPacketSize: { kind: "int", min: 64, max: 268_435_460 },
  maxConnectSize: { kind: "int", min: 64, max: 268_435_460 },
  maxQueuedMessages: { kind: "int", min: 0, max: 10_000_000 },
  maxQueuedBytes: { kind: "int", min: 1024, max: 2 ** 40 },
  maxInflight: { kind: "int", min: 1, max: 65535 },
  receiveMaximum: { kind: "int", min: 1, max: 65535 },
  maxOutputBuffer: { kind: "int", min: 1024, max: 1 << 30 },
  maxMemoryBytes: { kind: "int", min: 0, max: 2 ** 50 },
  maxTopicLevels: { kind: "int", min: 1, max: 65535 },
  sysInterval: { kind: "int", min: 0, max: 86400 },
  topicAliasMaximum: { kind: "int", min: 0, max: 65535 },
  maxKeepalive: { kind: "int", min: 0, max: 65535 },
  maxSessionExpiry: { kind: "int", min: 0, max: 0xffffffff },
  maximumQoS: { kind: "enum", values: [0, 1, 2] },
  retainAvailable: { kind: "bool" },
  wildcardSubscriptionAvailable: { kind: "bool" },
  subscriptionIdentifiersAvailable: { kind: "bool" },
  sharedSubscriptionAvailable: { kind: "bool" },
  responseInformation: { kind: "string" },
  serverReference: { kind: "string" },
  serverMoved: { kind: "bool" },
  logLevel: { kind: "enum", values: ["debug", "info", "warn", "error", "silent"] },
  nodeLeaseMs: { kind: "int", min: 300, max: 600_000 },
  takeoverTimeoutMs: { kind: "int", min: 100, max: 60_000 },
  allowAnonymous: { kind: "bool" },
  passwordFile: { kind: "string" },
  aclFile: { kind: "string" },
  authFailureDelayMs: { kind: "int", min: 0, max: 60_000 },
  maxConnections: { kind: "int", min: 0, max: 100_000_000 },
  maxConnectionsPerAddress: { kind: "int", min: 0, max: 100_000_000 },
  maxConnectRate: { kind: "int", min: 0, max: 10_000_000 },
  maxSubscriptionsPerClient: { kind: "int", min: 0, max: 100_000_000 },
  maxRetainedMessages: { kind: "int", min: 0, max: 2 ** 40 },
  maxRetainedBytes: { kind: "int", min: 0, max: 2 ** 50 },
  maxPublishRate: { kind: "int", min: 0, max: 100_000_000 },
  publishRateGraceMs: { kind: "int", min: 100, max: 3_600_000 },
  httpPort: { kind: "int", min: 0, max: 65535 },
  httpHost: { kind: "string" },
  logFormat: { kind: "enum", values: ["text", "json"] },
  shutdownTimeoutMs: { kind: "int", min: 100, max: 600_000 },
  drainRate: { kind: "int", min: 0, max: 1_000_000 },
  drainServerReference: { kind: "string" },
  exitWithParent: { kind: "bool" },
};

/**
 * kebab-case flag name of a config key: maxPacketSize -> max-packet-size. "QoS" is one word:
 * maximumQoS -> maximum-qos (COLIBRI_MAXIMUM_QOS), as the README documents it.
 */
export function flagName(key: string): string {
  return key.replace(/QoS/g, "Qos").replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
}

/**
 * Coerce one raw value (string from flags/env, or JSON value) to the option's type.
 * `source` names where it came from for the error message ("--port", "COLIBRI_PORT", "config.json").
 */
export function coerce(key: keyof Config, raw: unknown, source: string): unknown {
  const rule = rules[key];
  const bad = (fix: string) =>
    new ConfigError(`invalid value ${JSON.stringify(raw)} for ${source}: ${fix}`);
  switch (rule.kind) {
    case "int": {
      const n = typeof raw === "number" ? raw : typeof raw === "string" && /^\s*\d+\s*$/.test(raw) ? Number(raw) : NaN;
      if (!Number.isInteger(n) || n < rule.min || n > rule.max) {
        throw bad(`expected a whole number from ${rule.min} to ${rule.max}`);
      }
      return n;
    }
    case "bool": {
      if (raw === true || raw === "true" || raw === "1" || raw === "yes") return true;
      if (raw === false || raw === "false" || raw === "0" || raw === "no") return false;
      throw bad("expected true or false");
    }
    case "enum": {
      const hit = rule.values.find((v) => String(v) === String(raw));
      if (hit === undefined) throw bad(`expected one of ${rule.values.join(", ")}`);
      return hit;
    }
    case "string": {
      if (typeof raw !== "string") throw bad("expected a string");
      return raw;
    }
    case "listen": {
      // flags repeat (cli.ts appends), the environment separates with spaces or commas, a
      // config file gives an array (or one string)
      const items = Array.isArray(raw) ? raw : typeof raw === "string" ? raw.split(/[\s,]+/).filter((u) => u !== "") : [raw];
      for (const u of items) checkListenUrl(u, source);
      return items as string[];
    }
  }
}

/** Options a listener may set for itself in its URL's query, overriding the global value. */
export const listenerOptions = [
  "cafile", "certfile", "keyfile", "requireCertificate", "useIdentityAsUsername", "proxyProtocol", "allowAnonymous",
] as const satisfies readonly (keyof Config)[];
export type ListenerOption = typeof listenerOptions[number];

/** The parsed URL, its query options coerced by their rules; errors name the option and value. */
export function checkListenUrl(raw: unknown, source: string): ListenUrl & { options: Partial<Pick<Config, ListenerOption>> } {
  const bad = (fix: string) => new ConfigError(`invalid value ${JSON.stringify(raw)} for ${source}: ${fix}`);
  if (typeof raw !== "string") throw bad("expected a URL string such as mqtt://0.0.0.0:1883");
  const u = parseListenUrl(raw);
  if ("error" in u) throw bad(u.error);
  const options: Partial<Record<ListenerOption, unknown>> = {};
  for (const [name, value] of u.query) {
    const key = listenerOptions.find((k) => flagName(k) === name);
    if (!key) {
      throw bad(`unknown listener option "${name}": a listener URL may set ${listenerOptions.map(flagName).join(", ")}`);
    }
    options[key] = coerce(key, value, `${name} in ${source} ${raw}`);
  }
  return { ...u, options: options as Partial<Pick<Config, ListenerOption>> };
}

/** Cross-field checks after merging. */
export function validate(c: Config): Config {
  if (c.persistence === "redis") redisTarget(c); // the Redis options checked together (redis-config.ts)
  return c;
}

export function resolveConfig(partial: Partial<Config>): Config {
  const c = { ...defaults, ...partial };
  if (!c.nodeId) c.nodeId = Math.random().toString(36).slice(2, 10);
  // --host/--port is the plain TCP listener: the only one without --listen, and one more
  // beside the --listen ones when it was set explicitly
  const plain = `mqtt://${authority(c.host, c.port)}`;
  if (c.listen.length === 0) c.listen = [plain];
  else if ((partial.port !== undefined || partial.host !== undefined) && !c.listen.includes(plain)) {
    c.listen = [plain, ...c.listen];
  }
  return validate(c);
}
