/**
 * Deno WebSocket listeners (ws://, wss://): Deno.serve, and Deno.upgradeWebSocket(req,
 * { protocol }) for the requests src/websocket-upgrade.ts accepts. Each WebSocket is a
 * Connection: binary messages go to the core as a byte stream (packets split across messages
 * or several in one are the framer's business [MQTT-6.0.0-2]); a text message closes the
 * connection [MQTT-6.0.0-1]. Deno's idle pings are off: MQTT keepalive governs idle connections.
 *
 * Backpressure: send() queues in the runtime and bufferedAmount says how much waits; Deno's
 * WebSocket has no drain event, so while anything waits a short timer polls bufferedAmount and
 * signals `drain` when it reaches 0.
 *
 * What Deno cannot do for wss:// (so it is refused or reported, never pretended):
 * - client certificates: Deno.serve has no CA / requestCert option (denoland/deno#26825), and
 *   Deno.upgradeWebSocket(req, { socket }) takes plain TCP sockets only (a node:tls socket
 *   fails with "Socket is not a TCP socket"), so a node:tls server cannot carry it either;
 * - a certificate reload: Deno.serve cannot change its certificate, and stopping it closes
 *   the WebSockets it upgraded; SIGHUP therefore leaves a wss:// listener on its certificate
 *   (logged) until the broker restarts.
 */
import type { Acceptor, Connection, ConnectionEvents, Listener, ListenOptions } from "../../src/transport.ts";
import { decideUpgrade } from "../../src/websocket-upgrade.ts";

const DRAIN_POLL_MS = 5;

class DenoWsConnection implements Connection {
  events!: ConnectionEvents;
  closed = false;
  private polling = false;

  constructor(private readonly ws: WebSocket, readonly remote: { address?: string; port?: number }) {}

  get bufferedAmount(): number {
    return this.closed ? 0 : this.ws.bufferedAmount;
  }

  write(bytes: Uint8Array): boolean {
    if (this.closed || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(bytes);
    if (this.ws.bufferedAmount === 0) return true;
    this.pollDrain();
    return false;
  }

  private pollDrain() {
    if (this.polling) return;
    this.polling = true;
    const check = () => {
      if (this.closed) return void (this.polling = false);
      if (this.ws.bufferedAmount > 0) return void setTimeout(check, DRAIN_POLL_MS);
      this.polling = false;
      this.events.drain();
    };
    setTimeout(check, DRAIN_POLL_MS);
  }

  close(): void {
    if (this.closed) return;
    try {
      this.ws.close(1000);
    } catch { /* already closing */ }
  }
}

export function listenWebSocket(acceptor: Acceptor, opts: ListenOptions): Promise<Listener> {
  if (opts.tls?.requireCertificate) {
    return Promise.reject(
      new Error(
        "--require-certificate is not available on wss:// listeners under Deno: Deno.serve cannot ask for client " +
          "certificates (denoland/deno#26825); use an mqtts:// listener for mutual TLS, or run the broker on Bun",
      ),
    );
  }
  const path = opts.path ?? "";
  const abort = new AbortController();
  const open = new Set<DenoWsConnection>();
  let stopping = false;
  const handler = (req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Response => {
    if (stopping) return new Response("shutting down\n", { status: 503 });
    const d = decideUpgrade(req.method, new URL(req.url).pathname, (h) => req.headers.get(h), path);
    if (!d.upgrade) return new Response(d.body, { status: d.status, headers: d.headers });
    const remote = { address: info.remoteAddr.hostname, port: info.remoteAddr.port }; // (gone once upgraded)
    const { socket, response } = Deno.upgradeWebSocket(req, { protocol: d.protocol, idleTimeout: 0 });
    socket.binaryType = "arraybuffer";
    const conn = new DenoWsConnection(socket, remote);
    socket.onopen = () => {
      open.add(conn);
      conn.events = acceptor.accept(conn);
    };
    socket.onmessage = (e: MessageEvent) => {
      if (typeof e.data === "string") {
        // [MQTT-6.0.0-1] MQTT travels in binary frames only: any other data frame closes
        socket.close(1003, "MQTT needs binary WebSocket frames");
        return;
      }
      conn.events.data(new Uint8Array(e.data as ArrayBuffer));
    };
    socket.onclose = (e: CloseEvent) => {
      open.delete(conn);
      if (conn.closed || !conn.events) return;
      conn.closed = true;
      conn.events.close(e.code === 1000 || e.code === 1005 ? undefined : new Error(`WebSocket closed: ${e.code} ${e.reason}`));
      if (stopping && open.size === 0 && !abort.signal.aborted) abort.abort();
    };
    return response;
  };
  return new Promise((resolve, reject) => {
    let server: Deno.HttpServer<Deno.NetAddr>;
    try {
      server = Deno.serve({
        hostname: opts.host,
        port: opts.port,
        signal: abort.signal,
        ...(opts.tls ? { cert: opts.tls.cert, key: opts.tls.key } : {}),
        onListen: (addr) =>
          resolve({
            host: opts.host,
            port: addr.port,
            // stop accepting (new requests get 503); Deno.serve itself stops once the broker
            // has closed the last WebSocket, since stopping it would close them all
            close: () => {
              stopping = true;
              if (open.size === 0 && !abort.signal.aborted) abort.abort();
              return Promise.resolve();
            },
            reloadTls: opts.tls
              ? () =>
                Promise.reject(
                  new Error(
                    "Deno.serve cannot change its certificate, and stopping it would close its WebSockets; " +
                      "this wss:// listener keeps its certificate until the broker restarts",
                  ),
                )
              : undefined,
          }),
        onError: () => new Response("internal error\n", { status: 500 }),
      }, handler);
      server.finished.catch(() => {});
    } catch (e) {
      reject(e);
    }
  });
}
