/**
 * Deno TCP listener: Deno.listen connections behind the Connection seam. (TLS is tls.ts, on
 * node:tls: Deno.listenTls cannot ask for client certificates nor change its certificate.)
 * A read loop per connection feeds the core; writes are queued and a single writer loop
 * awaits conn.write (which can be partial) so bytes never interleave and bufferedAmount is
 * exact. close() lingers (see LINGER_MS): closeWrite() first, then the read loop discards input
 * until the peer closes too or the time is up.
 */
import type { Acceptor, Connection, ConnectionEvents, Listener, ListenOptions } from "../../src/transport.ts";
import { LINGER_BYTES, LINGER_MS } from "../../src/transport.ts";
import { carve } from "../../src/session/arena.ts";

class DenoConnection implements Connection {
  remote: { address?: string; port?: number };
  events!: ConnectionEvents;
  bufferedAmount = 0;
  private queue: Uint8Array[] = [];
  private writing = false;
  private closing = false;
  closed = false;
  /** While lingering after close(): the deadline and the bytes discarded so far. */
  linger: { timer: ReturnType<typeof setTimeout>; bytes: number } | undefined;
  /** Set while reading is paused: the read loop waits for it before its next read. */
  paused: { promise: Promise<void>; resume: () => void } | undefined;

  constructor(private readonly conn: Deno.Conn) {
    const a = conn.remoteAddr as Deno.NetAddr;
    this.remote = { address: a.hostname, port: a.port };
  }

  write(bytes: Uint8Array): boolean {
    if (this.closed) return false;
    this.queue.push(bytes);
    this.bufferedAmount += bytes.length;
    if (!this.writing) void this.writeLoop();
    return false;
  }

  private async writeLoop() {
    this.writing = true;
    try {
      while (this.queue.length && !this.closed) {
        let buf: Uint8Array;
        if (this.queue.length === 1) buf = this.queue[0];
        else {
          buf = new Uint8Array(this.bufferedAmount);
          let p = 0;
          for (const b of this.queue) { buf.set(b, p); p += b.length; }
        }
        this.queue = [];
        let off = 0;
        while (off < buf.length) off += await this.conn.write(off ? buf.subarray(off) : buf);
        this.bufferedAmount -= buf.length;
      }
    } catch {
      this.shut();
    } finally {
      this.writing = false;
    }
    if (this.closing) void this.startLinger();
    else if (!this.closed) this.events.drain();
  }

  close(): void {
    if (this.closed || this.closing) return;
    this.closing = true;
    this.resumeReading(); // the read loop goes on to discard input while lingering
    if (!this.writing) void this.startLinger();
  }

  pauseReading(): void {
    if (this.paused || this.closed) return;
    let resume!: () => void;
    const promise = new Promise<void>((r) => (resume = r));
    this.paused = { promise, resume };
  }

  resumeReading(): void {
    const p = this.paused;
    this.paused = undefined;
    p?.resume();
  }

  /** Everything is written: send FIN; the read loop discards input until the peer closes. */
  private async startLinger(): Promise<void> {
    if (this.closed || this.linger) return;
    const timer = setTimeout(() => this.shut(), LINGER_MS);
    Deno.unrefTimer(timer as unknown as number); // a number in Deno; typed as Node's Timeout here
    this.linger = { timer, bytes: 0 };
    try {
      await this.conn.closeWrite();
    } catch {
      this.shut();
    }
  }

  shut() {
    if (this.closed) return;
    this.closed = true;
    this.resumeReading();
    if (this.linger) clearTimeout(this.linger.timer);
    try { this.conn.close(); } catch { /* already closed */ }
  }
}

/** Reads up to this size reach the core as a view of the shared slab (src/session/arena.ts). */
const SLAB_READ = 4096;

function received(buf: Uint8Array, n: number): Uint8Array {
  if (n > SLAB_READ) return buf.slice(0, n);
  const v = carve(n);
  v.set(n === buf.length ? buf : buf.subarray(0, n));
  return v;
}

async function serve(conn: Deno.Conn, acceptor: Acceptor) {
  try { (conn as Deno.TcpConn).setNoDelay?.(true); } catch { /* not TCP */ }
  const c = new DenoConnection(conn);
  const events = acceptor.accept(c);
  c.events = events;
  // The read buffer starts small (an idle connection holds one while its read is pending) and
  // grows when reads fill it, up to 64 KiB for busy connections.
  let buf = new Uint8Array(512);
  let err: Error | undefined;
  try {
    for (;;) {
      if (c.paused) await c.paused.promise;
      const n = await conn.read(buf);
      if (n === null) break;
      if (c.linger) {
        // closing: the core is done with input, it is read only so the peer gets no reset
        if ((c.linger.bytes += n) > LINGER_BYTES) break;
        continue;
      }
      events.data(received(buf, n));
      if (n === buf.length && buf.length < 65536) buf = new Uint8Array(buf.length * 4);
      if (c.closed) break;
    }
  } catch (e) {
    if (!c.closed) err = e as Error;
  }
  c.shut();
  events.close(err);
}

/**
 * Accept until the listener is closed. A failed accept (a connection reset while it waited in
 * the backlog, as a load balancer's probe does; EMFILE) must not stop the listener: it is
 * skipped, with a short pause when descriptors run out.
 */
async function acceptLoop(listener: Deno.Listener, acceptor: Acceptor): Promise<void> {
  for (;;) {
    let conn: Deno.Conn;
    try {
      conn = await listener.accept();
    } catch (e) {
      if (e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) return; // closed
      await new Promise((r) => setTimeout(r, /too many open files|EMFILE/i.test(String(e)) ? 100 : 0));
      continue;
    }
    void serve(conn, acceptor);
  }
}

export async function listenTcp(acceptor: Acceptor, opts: ListenOptions): Promise<Listener> {
  const listener = Deno.listen({ hostname: opts.host, port: opts.port });
  void acceptLoop(listener, acceptor);
  return {
    host: opts.host,
    port: (listener.addr as Deno.NetAddr).port,
    close: () => {
      try { listener.close(); } catch { /* closed */ }
      return Promise.resolve();
    },
  };
}
