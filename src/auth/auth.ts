/**
 * The security seam: who may connect (Authenticator) and what a connected client may do
 * (Authorizer -> Permissions). The broker asks these interfaces and nothing else, so a user can
 * plug their own (an HTTP service, JWTs, users kept in Redis) by passing a `Security` to the
 * Broker; the default is built from Mosquitto-format files (file-security.ts), and without any
 * file everything is allowed (allowAll), as the plain embedded start always was.
 *
 * Rules the broker keeps for every implementation:
 * - A failed login is answered after --auth-failure-delay-ms and never says which part failed
 *   (an unknown user and a wrong password get the same answer).
 * - Permissions are asked synchronously on the hot path (each delivery of each message): an
 *   implementation that needs I/O does it in `permissions()` (which may return a promise, awaited
 *   at CONNECT) and answers the checks from what it fetched there.
 * - `changed()` subscribers are told when rules change (a SIGHUP reload): the broker then asks
 *   for every connected session's permissions again, so existing sessions follow the new rules,
 *   and drops connections whose authentication is no longer valid (`stillValid`).
 * - In a cluster every node has its own Security: with the file-based one every node reads the
 *   same files (same paths, same contents) and each is sent SIGHUP after a change; a plugged-in
 *   implementation backed by a shared service gives every node the same answers by itself.
 */

/** Who a connection is once authenticated. */
export interface Identity {
  readonly clientId: string;
  /** undefined: anonymous (CONNECT without a user name). */
  readonly username?: string;
}

/** What CONNECT tells about the client. */
export interface ConnectInfo extends Identity {
  /** As sent (binary in MQTT 5); undefined when CONNECT had none. */
  readonly password?: Uint8Array;
  /** The peer address (the PROXY protocol's when a listener uses it). */
  readonly remoteAddress?: string;
  /**
   * Set when the user name is the identity of a client certificate the TLS handshake verified
   * (a listener with use-identity-as-username): the certificate authenticated the client.
   */
  readonly certificateIdentity?: string;
  readonly protocolVersion: number;
  /** The listener's own allow-anonymous (`?allow-anonymous=` in its URL), when it has one. */
  readonly allowAnonymous?: boolean;
}

/** The outcome of authenticating a CONNECT (user name and password, or none). */
export type AuthResult =
  | { ok: true; username?: string; stamp?: unknown }
  | { ok: false; code: number; reason: string };

/** One step of an MQTT 5 enhanced authentication exchange (AUTH packets, §4.12). */
export type AuthStep =
  /** Send AUTH 0x18 Continue authentication with this data and wait for the client's answer. */
  | { kind: "continue"; data?: Uint8Array }
  /** Authenticated as `username`; `data` goes with the CONNACK (or the AUTH 0x00 of a re-authentication). */
  | { kind: "success"; username: string; data?: Uint8Array; stamp?: unknown }
  /** Refused: CONNACK (or DISCONNECT) with `code`, 0x86 Bad user name or password by default. */
  | { kind: "failure"; code?: number; reason: string };

/** One enhanced-authentication conversation (a CONNECT's, or a re-authentication's). */
export interface AuthExchange {
  /** The client's Authentication Data: from CONNECT (or AUTH 0x19) first, then each AUTH 0x18. */
  step(data: Uint8Array | undefined): AuthStep | Promise<AuthStep>;
}

export interface Authenticator {
  /** CONNECT without an Authentication Method. */
  authenticate(c: ConnectInfo): AuthResult | Promise<AuthResult>;
  /**
   * MQTT 5 enhanced authentication: a conversation for `method`, or undefined when the method is
   * not offered (CONNACK 0x8C Bad authentication method). `reauth` is the identity of the
   * connection when this is a re-authentication (AUTH 0x19).
   */
  exchange?(method: string, c: ConnectInfo, reauth?: Identity): AuthExchange | undefined;
  /**
   * After the rules changed: whether a connection authenticated with `stamp` (from its AuthResult
   * or AuthStep) may stay connected. Not implemented: every connection stays.
   */
  stillValid?(id: Identity, stamp: unknown): boolean;
}

/** What one client may do; asked on every PUBLISH, SUBSCRIBE filter and delivery. */
export interface Permissions {
  /** PUBLISH to `topic` (also its will). */
  canPublish(topic: string): boolean;
  /** Receive a message published to `topic`. */
  canRead(topic: string): boolean;
  /**
   * Subscribe to `filter` (the filter inside a `$share/{group}/` one). False only when the
   * filter can never deliver anything readable; what it may deliver is checked per message.
   */
  canSubscribe(filter: string): boolean;
}

export interface Authorizer {
  permissions(id: Identity): Permissions | Promise<Permissions>;
}

export interface Security {
  readonly authenticator: Authenticator;
  readonly authorizer: Authorizer;
  /** Subscribe to rule changes (reloads); returns the unsubscribe function. */
  changed?(listener: () => void): () => void;
}

/** Everything allowed (no rules): the broker skips every check for it. */
export const ALLOW_ALL: Permissions = Object.freeze({
  canPublish: () => true,
  canRead: () => true,
  canSubscribe: () => true,
});

/** Anonymous and named clients connect, and may do anything: the embedded default. */
export const allowAll: Security = {
  authenticator: { authenticate: (c) => ({ ok: true, username: c.username }) },
  authorizer: { permissions: () => ALLOW_ALL },
};

/**
 * Topics a client may never publish to, whatever the rules say: `$`-topics belong to the broker
 * (`$SYS/...`), and `$share/...` is a subscription form, not a topic (§4.8.2).
 */
export function reservedTopic(topic: string): boolean {
  return topic.charCodeAt(0) === 0x24; /* $ */
}
