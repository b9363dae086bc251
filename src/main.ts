/**
 * Composition root: flags/env/file -> Config -> persistence -> broker -> the runtime's
 * listeners. The only module that picks adapters (by runtime, with a dynamic import, so the
 * core never loads Bun- or Deno-specific code); tests get them from loadTransports() too.
 */
import { readFileSync } from "node:fs";
import process from "node:process";
import { helpText, parseCli, VERSION } from "./cli.ts";
import { type Config, ConfigError } from "./config.ts";
import { Broker } from "./broker.ts";
import { listenerSpecs } from "./listener-spec.ts";
import { closeListeners, ListenError, openListeners, type OpenListener, tlsReloadables } from "./listeners.ts";
import { createLogger, type Logger } from "./log.ts";
import { MemoryPersistence } from "./persistence/memory.ts";
import type { Persistence } from "./persistence/persistence.ts";
import { type Reloadable, reloadAll } from "./reload.ts";
import type { Transports } from "./transport.ts";
import type { ClusterBus } from "./cluster/bus.ts";
import { FileSecurity, SecurityFileError } from "./auth/file-security.ts";

const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

/** The runtime's listener for each scheme: Bun.listen / Bun.serve, or Deno.listen / node:tls / Deno.serve. */
export async function loadTransports(): Promise<Transports> {
  if (isBun) {
    const [tcp, ws] = await Promise.all([import("../adapters/bun/tcp.ts"), import("../adapters/bun/websocket.ts")]);
    return { mqtt: tcp.listenTcp, mqtts: tcp.listenTls, ws: ws.listenWebSocket, wss: ws.listenWebSocket };
  }
  const [tcp, tls, ws] = await Promise.all([
    import("../adapters/deno/tcp.ts"),
    import("../adapters/deno/tls.ts"),
    import("../adapters/deno/websocket.ts"),
  ]);
  return { mqtt: tcp.listenTcp, mqtts: tls.listenTls, ws: ws.listenWebSocket, wss: ws.listenWebSocket };
}

/**
 * The store, and the cluster bus that comes with a shared one: every node started on the same
 * Redis and prefix joins one cluster (a node alone on Redis is a cluster of one).
 */
async function openStore(config: Config, log: Logger): Promise<{ persistence: Persistence; bus?: ClusterBus }> {
  if (config.persistence === "memory") return { persistence: new MemoryPersistence() };
  const { RedisPersistence } = await import("../adapters/redis/redis.ts");
  const { RedisBus } = await import("../adapters/redis/bus.ts");
  const persistence = await RedisPersistence.connect({ url: config.redisUrl, prefix: config.redisPrefix, logger: log });
  const incarnation = Math.floor(Math.random() * 36 ** 4).toString(36).padStart(4, "0");
  const bus = new RedisBus(persistence, {
    nodeId: `${config.nodeId}#${incarnation}`, url: config.redisUrl, prefix: config.redisPrefix,
    leaseMs: config.nodeLeaseMs, logger: log,
  });
  return { persistence, bus };
}

function fatal(message: string): never {
  console.error(`colibri: ${message}`);
  process.exit(2);
}

/** A listener that did not open, as a message that names the listener, the option and the fix. */
function listenFailure(e: ListenError, config: Config): string {
  const { spec } = e;
  const msg = e.message;
  const code = (e.error as { code?: string })?.code;
  const plain = spec.scheme === "mqtt" && spec.host === config.host && spec.port === config.port;
  const fix = plain ? "choose another with --port <n> (or COLIBRI_PORT)" : `choose another port in --listen ${spec.name}`;
  if (code === "EADDRINUSE" || /in use|EADDRINUSE|AddrInUse|Failed to listen/i.test(msg) || (e.error as Error)?.name === "AddrInUse") {
    return `port ${spec.port} on ${spec.host} is already in use (listener ${spec.name}); ${fix}`;
  }
  if (/EACCES|permission/i.test(msg)) {
    return `no permission to listen on ${spec.host}:${spec.port} (listener ${spec.name}); use a port above 1023`;
  }
  if (/^--(require-certificate|use-identity-as-username) is not available/.test(msg)) return `${msg} (listener ${spec.name})`;
  const check = spec.tls ? "check --certfile, --keyfile and --cafile" : plain ? "check --host and --port" : "check --listen";
  return `cannot listen on ${spec.name}: ${msg} (${check})`;
}

export async function main(argv: string[]): Promise<void> {
  if (argv[0] === "passwd") {
    // `colibri passwd ...`: the password file tool (src/cli/passwd.ts)
    const { PasswdError, runPasswd } = await import("./cli/passwd.ts");
    try {
      await runPasswd(argv.slice(1));
    } catch (e) {
      if (e instanceof PasswdError) {
        console.error(`colibri passwd: ${e.message}`);
        process.exit(1);
      }
      throw e;
    }
    return;
  }
  let config: Config;
  try {
    const r = parseCli(argv, process.env as Record<string, string | undefined>, (p) => readFileSync(p, "utf8"));
    if (r.kind === "help") {
      console.log(helpText());
      return;
    }
    if (r.kind === "version") {
      console.log(`colibri ${VERSION}`);
      return;
    }
    config = r.config;
  } catch (e) {
    if (e instanceof ConfigError) fatal(e.message);
    throw e;
  }
  const log = createLogger(config.logLevel);
  // One client's failure must never take the broker down: an error that escaped every handler
  // is logged (loudly: it is a bug) and the process goes on serving everyone else.
  process.on("unhandledRejection", (e: unknown) => log.error("unhandled rejection (bug)", { error: String((e as Error)?.stack ?? e) }));
  process.on("uncaughtException", (e: unknown) => log.error("uncaught exception (bug)", { error: String((e as Error)?.stack ?? e) }));
  // SIGHUP reloads what can change without a restart (registered first: its default action
  // would end the process); the authentication work adds its password and ACL files here
  const reloadables: Reloadable[] = [];
  process.on("SIGHUP", () => void reloadAll(reloadables, log));
  const specs = listenerSpecs(config);
  // the password and ACL files (Mosquitto's formats): read now, and again on SIGHUP
  let security: FileSecurity;
  try {
    security = await FileSecurity.load({
      allowAnonymous: config.allowAnonymous, passwordFile: config.passwordFile, aclFile: config.aclFile,
      warn: (message, fields) => log.warn(message, fields),
    });
  } catch (e) {
    if (e instanceof SecurityFileError) fatal(e.message);
    throw e;
  }
  if (config.passwordFile || config.aclFile) {
    reloadables.push({ name: "password and ACL files", reload: () => security.reload() });
  }
  let persistence: Persistence;
  let bus: ClusterBus | undefined;
  try {
    ({ persistence, bus } = await openStore(config, log));
  } catch (e) {
    fatal(`${(e as Error).message} (check --redis-url, or use --persistence memory)`);
  }
  const broker = new Broker({ config, persistence, log, bus, security });
  await broker.start();
  let listeners: OpenListener[];
  try {
    listeners = await openListeners(specs, await loadTransports(), broker, config, log);
  } catch (e) {
    if (e instanceof ConfigError) fatal(e.message);
    if (e instanceof ListenError) fatal(listenFailure(e, config));
    throw e;
  }
  for (const o of listeners) {
    log.info("colibri listening", {
      listener: o.spec.name, host: o.spec.host, port: o.listener.port, runtime: isBun ? "bun" : "deno",
      persistence: persistence.name, node: config.nodeId,
      anonymous: config.allowAnonymous, passwordFile: config.passwordFile || undefined, aclFile: config.aclFile || undefined,
    });
  }
  reloadables.push(...tlsReloadables(listeners));
  const stop = async () => {
    log.info("shutting down");
    await closeListeners(listeners);
    await broker.close();
    await persistence.close();
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

if ((import.meta as { main?: boolean }).main) {
  await main(process.argv.slice(2));
}
