/**
 * Opening the broker's listeners: for each ListenerSpec, the runtime's ListenFn for its scheme
 * (main.ts picks the Transports), its TLS files, the PROXY protocol where enabled, and an
 * acceptor that tells the core which listener a connection came through (per-listener settings:
 * use-identity-as-username now, authentication next).
 */
import { type Config, ConfigError } from "./config.ts";
import type { ListenerSpec } from "./listener-spec.ts";
import { authority } from "./listen-url.ts";
import type { Logger } from "./log.ts";
import { withProxyProtocol } from "./proxy-protocol.ts";
import type { Reloadable } from "./reload.ts";
import { loadTlsMaterial } from "./tls-files.ts";
import type { Acceptor, Connection, ConnectionEvents, Listener, Transports } from "./transport.ts";

/** The core's side: Broker.accept with the listener's spec. */
export interface ListenerAcceptor {
  accept(conn: Connection, listener: ListenerSpec): ConnectionEvents;
}

export interface OpenListener {
  /** As opened: port and name carry the port the listener got (for port 0, the chosen one). */
  spec: ListenerSpec;
  listener: Listener;
}

/** A listener that could not be opened: the spec it was for, and the runtime's error. */
export class ListenError extends Error {
  constructor(readonly spec: ListenerSpec, readonly error: unknown) {
    super(String((error as Error)?.message ?? error));
    this.name = "ListenError";
  }
}

/**
 * A WebSocket message may hold a whole packet of the largest size plus a few small ones; a
 * larger message closes the connection (the core's framer would refuse the packet anyway).
 */
const WS_MESSAGE_SLACK = 64 * 1024;

export async function openListeners(
  specs: readonly ListenerSpec[],
  transports: Transports,
  core: ListenerAcceptor,
  config: Config,
  log: Logger,
): Promise<OpenListener[]> {
  const opened: OpenListener[] = [];
  for (const spec of specs) {
    let bound = spec; // with the port the listener really got, once it has one
    let acceptor: Acceptor = { accept: (conn) => core.accept(conn, bound) };
    if (spec.proxyProtocol) acceptor = withProxyProtocol(acceptor, log, spec.name);
    try {
      const tls = spec.tls ? loadTlsMaterial(spec) : undefined;
      const ws = spec.scheme === "ws" || spec.scheme === "wss";
      const listener = await transports[spec.scheme](acceptor, {
        host: spec.host,
        port: spec.port,
        tls,
        path: ws ? spec.path : undefined,
        maxMessageSize: ws ? config.maxPacketSize + WS_MESSAGE_SLACK : undefined,
        needIdentity: spec.tls && spec.useIdentityAsUsername,
      });
      const name = `${spec.scheme}://${authority(spec.host, listener.port)}${spec.path}`;
      bound = { ...spec, port: listener.port, name };
      opened.push({ spec: bound, listener });
    } catch (e) {
      await closeListeners(opened);
      throw e instanceof ConfigError ? e : new ListenError(spec, e);
    }
  }
  return opened;
}

export async function closeListeners(open: readonly OpenListener[]): Promise<void> {
  for (const o of open) await o.listener.close();
}

/** SIGHUP: each TLS listener re-reads its files; new connections get the new certificate. */
export function tlsReloadables(open: readonly OpenListener[]): Reloadable[] {
  return open.filter((o) => o.spec.tls).map(({ spec, listener }) => ({
    name: `certificate of ${spec.name}`,
    async reload() {
      const material = loadTlsMaterial(spec);
      if (!listener.reloadTls) throw new Error(`${spec.name} cannot reload its certificate`);
      await listener.reloadTls(material);
    },
  }));
}

