/**
 * Deno WebSocket listeners (ws://, wss://): the runtime-agnostic upgrade and framing of
 * src/websocket-server.ts on this adapter's own TCP listener (ws://, Deno.listen) and node:tls
 * listener (wss://). Not Deno.serve + Deno.upgradeWebSocket: Deno.serve cannot ask for a client
 * certificate (denoland/deno#26825) nor change its certificate while serving, and its
 * WebSocket has no message-size bound or drain event. On the byte-stream listeners wss:// gets
 * mutual TLS with identity and the SIGHUP certificate reload of mqtts://, messages are bounded
 * (1009 past --max-packet-size plus slack), and output follows the TCP adapters' drain.
 */
import type { Acceptor, Listener, ListenOptions } from "../../src/transport.ts";
import { withWebSocket } from "../../src/websocket-server.ts";
import { listenTcp } from "./tcp.ts";
import { listenTls } from "./tls.ts";

/** Without a bound from the broker: MQTT's largest packet plus the framing of a few more. */
const DEFAULT_MAX_MESSAGE = 268_435_455 + 64 * 1024;

export function listenWebSocket(acceptor: Acceptor, opts: ListenOptions): Promise<Listener> {
  const ws = withWebSocket(acceptor, { path: opts.path ?? "", maxMessageSize: opts.maxMessageSize ?? DEFAULT_MAX_MESSAGE });
  return opts.tls ? listenTls(ws, opts) : listenTcp(ws, opts);
}
