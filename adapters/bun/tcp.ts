/// <reference types="bun-types" />
/**
 * Bun TCP (and TLS) listener: Bun.listen sockets behind the Connection seam.
 * Bun's socket.write returns the bytes it took and may be partial: the rest is queued here
 * and flushed on `drain`, and bufferedAmount tells the core how far behind the socket is.
 * One small object per socket (it is the socket's `data` too): idle connections are cheap.
 * close() lingers (see LINGER_MS): FIN first, input discarded until the peer closes too.
 */
import type { Acceptor, Connection, ConnectionEvents, Listener, ListenOptions } from "../../src/transport.ts";
import { LINGER_BYTES, LINGER_MS } from "../../src/transport.ts";

class BunConnection implements Connection {
  events!: ConnectionEvents;
  /** Bytes the socket did not take yet; undefined while everything went out. */
  private pending: Uint8Array[] | undefined;
  bufferedAmount = 0;
  private closing = false;
  closed = false;
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

export async function listenTcp(acceptor: Acceptor, opts: ListenOptions & { tls?: { cert: string; key: string } }): Promise<Listener> {
  const server = Bun.listen<BunConnection>({
    hostname: opts.host,
    port: opts.port,
    tls: opts.tls,
    socket: {
      open(socket) {
        socket.setNoDelay?.(true);
        const conn = new BunConnection(socket);
        socket.data = conn;
        conn.events = acceptor.accept(conn);
      },
      data(socket, data) {
        if (!socket.data.discard(data.length)) socket.data.events.data(data);
      },
      drain(socket) {
        if (socket.data.flushPending()) socket.data.events.drain();
      },
      close(socket, err) {
        socket.data.gone();
        socket.data.events.close(err ?? undefined);
      },
      error(socket, err) {
        const conn = socket.data;
        if (!conn) return;
        conn.gone();
        conn.events.close(err);
      },
    },
  });
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
