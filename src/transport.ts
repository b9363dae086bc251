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
  /** Flush what is buffered (best effort) and close. Idempotent. */
  close(): void;
}

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
