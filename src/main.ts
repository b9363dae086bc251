/**
 * Composition root: flags/env/file -> Config -> persistence -> broker -> the runtime's
 * listeners. The only module that picks adapters (by runtime, with a dynamic import, so the
 * core never loads Bun- or Deno-specific code); tests get them from loadTransports() too.
 */
import { readFileSync } from "node:fs";
import process from "node:process";
import { configText, helpText, parseCli, VERSION } from "./cli.ts";
import { type Config, ConfigError } from "./config.ts";
import { redisTarget } from "./redis-config.ts";
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
import { Ops } from "./ops/ops.ts";
import { type HttpServer, opsHandler, type ServeHttp } from "./ops/http.ts";
import { makeShutdown } from "./ops/shutdown.ts";
import { launcherChain, watchParent } from "./ops/parent-watch.ts";

const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

/** The runtime's listener for each scheme: Bun.listen / Bun.serve, or Deno.listen / node:tls (WebSocket on both through src/websocket-server.ts). */
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

async function loadServeHttp(): Promise<ServeHttp> {
  const mod = isBun ? await import("../adapters/bun/http.ts") : await import("../adapters/deno/http.ts");
  return mod.serveHttp;
}

/** The operations endpoint (--http-port), up before the broker starts: /readyz says "starting". */
async function startHttp(config: Config, ops: Ops): Promise<HttpServer | undefined> {
  if (config.httpPort === 0) return undefined;
  try {
    return await (await loadServeHttp())(opsHandler(ops), { host: config.httpHost, port: config.httpPort });
  } catch (e) {
    const msg = String((e as Error)?.message ?? e);
    if (/in use|EADDRINUSE|AddrInUse/i.test(msg) || (e as Error)?.name === "AddrInUse") {
      fatal(`port ${config.httpPort} on ${config.httpHost} is already in use; choose another with --http-port <n> (or COLIBRI_HTTP_PORT)`);
    }
    fatal(`cannot serve HTTP on ${config.httpHost}:${config.httpPort}: ${msg} (check --http-host and --http-port)`);
  }
}

/**
 * The store, and the cluster bus that comes with a shared one: every node started on the same
 * Redis and prefix joins one cluster (a node alone on Redis is a cluster of one).
 */
async function openStore(config: Config, log: Logger): Promise<{ persistence: Persistence; bus?: ClusterBus }> {
  if (config.persistence === "memory") return { persistence: new MemoryPersistence() };
  const { RedisPersistence } = await import("../adapters/redis/redis.ts");
  const { RedisBus } = await import("../adapters/redis/bus.ts");
  const persistence = await RedisPersistence.connect({
    ...redisTarget(config), prefix: config.redisPrefix, waitReplicas: config.redisWaitReplicas, logger: log,
  });
  const incarnation = Math.floor(Math.random() * 36 ** 4).toString(36).padStart(4, "0");
  const bus = new RedisBus(persistence, { nodeId: `${config.nodeId}#${incarnation}`, leaseMs: config.nodeLeaseMs, logger: log });
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
  let notes: { level: "info" | "warn"; text: string }[];
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
    if (r.kind === "print-config") {
      console.log(configText(r.config, r.origins));
      return;
    }
    config = r.config;
    notes = r.notes;
  } catch (e) {
    if (e instanceof ConfigError) fatal(e.message);
    throw e;
  }
  // the launchers as they are now, before anything can have ended them (parent-watch.ts)
  const launchers = config.exitWithParent ? launcherChain() : undefined;
  const log = createLogger(config.logLevel, undefined, { format: config.logFormat, node: config.nodeId });
  for (const n of notes) log[n.level](n.text);
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
    const m = (e as Error).message;
    fatal(/--redis-/.test(m) ? m : `${m} (check --redis-url, or use --persistence memory)`);
  }
  const broker = new Broker({ config, persistence, log, bus, security });
  // listeners open once the broker has started; a drain or stop that comes first closes them
  // as soon as they are open
  let listeners: OpenListener[] = [];
  let accepting = true;
  let closed: Promise<void> | undefined;
  const stopAccepting = () => {
    accepting = false;
    return closed ??= closeListeners(listeners);
  };
  const ops = new Ops(broker, { runtime: isBun ? "bun" : "deno", stopAccepting });
  const http = await startHttp(config, ops);
  if (http) log.info("http endpoint listening", { host: config.httpHost, port: http.port, paths: "/metrics /healthz /readyz POST /drain" });
  await broker.start();
  try {
    listeners = await openListeners(specs, await loadTransports(), broker, config, log);
  } catch (e) {
    if (e instanceof ConfigError) fatal(e.message);
    if (e instanceof ListenError) fatal(listenFailure(e, config));
    throw e;
  }
  if (!accepting) closed = closeListeners(listeners);
  ops.start();
  for (const o of listeners) {
    log.info("colibri listening", {
      listener: o.spec.name, host: o.spec.host, port: o.listener.port, runtime: isBun ? "bun" : "deno",
      persistence: persistence.name, version: VERSION, pid: process.pid,
      anonymous: config.allowAnonymous, passwordFile: config.passwordFile || undefined, aclFile: config.aclFile || undefined,
    });
  }
  reloadables.push(...tlsReloadables(listeners));
  const stop = makeShutdown({
    timeoutMs: config.shutdownTimeoutMs,
    log,
    exit: (code) => process.exit(code),
    steps: [
      { name: "not ready", run: () => ops.stop() },
      { name: "stop accepting", run: stopAccepting },
      { name: "send clients away, flush sessions, leave the cluster", run: () => broker.close() },
      { name: "close the store", run: () => persistence.close() },
      { name: "close the http endpoint", run: () => http?.close() },
    ],
  });
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGUSR2", () => {
    log.info("SIGUSR2: draining");
    ops.drain();
  });
  if (launchers) watchParent((why) => void stop(`the launcher went away (${why})`), 1000, launchers);
}

if ((import.meta as { main?: boolean }).main) {
  await main(process.argv.slice(2));
}
