/// <reference types="bun-types" />
/**
 * Bun TCP (and TLS) listener: Bun.listen sockets behind the Connection seam.
 * Bun's socket.write returns the bytes it took and may be partial: the rest is queued here
 * and flushed on `drain`, and bufferedAmount tells the core how far behind the socket is.
 */
import type { Acceptor, Connection, ConnectionEvents, Listener, ListenOptions } from "../../src/transport.ts";

interface State {
  events: ConnectionEvents;
  conn: BunConnection;
}

class BunConnection implements Connection {
  remote: { address?: string; port?: number };
  private pending: Uint8Array[] = [];
  bufferedAmount = 0;
  private closing = false;
  closed = false;

  constructor(private readonly socket: Bun.Socket<State>) {
    this.remote = { address: socket.remoteAddress, port: (socket as unknown as { remotePort?: number }).remotePort };
  }

  write(bytes: Uint8Array): boolean {
    if (this.closed) return false;
    if (this.bufferedAmount > 0) {
      this.pending.push(bytes);
      this.bufferedAmount += bytes.length;
      return false;
    }
    const n = this.socket.write(bytes);
    if (n === bytes.length) return true;
    const rest = bytes.subarray(Math.max(0, n));
    this.pending.push(rest);
    this.bufferedAmount += rest.length;
    return false;
  }

  /** Called from the socket's drain handler; true when everything is out. */
  flushPending(): boolean {
    while (this.pending.length) {
      const b = this.pending[0];
      const n = this.socket.write(b);
      if (n < b.length) {
        this.pending[0] = b.subarray(Math.max(0, n));
        this.bufferedAmount -= Math.max(0, n);
        return false;
      }
      this.pending.shift();
      this.bufferedAmount -= b.length;
    }
    if (this.closing) this.socket.end();
    return true;
  }

  close(): void {
    if (this.closed || this.closing) return;
    this.closing = true;
    if (this.bufferedAmount === 0) this.socket.end();
    else setTimeout(() => { if (!this.closed) this.socket.terminate(); }, 2000);
  }
}

export async function listenTcp(acceptor: Acceptor, opts: ListenOptions & { tls?: { cert: string; key: string } }): Promise<Listener> {
  const server = Bun.listen<State>({
    hostname: opts.host,
    port: opts.port,
    tls: opts.tls,
    socket: {
      open(socket) {
        socket.setNoDelay?.(true);
        const conn = new BunConnection(socket);
        socket.data = { conn, events: acceptor.accept(conn) };
      },
      data(socket, data) {
        socket.data.events.data(data);
      },
      drain(socket) {
        if (socket.data.conn.flushPending()) socket.data.events.drain();
      },
      close(socket, err) {
        socket.data.conn.closed = true;
        socket.data.events.close(err ?? undefined);
      },
      error(socket, err) {
        socket.data?.conn && (socket.data.conn.closed = true);
        socket.data?.events.close(err);
      },
    },
  });
  return {
    host: opts.host,
    port: server.port,
    close: () => {
      server.stop(true);
      return Promise.resolve();
    },
  };
}
