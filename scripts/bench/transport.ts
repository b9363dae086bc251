/**
 * The socket layer under the load generator: node:net (Bun, Deno, Node) or Bun.connect (Bun
 * only; usually cheaper per read). Both present the same tiny interface. Callers hand `write`
 * a buffer they will not touch again.
 */
import net from "node:net";

export interface ConnHandlers {
  data(chunk: Uint8Array): void;
  close(): void;
}

export interface Conn {
  write(data: Uint8Array): void;
  /** Bytes accepted by write() that the kernel has not taken yet. */
  buffered(): number;
  destroy(): void;
}

export type TransportKind = "net" | "bun";

export type Connector = (host: string, port: number, handlers: ConnHandlers) => Promise<Conn>;

function connectNet(host: string, port: number, h: ConnHandlers): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, noDelay: true });
    let open = false;
    s.on("data", (chunk: Uint8Array) => h.data(chunk));
    s.on("close", () => h.close());
    s.on("error", (err: Error) => {
      if (!open) reject(err);
    });
    s.once("connect", () => {
      open = true;
      resolve({
        write: (d) => void s.write(d),
        buffered: () => s.writableLength,
        destroy: () => s.destroy(),
      });
    });
  });
}

/** The subset of Bun's socket API used here (declared locally so `deno check` passes). */
interface BunSocket {
  data: BunConn;
  write(d: Uint8Array): number;
  end(): void;
  terminate(): void;
}
interface BunApi {
  connect(o: {
    hostname: string;
    port: number;
    data: BunConn;
    socket: {
      binaryType: "uint8array";
      data(s: BunSocket, d: Uint8Array): void;
      drain(s: BunSocket): void;
      close(s: BunSocket): void;
      error(s: BunSocket, e: Error): void;
      connectError(s: BunSocket, e: Error): void;
    };
  }): Promise<BunSocket>;
}

class BunConn implements Conn {
  socket: BunSocket | null = null;
  private queue: Uint8Array[] = [];
  private queued = 0;
  closed = false;

  constructor(readonly h: ConnHandlers) {}

  write(d: Uint8Array): void {
    if (this.closed || this.socket === null) return;
    if (this.queued > 0) {
      this.queue.push(d);
      this.queued += d.length;
      return;
    }
    const n = this.socket.write(d);
    if (n < d.length) {
      const rest = d.subarray(Math.max(0, n));
      this.queue.push(rest);
      this.queued += rest.length;
    }
  }

  drain(): void {
    const s = this.socket;
    while (s !== null && this.queue.length > 0 && !this.closed) {
      const d = this.queue[0];
      const n = s.write(d);
      if (n < d.length) {
        const rest = d.subarray(Math.max(0, n));
        this.queued -= d.length - rest.length;
        this.queue[0] = rest;
        return;
      }
      this.queue.shift();
      this.queued -= d.length;
    }
  }

  buffered(): number {
    return this.queued;
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket?.terminate();
  }
}

const bunHandlers = {
  binaryType: "uint8array" as const,
  data(s: BunSocket, d: Uint8Array): void {
    s.data.h.data(d);
  },
  drain(s: BunSocket): void {
    s.data.drain();
  },
  close(s: BunSocket): void {
    const c = s.data;
    c.closed = true;
    c.h.close();
  },
  error(_s: BunSocket, _e: Error): void {},
  connectError(_s: BunSocket, _e: Error): void {},
};

export function bunApi(): BunApi | undefined {
  return (globalThis as { Bun?: BunApi }).Bun;
}

function connectBun(host: string, port: number, h: ConnHandlers): Promise<Conn> {
  const api = bunApi();
  if (api === undefined) return Promise.reject(new Error("Bun.connect is not available in this runtime"));
  const conn = new BunConn(h);
  return api.connect({ hostname: host, port, data: conn, socket: bunHandlers }).then((s) => {
    conn.socket = s;
    return conn;
  });
}

export function connector(kind: TransportKind): Connector {
  return kind === "bun" ? connectBun : connectNet;
}

/** Bun.connect under Bun, node:net elsewhere. */
export function defaultTransport(): TransportKind {
  return bunApi() !== undefined ? "bun" : "net";
}
