/// <reference types="bun-types" />
/**
 * Bun TCP (and TLS) listener: Bun.listen sockets behind the Connection seam.
 * Bun's socket.write returns the bytes it took and may be partial: the rest is queued here
 * and flushed on `drain`, and bufferedAmount tells the core how far behind the socket is.
 * One small object per socket (it is the socket's `data` too): idle connections are cheap.
 * close() lingers (see LINGER_MS): FIN first, input discarded until the peer closes too.
 *
 * TLS (mqtts://): BoringSSL, TLS 1.2 and 1.3 only (Bun refuses older versions). With
 * requireCertificate the handshake asks for a client certificate and refuses one that does not
 * chain to `ca`; its CN/SAN becomes Connection.identity. A Bun.listen cannot change its
 * certificate, so reloadTls opens a second listener on the same port (SO_REUSEPORT) with the new
 * one and stops the old, which keeps its open connections: new connections get the new
 * certificate, nothing is dropped. (The first bind is probed without SO_REUSEPORT, so a port
 * already in use is still refused rather than shared.)
 */
import type { Acceptor, Connection, ConnectionEvents, Listener, ListenOptions, TlsMaterial } from "../../src/transport.ts";
import { LINGER_BYTES, LINGER_MS } from "../../src/transport.ts";
import { certificateIdentity } from "../../src/tls-identity.ts";

class BunConnection implements Connection {
  events!: ConnectionEvents;
  /** Bytes the socket did not take yet; undefined while everything went out. */
  private pending: Uint8Array[] | undefined;
  bufferedAmount = 0;
  private closing = false;
  closed = false;
  identity: string | undefined;
  /** While lingering after close(): the deadline and the bytes discarded so far. */
  private linger: { timer: ReturnType<typeof setTimeout>; bytes: number } | undefined;

  constructor(private readonly socket: Bun.Socket<BunConnection>) {}

  get remote(): { address?: string; port?: number } {
    const s = this.socket as unknown as { remoteAddress?: string; remotePort?: number };
    return { address: s.remoteAddress, port: s.remotePort };
  }

  write(bytes: Uint8Array): boolean {
    if (this.closed) return false;
    if (this.bufferedAmount > 0) {
      this.pending!.push(bytes);
      this.bufferedAmount += bytes.length;
      return false;
    }
    const n = this.socket.write(bytes);
    if (n === bytes.length) return true;
    const rest = bytes.subarray(Math.max(0, n));
    this.pending = [rest];
    this.bufferedAmount = rest.length;
    return false;
  }

  pauseReading(): void {
    if (!this.closed) this.socket.pause();
  }

  resumeReading(): void {
    if (!this.closed) this.socket.resume();
  }

  /** Called from the socket's drain handler; true when everything is out. */
  flushPending(): boolean {
    const pending = this.pending;
    while (pending && pending.length) {
      const b = pending[0];
      const n = this.socket.write(b);
      if (n < b.length) {
        pending[0] = b.subarray(Math.max(0, n));
        this.bufferedAmount -= Math.max(0, n);
        return false;
      }
      pending.shift();
      this.bufferedAmount -= b.length;
    }
    this.pending = undefined;
    if (this.closing) this.startLinger();
    return true;
  }

  close(): void {
    if (this.closed || this.closing) return;
    this.closing = true;
    this.socket.resume(); // lingering reads (and discards) what the peer still sends
    if (this.bufferedAmount === 0) this.startLinger();
    else setTimeout(() => { if (!this.closed) this.socket.terminate(); }, LINGER_MS);
  }

  /** Everything is written: send FIN, keep reading until the peer closes or the time is up. */
  private startLinger(): void {
    if (this.closed || this.linger) return;
    this.socket.shutdown(); // the peer reads what we sent, then end of stream
    const timer = setTimeout(() => { if (!this.closed) this.socket.terminate(); }, LINGER_MS);
    (timer as { unref?: () => void }).unref?.();
    this.linger = { timer, bytes: 0 };
  }

  /** Input while lingering is discarded; true when it was (the core is done with it). */
  discard(n: number): boolean {
    const l = this.linger;
    if (!l) return false;
    l.bytes += n;
    if (l.bytes > LINGER_BYTES && !this.closed) this.socket.terminate();
    return true;
  }

  gone(): void {
    this.closed = true;
    if (this.linger) clearTimeout(this.linger.timer);
  }
}

function bunTls(tls: TlsMaterial) {
  return tls.requireCertificate
    ? { cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: true }
    : { cert: tls.cert, key: tls.key };
}

function handlers(acceptor: Acceptor, verified: boolean): Bun.SocketHandler<BunConnection> {
  return {
    open(socket) {
      socket.setNoDelay?.(true);
      const conn = new BunConnection(socket);
      socket.data = conn;
      // a TLS socket opens after its handshake, in which the client certificate was verified
      if (verified) conn.identity = certificateIdentity(socket.getPeerCertificate?.());
      conn.events = acceptor.accept(conn);
    },
    data(socket, data) {
      if (!socket.data.discard(data.length)) socket.data.events.data(data);
    },
    drain(socket) {
      if (socket.data.flushPending()) socket.data.events.drain();
    },
    close(socket, err) {
      const conn = socket.data;
      if (!conn || conn.closed) return;
      conn.gone();
      conn.events.close(err ?? undefined);
    },
    error(socket, err) {
      const conn = socket.data;
      if (!conn || conn.closed) return;
      conn.gone();
      conn.events.close(err);
    },
  };
}

/**
 * The port a reusePort listener may take: a plain bind first refuses a port already in use
 * (a reusePort bind would silently share it with another such process) and picks one for 0.
 */
export function probePort(host: string, port: number): number {
  const probe = Bun.listen({ hostname: host, port, socket: { data() {} } });
  const chosen = probe.port;
  probe.stop(true);
  return chosen;
}

export async function listenTcp(acceptor: Acceptor, opts: ListenOptions): Promise<Listener> {
  const socket = handlers(acceptor, false);
  const server = Bun.listen<BunConnection>({ hostname: opts.host, port: opts.port, socket });
  return {
    host: opts.host,
    port: server.port,
    // stop accepting; connections already open stay until the broker closes them (it sends
    // MQTT 5 clients DISCONNECT 0x8B first)
    close: () => {
      server.stop(false);
      return Promise.resolve();
    },
  };
}

export async function listenTls(acceptor: Acceptor, opts: ListenOptions): Promise<Listener> {
  if (!opts.tls) throw new Error("listenTls needs TLS material");
  const port = probePort(opts.host, opts.port);
  const open = (tls: TlsMaterial) =>
    Bun.listen<BunConnection>({
      hostname: opts.host,
      port,
      reusePort: true,
      tls: bunTls(tls),
      socket: handlers(acceptor, tls.requireCertificate),
    } as Bun.TCPSocketListenOptions<BunConnection>);
  let server = open(opts.tls);
  return {
    host: opts.host,
    port,
    close: () => {
      server.stop(false);
      return Promise.resolve();
    },
    reloadTls: async (tls: TlsMaterial) => {
      const next = open(tls);
      const old = server;
      server = next;
      old.stop(false); // its open connections stay, on the old certificate
    },
  };
}
