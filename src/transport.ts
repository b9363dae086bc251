/**
 * The socket seam. A runtime adapter (adapters/bun, adapters/deno) turns each accepted socket
 * (TCP, TLS, WebSocket) into a Connection, hands it to the broker's `accept`, and feeds the
 * returned ConnectionEvents. The core never sees a runtime socket.
 */
export interface Connection {
  /** The peer; a PROXY-protocol listener fills in the real client address (src/proxy-protocol.ts). */
  readonly remote: { address?: string; port?: number };
  /**
   * The client certificate's identity, when the listener required one and the handshake
   * verified it against the CA: its subject CN, or its first subject alternative name when it
   * has no CN. Undefined on connections without a verified client certificate.
   */
  readonly identity?: string;
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

/** PEM texts for a TLS listener (read from --certfile, --keyfile, --cafile by src/tls-files.ts). */
export interface TlsMaterial {
  cert: string;
  key: string;
  /** CA certificates that client certificates must chain to. */
  ca?: string;
  /** Ask every client for a certificate signed by `ca` and refuse those without one. */
  requireCertificate: boolean;
}

export interface Listener {
  readonly host: string;
  readonly port: number;
  /** Stop accepting; open connections stay until the broker closes them. */
  close(): Promise<void>;
  /**
   * TLS listeners: new connections use this certificate (and CA) from now on; open connections
   * keep theirs. Rejects, with the reason, when the runtime cannot do it for this listener.
   */
  reloadTls?(tls: TlsMaterial): Promise<void>;
}

export interface ListenOptions {
  host: string;
  port: number;
  /** TLS listeners (mqtts, wss). */
  tls?: TlsMaterial;
  /** WebSocket listeners: the one path that upgrades ("" = any path). */
  path?: string;
  /** WebSocket listeners: largest message accepted (bytes); larger ones close the connection. */
  maxMessageSize?: number;
  /**
   * The core needs Connection.identity (use-identity-as-username): an adapter that cannot give
   * it for this kind of listener refuses to open, saying why.
   */
  needIdentity?: boolean;
}

export type ListenFn = (acceptor: Acceptor, opts: ListenOptions) => Promise<Listener>;

/** One ListenFn per listener scheme: what an adapter family (Bun, Deno) offers. */
export interface Transports {
  mqtt: ListenFn;
  mqtts: ListenFn;
  ws: ListenFn;
  wss: ListenFn;
}
