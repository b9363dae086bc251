/**
 * Composition root: flags/env/file -> Config -> persistence -> broker -> the runtime's
 * listener. The only module that picks adapters (by runtime, with a dynamic import, so the
 * core never loads Bun- or Deno-specific code).
 */
import { readFileSync } from "node:fs";
import process from "node:process";
import { helpText, parseCli, VERSION } from "./cli.ts";
import { type Config, ConfigError } from "./config.ts";
import { Broker } from "./broker.ts";
import { createLogger, type Logger } from "./log.ts";
import { MemoryPersistence } from "./persistence/memory.ts";
import type { Persistence } from "./persistence/persistence.ts";
import type { ListenFn } from "./transport.ts";
import type { ClusterBus } from "./cluster/bus.ts";
import { FileSecurity, SecurityFileError } from "./auth/file-security.ts";

const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

async function loadListen(): Promise<ListenFn> {
  const mod = isBun ? await import("../adapters/bun/tcp.ts") : await import("../adapters/deno/tcp.ts");
  return mod.listenTcp as ListenFn;
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
  // the password and ACL files (Mosquitto's formats): read now, again on SIGHUP
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
  process.on("SIGHUP", () => {
    security.reload().then(
      () => log.info("password and ACL files reloaded"),
      (e) => log.error("reload failed, the previous files stay in force", { error: String((e as Error)?.message ?? e) }),
    );
  });
  let persistence: Persistence;
  let bus: ClusterBus | undefined;
  try {
    ({ persistence, bus } = await openStore(config, log));
  } catch (e) {
    fatal(`${(e as Error).message} (check --redis-url, or use --persistence memory)`);
  }
  const broker = new Broker({ config, persistence, log, bus, security });
  await broker.start();
  const listen = await loadListen();
  let listener;
  try {
    listener = await listen(broker, { host: config.host, port: config.port });
  } catch (e) {
    const msg = String((e as Error)?.message ?? e);
    const code = (e as { code?: string }).code;
    if (code === "EADDRINUSE" || /in use|EADDRINUSE|AddrInUse/i.test(msg) || (e as Error)?.name === "AddrInUse") {
      fatal(`port ${config.port} on ${config.host} is already in use; choose another with --port <n> (or COLIBRI_PORT)`);
    }
    if (/EACCES|permission/i.test(msg)) {
      fatal(`no permission to listen on ${config.host}:${config.port}; use a port above 1023 with --port <n>`);
    }
    fatal(`cannot listen on ${config.host}:${config.port}: ${msg} (check --host and --port)`);
  }
  log.info("colibri listening", {
    host: config.host, port: listener.port, runtime: isBun ? "bun" : "deno",
    persistence: persistence.name, node: config.nodeId,
    anonymous: config.allowAnonymous, passwordFile: config.passwordFile || undefined, aclFile: config.aclFile || undefined,
  });
  const stop = async () => {
    log.info("shutting down");
    await listener.close();
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
