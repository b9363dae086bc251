/**
 * Authentication of a connection, between CONNECT and CONNACK and again on re-authentication
 * (MQTT 5 §4.12), through the Authenticator seam (auth/auth.ts):
 *
 * - CONNECT without an Authentication Method: user name and password are checked at once.
 * - CONNECT with one: the method's exchange starts with the CONNECT's Authentication Data; each
 *   "continue" is sent as AUTH 0x18 and the connection waits (not yet connected: only AUTH and
 *   DISCONNECT are accepted [MQTT-3.1.2-30]) for the client's AUTH 0x18 (handlers/auth.ts), until
 *   success (CONNACK 0x00 with the method and the final data [MQTT-4.12.0-5]) or failure.
 *   A method the server does not offer: CONNACK 0x8C [MQTT-4.12.0-1].
 * - Re-authentication: AUTH 0x19 with the same method [MQTT-4.12.1-1] starts a new exchange for
 *   the same user; it ends with AUTH 0x00, or with DISCONNECT 0x87 and the close [MQTT-4.12.1-2].
 *   Other packets keep flowing meanwhile under the previous authentication.
 *
 * Every failure is answered after --auth-failure-delay-ms, whatever failed (so that guessing is
 * slow and the timing says nothing), with the same code for an unknown user and a wrong password.
 */
import { Buffer } from "node:buffer";
import type { AuthExchange, AuthStep, ConnectInfo } from "../auth/auth.ts";
import type { AuthPacket, ConnectPacket } from "../protocol/codec.ts";
import { MqttError, RC } from "../protocol/reason-codes.ts";
import type { Client } from "./client.ts";

/** Who the connection is, once authenticated. */
export interface Authenticated {
  username: string | undefined;
  stamp?: unknown;
  /** MQTT 5 enhanced authentication: the method, and the data that goes with the CONNACK. */
  method?: string;
  data?: Uint8Array;
}

/** An enhanced authentication in progress (CONNECT's, or a re-authentication). */
export interface AuthState {
  method: string;
  exchange?: AuthExchange;
  /** Set while the exchange belongs to a CONNECT not answered yet. */
  connect?: { packet: ConnectPacket; resume: (a: Authenticated) => Promise<void> };
}

export function connectInfo(c: Client, p: ConnectPacket): ConnectInfo {
  return {
    clientId: p.clientId,
    // the CONNECT's, or the verified certificate's identity (use-identity-as-username)
    username: c.username,
    password: p.password,
    remoteAddress: c.conn.remote.address,
    certificateIdentity: c.listener?.useIdentityAsUsername ? c.conn.identity : undefined,
    protocolVersion: c.version,
    allowAnonymous: c.listener?.allowAnonymous,
  };
}

/** AUTH / CONNACK properties of the exchange: the method, and the data when there is some. */
export function authProperties(method: string, data: Uint8Array | undefined): Record<string, unknown> {
  // the encoder (mqtt-packet) takes binary properties as Buffers
  return data === undefined ? { authenticationMethod: method } : { authenticationMethod: method, authenticationData: Buffer.from(data) };
}

/** Wait --auth-failure-delay-ms, then fail with `code` (CONNACK, or DISCONNECT once connected). */
async function refuse(c: Client, code: number, reason: string): Promise<never> {
  c.ctx.stats.authFailures++;
  c.ctx.log.info("authentication failed", {
    clientId: c.clientId, username: c.username ?? undefined, remote: c.conn.remote.address, why: reason,
  });
  const ms = c.ctx.config.authFailureDelayMs;
  if (ms > 0) await new Promise<void>((r) => c.ctx.clock.setTimeout(r, ms));
  throw new MqttError(code, code === RC.BAD_USERNAME_OR_PASSWORD ? "bad user name or password" : "not authorized");
}

/**
 * CONNECT: authenticate, then `resume` with who the client is (which goes on to CONNACK). With an
 * enhanced exchange that needs more steps this returns once AUTH 0x18 is sent; the rest comes
 * with the client's AUTH packets.
 */
export async function authenticateConnect(
  c: Client, p: ConnectPacket, resume: (a: Authenticated) => Promise<void>,
): Promise<void> {
  const auth = c.ctx.security.authenticator;
  const method = p.properties?.authenticationMethod;
  if (method === undefined) {
    const r = await auth.authenticate(connectInfo(c, p));
    if (!r.ok) return await refuse(c, r.code, r.reason);
    return await resume({ username: r.username, stamp: r.stamp });
  }
  const exchange = auth.exchange?.(method, connectInfo(c, p));
  if (exchange === undefined) {
    // [MQTT-4.12.0-1] a method the server does not support: 0x8C and close
    throw new MqttError(RC.BAD_AUTH_METHOD, `authentication method ${JSON.stringify(method)} is not supported`);
  }
  c.auth = { method, exchange, connect: { packet: p, resume } };
  await step(c, p.properties?.authenticationData);
}

/** The client's AUTH packet (handlers/auth.ts has checked the method and the reason code). */
export async function continueAuth(c: Client, p: AuthPacket): Promise<void> {
  const a = c.auth!;
  if (p.reasonCode === 0x19) {
    // re-authentication: a new exchange for the same user (the connection's identity stays)
    const info: ConnectInfo = {
      clientId: c.clientId, username: c.username, remoteAddress: c.conn.remote.address, protocolVersion: c.version,
    };
    a.exchange = c.ctx.security.authenticator.exchange?.(a.method, info, { clientId: c.clientId, username: c.username });
    if (a.exchange === undefined) return await refuse(c, RC.NOT_AUTHORIZED, "re-authentication not available");
  }
  await step(c, p.properties?.authenticationData);
}

async function step(c: Client, data: Uint8Array | undefined): Promise<void> {
  const a = c.auth!;
  let r: AuthStep;
  try {
    r = await a.exchange!.step(data);
  } catch (e) {
    r = { kind: "failure", code: RC.NOT_AUTHORIZED, reason: `authenticator failed: ${(e as Error)?.message ?? e}` };
  }
  if (c.closed) return;
  const reauth = a.connect === undefined;
  if (r.kind === "continue") {
    // [MQTT-4.12.0-2] AUTH 0x18, with the method [MQTT-4.12.0-5]
    c.sendPacket({ cmd: "auth", reasonCode: 0x18, properties: authProperties(a.method, r.data) } as never);
    return;
  }
  a.exchange = undefined;
  if (r.kind === "failure") {
    // 0x86 is no DISCONNECT reason code: a failed re-authentication is 0x87 Not authorized
    return await refuse(c, reauth ? RC.NOT_AUTHORIZED : r.code ?? RC.BAD_USERNAME_OR_PASSWORD, r.reason);
  }
  if (reauth) {
    if (r.username !== c.username) return await refuse(c, RC.NOT_AUTHORIZED, "re-authentication as another user");
    c.authStamp = r.stamp;
    c.sendPacket({ cmd: "auth", reasonCode: 0, properties: authProperties(a.method, r.data) } as never);
    c.ctx.log.debug("re-authenticated", { clientId: c.clientId, username: c.username });
    return;
  }
  const connect = a.connect!;
  a.connect = undefined;
  const named = connect.packet.username;
  if (named !== undefined && named !== r.username) return await refuse(c, RC.BAD_USERNAME_OR_PASSWORD, "user name differs from the authenticated one");
  await connect.resume({ username: r.username, stamp: r.stamp, method: a.method, data: r.data });
}
