/// <reference types="bun-types" />
/**
 * Bun WebSocket listeners (ws://, wss://): Bun.serve upgrades requests to the listener's path
 * (src/websocket-upgrade.ts decides which, with which subprotocol) and each ServerWebSocket is a
 * Connection. Binary messages are handed to the core as a byte stream: a packet split across
 * messages or several packets in one are the core framer's business [MQTT-6.0.0-2]; a text
 * message closes the connection [MQTT-6.0.0-1].
 *
 * Backpressure: sendBinary returns -1 when Bun queued the message; getBufferedAmount() is what
 * waits and the `drain` handler says when it is gone, as Bun.listen's drain does for TCP.
 * Bun's own limit (backpressureLimit, which silently drops messages past it) is off: the broker
 * bounds each connection's output itself (--max-output-buffer) and must never lose part of a
 * byte stream. Idle timeout and pings are off too: MQTT keepalive governs idle connections.
 *
 * wss:// uses Bun.serve's TLS; with requireCertificate, client certificates are verified
 * against the CA, but Bun.serve does not expose the certificate to the application, so no
 * identity (use an mqtts:// listener for --use-identity-as-username). SIGHUP reload works as for
 * mqtts:// (tcp.ts): a second Bun.serve on the same port (SO_REUSEPORT) with the new
 * certificate, the old one stopped without closing its WebSockets.
 */
import type { Acceptor, Connection, ConnectionEvents, Listener, ListenOptions, TlsMaterial } from "../../src/transport.ts";
import { decideUpgrade } from "../../src/websocket-upgrade.ts";
import { probePort } from "./tcp.ts";

type Data = { remote: { address?: string; port?: number }; conn?: BunWsConnection };

class BunWsConnection implements Connection {
  events!: ConnectionEvents;
  closed = false;
  private closing = false;

  constructor(private readonly ws: Bun.ServerWebSocket<Data>, readonly remote: Data["remote"]) {}

  get bufferedAmount(): number {
    return this.closed ? 0 : this.ws.getBufferedAmount();
  }

  write(bytes: Uint8Array): boolean {
    if (this.closed) return false;
    // > 0: sent; -1: queued behind backpressure (drain follows); 0: dropped (socket closing)
    return this.ws.sendBinary(bytes) > 0;
  }

  close(): void {
    if (this.closed || this.closing) return;
    this.closing = true;
    this.ws.close(1000); // queued output goes first, then the close frame
  }

  pauseReading(): void {
    if (!this.closed && !this.closing) (this.ws as unknown as { pause?: () => void }).pause?.();
  }

  resumeReading(): void {
    if (!this.closed) (this.ws as unknown as { resume?: () => void }).resume?.();
  }
}

function serveOptions(acceptor: Acceptor, opts: ListenOptions, port: number, tls?: TlsMaterial) {
  const path = opts.path ?? "";
  return {
    hostname: opts.host,
    port,
    reusePort: tls !== undefined,
    tls: tls && (tls.requireCertificate
      ? { cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: true }
      : { cert: tls.cert, key: tls.key }),
    fetch(req: Request, server: Bun.Server<Data>): Response | undefined {
      const d = decideUpgrade(req.method, new URL(req.url).pathname, (h) => req.headers.get(h), path);
      if (!d.upgrade) return new Response(d.body, { status: d.status, headers: d.headers });
      const ip = server.requestIP(req);
      const data: Data = { remote: { address: ip?.address, port: ip?.port } };
      if (server.upgrade(req, { data, headers: { "Sec-WebSocket-Protocol": d.protocol } })) return undefined;
      return new Response("WebSocket upgrade failed\n", { status: 400 });
    },
    websocket: {
      maxPayloadLength: opts.maxMessageSize,
      backpressureLimit: 0,
      idleTimeout: 0,
      sendPings: false,
      perMessageDeflate: false,
      open(ws: Bun.ServerWebSocket<Data>) {
        const conn = new BunWsConnection(ws, ws.data.remote);
        ws.data.conn = conn;
        conn.events = acceptor.accept(conn);
      },
      message(ws: Bun.ServerWebSocket<Data>, message: string | Uint8Array) {
        const conn = ws.data.conn!;
        if (typeof message === "string") {
          // [MQTT-6.0.0-1] MQTT travels in binary frames only: any other data frame closes
          ws.close(1003, "MQTT needs binary WebSocket frames");
          return;
        }
        conn.events.data(message);
      },
      drain(ws: Bun.ServerWebSocket<Data>) {
        ws.data.conn?.events.drain();
      },
      close(ws: Bun.ServerWebSocket<Data>, code: number, reason: string) {
        const conn = ws.data.conn;
        if (!conn || conn.closed) return;
        conn.closed = true;
        conn.events.close(code === 1000 || code === 1005 ? undefined : new Error(`WebSocket closed: ${code} ${reason}`));
      },
    },
  };
}

export async function listenWebSocket(acceptor: Acceptor, opts: ListenOptions): Promise<Listener> {
  if (opts.needIdentity) {
    throw new Error(
      "--use-identity-as-username is not available on wss:// listeners under Bun: Bun.serve verifies client " +
        "certificates but does not show them to the application; use an mqtts:// listener for it, or drop the option here",
    );
  }
  const port = opts.tls ? probePort(opts.host, opts.port) : opts.port;
  const open = (tls?: TlsMaterial) => Bun.serve(serveOptions(acceptor, opts, port, tls) as unknown as Bun.Serve.Options<Data>);
  let server = open(opts.tls);
  return {
    host: opts.host,
    port: server.port ?? port,
    // stop accepting; open WebSockets stay until the broker closes them
    close: () => {
      void server.stop(false); // (its promise waits for every WebSocket to close)
      return Promise.resolve();
    },
    reloadTls: opts.tls
      ? async (tls: TlsMaterial) => {
        const next = open(tls);
        const old = server;
        server = next;
        void old.stop(false);
      }
      : undefined,
  };
}
