/**
 * Deno TLS listener (mqtts://) on node:tls, which Deno implements natively (rustls, TLS 1.2 and
 * 1.3 only). Not Deno.listenTls: that cannot ask for a client certificate (no CA or requestCert
 * option, denoland/deno#26825), cannot show one, and cannot change its certificate while
 * listening. node:tls does all three: requestCert + ca (mutual TLS, Connection.identity from
 * getPeerCertificate()) and setSecureContext, which gives new connections the new certificate
 * while open ones keep theirs — the SIGHUP reload, without a second socket.
 *
 * Note: rustls verifies client certificates strictly (webpki): X.509 v3 with extensions, chained
 * to --cafile; an old v1 certificate that OpenSSL accepts is refused here.
 *
 * Output: socket.write queues what the OS does not take; writableLength is bufferedAmount and
 * `drain` follows, the same contract as the TCP adapters. close() lingers as they do (LINGER_MS,
 * LINGER_BYTES): end() flushes and sends close_notify and FIN, input is then discarded until
 * the peer closes too.
 */
import tls from "node:tls";
import type { Acceptor, Connection, ConnectionEvents, Listener, ListenOptions, TlsMaterial } from "../../src/transport.ts";
import { LINGER_BYTES, LINGER_MS } from "../../src/transport.ts";
import { certificateIdentity } from "../../src/tls-identity.ts";

class NodeTlsConnection implements Connection {
  readonly remote: { address?: string; port?: number };
  identity: string | undefined;
  events!: ConnectionEvents;
  closed = false;
  /** Bytes discarded since close(); undefined until then. */
  lingered: number | undefined;

  constructor(private readonly socket: tls.TLSSocket) {
    this.remote = { address: socket.remoteAddress, port: socket.remotePort };
  }

  get bufferedAmount(): number {
    return this.closed ? 0 : this.socket.writableLength;
  }

  write(bytes: Uint8Array): boolean {
    if (this.closed) return false;
    return this.socket.write(bytes);
  }

  pauseReading(): void {
    if (!this.closed && this.lingered === undefined) this.socket.pause();
  }

  resumeReading(): void {
    if (!this.closed) this.socket.resume();
  }

  close(): void {
    if (this.closed || this.lingered !== undefined) return;
    this.socket.resume(); // lingering reads (and discards) what the peer still sends
    this.lingered = 0;
    this.socket.end();
    const timer = setTimeout(() => this.socket.destroy(), LINGER_MS);
    (timer as { unref?: () => void }).unref?.();
  }

  /** Input after close() is read only so the peer gets no reset; true when it was discarded. */
  discard(n: number): boolean {
    if (this.lingered === undefined) return false;
    if ((this.lingered += n) > LINGER_BYTES) this.socket.destroy();
    return true;
  }
}

function secureContext(m: TlsMaterial): tls.SecureContextOptions {
  return { cert: m.cert, key: m.key, ca: m.requireCertificate ? m.ca : undefined, minVersion: "TLSv1.2" };
}

export function listenTls(acceptor: Acceptor, opts: ListenOptions): Promise<Listener> {
  const material = opts.tls;
  if (!material) return Promise.reject(new Error("listenTls needs TLS material"));
  const server = tls.createServer({
    ...secureContext(material),
    requestCert: material.requireCertificate,
    rejectUnauthorized: true,
  }, (socket) => {
    socket.setNoDelay(true);
    const conn = new NodeTlsConnection(socket);
    if (material.requireCertificate) conn.identity = certificateIdentity(socket.getPeerCertificate());
    const events = acceptor.accept(conn);
    conn.events = events;
    let error: Error | undefined;
    socket.on("data", (b: Uint8Array) => {
      if (!conn.discard(b.length)) events.data(b);
    });
    socket.on("drain", () => events.drain());
    socket.on("error", (e: Error) => (error = e));
    socket.on("close", () => {
      conn.closed = true;
      events.close(error);
    });
  });
  // a failed handshake (no or wrong client certificate, TLS 1.1, not TLS at all) never
  // reaches the core; the TLS layer has answered the peer with its alert
  server.on("tlsClientError", () => {});
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      const address = server.address();
      resolve({
        host: opts.host,
        port: typeof address === "object" && address ? address.port : opts.port,
        close: () => {
          server.close(); // stop accepting; open connections stay until the broker closes them
          return Promise.resolve();
        },
        reloadTls: async (m: TlsMaterial) => {
          // requestCert is the server's (unchanged by a reload); the CA and certificate are the context's
          server.setSecureContext(secureContext(m));
        },
      });
    });
  });
}
