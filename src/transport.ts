/**
 * The socket seam. A runtime adapter (adapters/bun, adapters/deno) turns each accepted socket
 * (TCP, TLS, later WebSocket) into a Connection, hands it to the broker's `accept`, and feeds
 * the returned ConnectionEvents. The core never sees a runtime socket.
 */
export interface Connection {
  /** The peer; a PROXY-protocol adapter fills in the real client address. */
  readonly remote: { address?: string; port?: number };
  /**
   * Queue bytes for the socket. Returns false when the adapter had to buffer part of them
   * (the OS did not take everything): the broker stops adding QoS 0 traffic past its
   * per-connection output limit until `drain`.
   */
  write(bytes: Uint8Array): boolean;
  /** Bytes accepted by write() but not yet handed to the OS. */
  readonly bufferedAmount: number;
  /**
   * Flush what is buffered (best effort), then close with a lingering close (LINGER_MS).
   * Idempotent.
   */
  close(): void;
  /**
   * Stop reading from the socket until resumeReading(): the client's sends then back up in TCP
   * (--max-publish-rate slows a client down this way). Optional: without it the core holds what
   * arrives, up to its bound for held input.
   */
  pauseReading?(): void;
  resumeReading?(): void;
}

/**
 * Lingering close. After the server's last packet (a DISCONNECT with an error, a CONNACK
 * refusal) an adapter shuts down the write side (FIN) and keeps reading and discarding input
 * until the peer closes too, LINGER_MS have passed or LINGER_BYTES have arrived, and only then
 * closes the socket. Closing a socket that still has unread input makes the kernel answer with
 * a TCP reset, and a reset can destroy that last packet before the client has read it (a
 * client still sending when it is disconnected, e.g. for 0x93 Receive Maximum exceeded).
 */
export const LINGER_MS = 2000;
export const LINGER_BYTES = 4 * 1024 * 1024;

export interface ConnectionEvents {
  data(bytes: Uint8Array): void;
  /** The adapter's buffer has been written out. */
  drain(): void;
  /** The socket is gone (by either side). Called once. */
  close(err?: Error): void;
}

export interface Acceptor {
  accept(conn: Connection): ConnectionEvents;
}

export interface Listener {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

export interface ListenOptions {
  host: string;
  port: number;
}

export type ListenFn = (acceptor: Acceptor, opts: ListenOptions) => Promise<Listener>;
