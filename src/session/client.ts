/**
 * One network connection speaking MQTT: framing, CONNECT-first, keepalive, topic aliases,
 * output batching and backpressure. Packet semantics live in handlers/<packet>.ts; session
 * state that outlives the connection lives in session.ts.
 *
 * Output: encoded packets are collected per connection and written once per tick (the broker
 * flushes every dirty client in one microtask), so a burst of deliveries costs one write.
 * Input: frames are processed in order; a handler that returns a promise (CONNECT, SUBSCRIBE)
 * pauses the connection's input until it settles.
 */
import type { Connection, ConnectionEvents } from "../transport.ts";
import type { ListenerSpec } from "../listener-spec.ts";
import { connectProtocolLevel, decode, encode, Framer, type OutPacket, PINGRESP } from "../protocol/codec.ts";
import { encodePublish, reuseWire, type PublishProperties, withPacketId } from "../protocol/publish-codec.ts";
import { connackCodeV3, MqttError, RC } from "../protocol/reason-codes.ts";
import type { QoS, StoredMessage, StoredWill } from "../message.ts";
import type { BrokerContext } from "./context.ts";
import type { Session } from "./session.ts";
import { dispatch } from "./handlers/index.ts";
import { carve } from "./arena.ts";
import type { OutAliases } from "./topic-alias.ts";
import type { AuthState } from "./authenticate.ts";
import type { TokenBucket } from "../limits/token-bucket.ts";

/**
 * Encoded forms of the message being fanned out right now, shared across subscribers: one
 * encoding per distinct wire form. The key is a number for the plain forms (version class,
 * QoS, retain) and a string when MQTT 5 per-delivery properties change the bytes (remaining
 * expiry, topic alias, subscription identifiers), so clients that get the same alias and ids
 * still share one encoding.
 */
type Encoding = { bytes: Uint8Array; pidOffset: number };
let encMsg: StoredMessage | undefined;
/**
 * The first form lives in two variables and the Map is used from the second one on: nearly
 * every fan-out has one form, and a Map cleared per message cost 6 % of a fan-in profile.
 */
let encKey: number | string | undefined;
let encFirst: Encoding | undefined;
const encCache = new Map<number | string, Encoding>();
const NO_TOPIC = new Uint8Array(0);

function dropEncodings(): void {
  encKey = encFirst = undefined;
  if (encCache.size > 0) encCache.clear();
}

function encodingFor(key: number | string): Encoding | undefined {
  return key === encKey ? encFirst : encCache.size > 0 ? encCache.get(key) : undefined;
}

function keepEncoding(key: number | string, e: Encoding): void {
  if (encKey === undefined) {
    encKey = key;
    encFirst = e;
  } else encCache.set(key, e);
}

/** The fan-out is over: let go of its encodings (a large message's would stay pinned). */
export function releaseEncodings(): void {
  if (encMsg === undefined) return;
  encMsg = undefined;
  dropEncodings();
}

/** Protocol level of a CONNECT at the start of `b` (fixed header included), or -1. */
function leadingConnectLevel(b: Uint8Array): number {
  if (b.length < 2 || b[0] >> 4 !== 1) return -1;
  let i = 1;
  while (i < 4 && i < b.length && (b[i] & 128) !== 0) i++;
  return connectProtocolLevel(b, i + 1);
}

export class Client implements ConnectionEvents {
  /** 0 until CONNECT is accepted. */
  version = 0;
  connected = false;
  closed = false;
  clientId = "";
  session: Session | undefined;
  keepaliveMs = 0;
  /**
   * Until a whole CONNECT has arrived: when the connection was accepted (the CONNECT deadline
   * counts from there, however the bytes trickle in); then when it arrived; once it is
   * accepted: the last socket read (keepalive).
   */
  lastSeen: number;
  /** KeepaliveWheel bookkeeping (Watched). */
  wheelSlot = 0;
  /** Outgoing window: min(client Receive Maximum, broker maxInflight). */
  sendWindow = 65535;
  /** Client's Maximum Packet Size (MQTT 5); Infinity when not given. */
  maxOutPacket = Infinity;
  /** Server-to-client aliases (MQTT 5, client's Topic Alias Maximum > 0); see topic-alias.ts. */
  outAliases: OutAliases | undefined;
  inAliases: Map<number, string> | undefined;
  requestProblemInfo = true;
  will: StoredWill | undefined;
  /** Incoming QoS 1 publishes whose PUBACK is not sent yet (receive maximum accounting). */
  incomingPending = 0;
  /** Incoming QoS 2 packet ids received on this connection, PUBREL not seen yet (same). */
  liveQos2: Set<number> | undefined;
  /** Session Expiry Interval as sent in CONNECT (MQTT 5 DISCONNECT may change it, not from 0). */
  connectExpiry = 0;
  /** What authenticated it (Authenticator.stillValid after a reload). */
  authStamp: unknown;
  /** MQTT 5 enhanced authentication: its method, and the exchange in progress (authenticate.ts). */
  auth: AuthState | undefined;
  /** --max-publish-rate (handlers/publish.ts); undefined: no limit. */
  publishRate: TokenBucket | undefined;
  /** The client address its CONNECT was counted under (--max-connections-per-address). */
  admittedAddress: string | undefined;
  /** Since when every PUBLISH of this client had to wait for the rate (-1: not held back now). */
  throttledSince = -1;
  private framer: Framer;
  /** This tick's output (see flush): sealed chunks, and the chunk being filled. */
  private out: Uint8Array[] | undefined;
  private cur: Uint8Array | undefined;
  private curPos = 0;
  private outBytes = 0;
  /** The adapter's bufferedAmount as last reported to the broker's memory account. */
  private outHeld = 0;
  private drainWaiters: Array<() => void> | undefined;
  private dirty = false;
  private paused = false;
  private closeReason: string | undefined;
  /** Reason code of a server-initiated DISCONNECT (see disconnect), for the log. */
  closeCode: number | undefined;
  /** The socket closed while input was held behind a pending handler (see close). */
  private socketGone: Error | null | undefined;

  /**
   * The user name this connection authenticates as: CONNECT's, or the client certificate's
   * identity on a listener with use-identity-as-username (the authentication work reads it).
   */
  username: string | undefined;

  constructor(readonly conn: Connection, readonly ctx: BrokerContext, readonly listener?: ListenerSpec) {
    // CONNECT has its own, smaller limit until it is accepted (markConnected)
    this.framer = new Framer(Math.min(ctx.config.maxConnectSize, ctx.config.maxPacketSize));
    this.lastSeen = ctx.clock.now();
    ctx.wheel.watch(this);
  }

  // --- keepalive wheel ------------------------------------------------------------------
  deadline(): number {
    if (this.closed) return Infinity;
    // absolute from accept: bytes of a CONNECT that trickles in do not move it
    if (!this.connected) return this.lastSeen + this.ctx.config.connectTimeoutMs;
    // [MQTT-3.1.2-24] 1.5 x keepalive; 0 disables [MQTT-3.1.2-10]
    return this.keepaliveMs === 0 ? Infinity : this.lastSeen + this.keepaliveMs * 1.5;
  }

  expire(): void {
    if (this.closed) return;
    if (!this.connected) {
      this.ctx.log.info("connection closed: no CONNECT in time", { address: this.conn.remote.address });
      this.shutdown(false, "connect timeout");
    } else {
      this.disconnect(RC.KEEP_ALIVE_TIMEOUT, "keepalive expired");
    }
  }

  /** CONNECT accepted: keepalive starts now, and packets may be as large as maxPacketSize. */
  markConnected(): void {
    this.connected = true;
    this.lastSeen = this.ctx.clock.now();
    this.framer.maxPacketSize = this.ctx.config.maxPacketSize;
  }

  // --- input ------------------------------------------------------------------------------
  data(bytes: Uint8Array): void {
    if (this.closed) return;
    this.ctx.stats.bytesIn += bytes.length;
    // one clock read per socket read, not per packet (also the receive time of its PUBLISHes);
    // before CONNECT is accepted lastSeen stays the accept time (see deadline)
    if (this.connected) this.lastSeen = this.ctx.clock.now();
    if (this.paused) {
      this.framer.append(bytes); // held in order until the pending handler settles
      // a client that floods while its CONNECT/SUBSCRIBE is still being stored is not
      // buffered without bound: past two maximum-size packets it is cut off
      if (this.framer.buffered > 2 * this.ctx.config.maxPacketSize + 65536) {
        this.fail(new MqttError(RC.QUOTA_EXCEEDED, `more than ${this.framer.buffered} bytes sent while a request was pending`));
      }
      return;
    }
    const first = this.version === 0 && this.framer.buffered === 0 && bytes.length > 0;
    if (first && bytes[0] >> 4 !== 1) {
      // [MQTT-3.1.0-1] the first packet must be CONNECT: refuse on its first byte instead of
      // waiting (until the CONNECT timeout) for a frame that may never complete, e.g. an
      // HTTP request whose first bytes read as a large Remaining Length
      this.fail(new MqttError(RC.PROTOCOL_ERROR, `first packet is type ${bytes[0] >> 4}, not CONNECT`));
      return;
    }
    try {
      this.framer.push(bytes, this);
    } catch (e) {
      if (first && e instanceof MqttError && e.code === RC.PACKET_TOO_LARGE && leadingConnectLevel(bytes) === 5) {
        // an oversized MQTT 5 CONNECT is answered with CONNACK 0x95 [MQTT-4.13.1-1] when its
        // protocol level came with its fixed header; a header alone cannot tell: just closed
        this.version = 5;
      }
      this.fail(e);
    }
  }

  /** FrameConsumer: one complete frame from the framer. */
  onFrame(frame: Uint8Array, bodyStart: number): boolean {
    if (this.closed) return false;
    this.ctx.stats.packetsIn++;
    const type = frame[0] >> 4;
    if (!this.connected && this.version === 0) {
      if (type !== 1) {
        // [MQTT-3.1.0-1] the first packet must be CONNECT
        throw new MqttError(RC.PROTOCOL_ERROR, `first packet is type ${type}, not CONNECT`);
      }
      const level = connectProtocolLevel(frame, bodyStart);
      if (level !== 3 && level !== 4 && level !== 5) {
        // [MQTT-3.1.2-2] unsupported level: CONNACK 0x01 (3.1.1) / 0x84 (5.0), then close
        this.version = level === 5 ? 5 : 4;
        throw new MqttError(RC.UNSUPPORTED_PROTOCOL_VERSION, `unsupported protocol level ${level}`);
      }
      this.version = level;
      // the whole CONNECT is here: its handling (a session load) gets the timeout afresh
      this.lastSeen = this.ctx.clock.now();
    } else if (type === 1) {
      throw new MqttError(RC.PROTOCOL_ERROR, "second CONNECT on one connection"); // [MQTT-3.1.0-2]
    }
    const packet = decode(frame, bodyStart, this.version);
    const r = dispatch(this, packet);
    if (r) {
      this.paused = true;
      r.then(() => this.resume(), (e) => this.fail(e));
      return false;
    }
    return true;
  }

  private resume() {
    this.paused = false;
    if (this.closed) return;
    const rest = this.framer.take();
    if (rest) this.data(rest);
    if (this.socketGone !== undefined && !this.paused && !this.closed) {
      const err = this.socketGone;
      this.socketGone = undefined;
      this.close(err === null ? undefined : err);
    }
  }

  /** A handler or the framer failed: answer with the reason code, close, publish the will. */
  fail(e: unknown): void {
    if (this.closed) return;
    const err = e instanceof MqttError ? e : new MqttError(RC.UNSPECIFIED_ERROR, String((e as Error)?.message ?? e));
    this.ctx.stats.protocolErrors++;
    this.ctx.log.info("closing connection", {
      clientId: this.clientId || undefined,
      address: this.conn.remote.address,
      reason: `0x${err.code.toString(16)}`,
      why: err.message,
    });
    if (!this.connected) {
      // errors before CONNACK: answer with a CONNACK refusal where one fits
      // 3.1.1 has no CONNACK code for malformed input: just close [MQTT-3.2.2-?]; 5.0 says why
      const refusable = err.code !== RC.MALFORMED_PACKET && err.code !== RC.PROTOCOL_ERROR;
      if (this.version === 5 || (this.version !== 0 && refusable)) {
        const props: Record<string, unknown> = {};
        if (err.code === RC.USE_ANOTHER_SERVER || err.code === RC.SERVER_MOVED) {
          props.serverReference = this.ctx.config.serverReference; // [MQTT-4.11]
        }
        this.sendConnack(false, err.code, props);
      }
      this.shutdown(false, err.message);
      return;
    }
    // a client is told why in protocol terms; an internal failure's text stays in the log
    this.disconnect(err.code, e instanceof MqttError ? err.message : "internal server error");
  }

  // --- output -----------------------------------------------------------------------------
  // This tick's output: small packets are written straight into `cur` (carved from the
  // arena, no allocation per packet); large ones (shared encodings of big payloads) are kept
  // as their own chunks in `out`, not copied. flush() hands the socket one buffer.

  private markOut(n: number) {
    this.outBytes += n;
    this.ctx.stats.packetsOut++;
    if (!this.dirty) {
      this.dirty = true;
      this.ctx.markDirty(this);
    }
  }

  /** `cur` with at least n free bytes. */
  private room(n: number): Uint8Array {
    const cur = this.cur;
    if (cur !== undefined && this.curPos + n <= cur.length) return cur;
    this.seal();
    const fresh = carve(n > 1024 ? n : 1024);
    this.cur = fresh;
    this.curPos = 0;
    return fresh;
  }

  private seal() {
    if (this.cur !== undefined && this.curPos > 0) (this.out ??= []).push(this.cur.subarray(0, this.curPos));
    this.cur = undefined;
    this.curPos = 0;
  }

  private push(bytes: Uint8Array) {
    const n = bytes.length;
    if (n > 4096) {
      this.seal();
      (this.out ??= []).push(bytes);
    } else {
      this.room(n).set(bytes, this.curPos);
      this.curPos += n;
    }
    this.markOut(n);
  }

  /** PUBACK/PUBREC/PUBREL/PUBCOMP without reason code: four bytes, no allocation. */
  private pushAck(type: 4 | 5 | 6 | 7, pid: number) {
    const b = this.room(4);
    let p = this.curPos;
    b[p++] = (type << 4) | (type === 6 ? 2 : 0); // PUBREL has flags 0010 [MQTT-3.6.1-1]
    b[p++] = 2;
    b[p++] = pid >> 8;
    b[p++] = pid & 255;
    this.curPos = p;
    this.markOut(4);
  }

  /** A shared encoded PUBLISH with this client's packet id (and DUP) written into the copy. */
  private pushWithPid(bytes: Uint8Array, pidOffset: number, pid: number, dup: boolean) {
    const n = bytes.length;
    if (n > 4096) {
      this.push(withPacketId(bytes, pidOffset, pid, dup));
      return;
    }
    const b = this.room(n);
    const at = this.curPos;
    b.set(bytes, at);
    b[at + pidOffset] = pid >> 8;
    b[at + pidOffset + 1] = pid & 255;
    if (dup) b[at] |= 8;
    this.curPos = at + n;
    this.markOut(n);
  }

  flush(): void {
    this.dirty = false;
    if (this.outBytes === 0) return;
    let buf: Uint8Array;
    const out = this.out;
    if (out === undefined) {
      buf = this.cur!.subarray(0, this.curPos);
      // the rest of `cur` is left to the arena: the socket may hold this view
      this.cur = undefined;
      this.curPos = 0;
    } else {
      this.seal();
      if (out.length === 1) buf = out[0];
      else {
        buf = carve(this.outBytes);
        let p = 0;
        for (const b of out) {
          buf.set(b, p);
          p += b.length;
        }
      }
    }
    this.out = undefined;
    this.ctx.stats.bytesOut += this.outBytes;
    this.outBytes = 0;
    this.conn.write(buf);
    this.trackOutput();
  }

  /** Tell the memory account how much the adapter holds for this socket now. */
  private trackOutput(): void {
    const held = this.closed ? 0 : this.conn.bufferedAmount;
    if (held !== this.outHeld) {
      this.ctx.memory.addOutput(held - this.outHeld);
      this.outHeld = held;
    }
  }

  /** Bytes queued for this connection and not yet taken by the OS (this tick's + the adapter's). */
  get outputBacklog(): number {
    return this.conn.bufferedAmount + this.outBytes;
  }

  /**
   * Hand this tick's output to the adapter; resolves once the adapter has written everything
   * (or the connection is gone). Bulk senders (retained messages on subscribe) pace themselves
   * with it instead of running into the QoS 0 slow-consumer limit.
   */
  drained(): Promise<void> {
    this.flush();
    if (this.closed || this.conn.bufferedAmount === 0) return Promise.resolve();
    return new Promise((resolve) => (this.drainWaiters ??= []).push(resolve));
  }

  /** ConnectionEvents.drain: the adapter's buffer is empty again. */
  drain(): void {
    this.trackOutput();
    const w = this.drainWaiters;
    if (!w) return;
    this.drainWaiters = undefined;
    for (const resolve of w) resolve();
  }

  sendPacket(p: OutPacket): void {
    let bytes = encode(p, this.version);
    if (bytes.length > this.maxOutPacket) {
      const fit = this.fitToClient(p as { cmd: string; properties?: Record<string, unknown> });
      if (!fit) {
        // [MQTT-3.1.2-24] never larger than the client's Maximum Packet Size
        this.ctx.log.warn("packet not sent: larger than the client's maximum packet size", {
          clientId: this.clientId, packet: p.cmd, size: bytes.length, max: this.maxOutPacket,
        });
        return;
      }
      bytes = fit;
    }
    this.push(bytes);
  }

  /**
   * A packet over the client's Maximum Packet Size without the properties it can do without:
   * first the Reason String and User Properties ([MQTT-3.2.2-19] [MQTT-3.2.2-20] [MQTT-3.4.2-2]
   * [MQTT-3.14.2-3] and the same rule on every ack), then, for a CONNACK, the properties whose
   * absence means the same (capabilities that are available, Response Information).
   */
  private fitToClient(p: { cmd: string; properties?: Record<string, unknown> }): Uint8Array | undefined {
    if (!p.properties) return undefined;
    const { reasonString: _r, userProperties: _u, ...props } = p.properties;
    const enc = (properties: Record<string, unknown>) => encode({ ...p, properties } as OutPacket, this.version);
    let b = enc(props);
    if (b.length <= this.maxOutPacket || p.cmd !== "connack") return b.length <= this.maxOutPacket ? b : undefined;
    for (const k of ["retainAvailable", "wildcardSubscriptionAvailable", "subscriptionIdentifiersAvailable", "sharedSubscriptionAvailable"]) {
      if (props[k] === true) delete props[k];
    }
    if (props.receiveMaximum === 65535) delete props.receiveMaximum;
    delete props.responseInformation;
    b = enc(props);
    if (b.length <= this.maxOutPacket) return b;
    delete props.topicAliasMaximum; // absent: the client sends no aliases, which we still accept
    b = enc(props);
    return b.length <= this.maxOutPacket ? b : undefined;
  }

  sendAck(type: 4 | 5 | 6 | 7, pid: number, reasonCode = 0, reasonString?: string): void {
    if (this.version !== 5 || (reasonCode === 0 && !reasonString)) {
      this.pushAck(type, pid);
      return;
    }
    const cmd = type === 4 ? "puback" : type === 5 ? "pubrec" : type === 6 ? "pubrel" : "pubcomp";
    const properties = reasonString && this.requestProblemInfo ? { reasonString } : undefined;
    this.sendPacket({ cmd, messageId: pid, reasonCode, properties } as OutPacket);
  }

  sendPubrel(pid: number): void {
    this.pushAck(6, pid);
  }

  sendPingresp(): void {
    this.push(PINGRESP);
  }

  sendConnack(sessionPresent: boolean, code: number, properties: Record<string, unknown>): void {
    if (this.version === 5) {
      const props = Object.keys(properties).length ? properties : undefined;
      this.sendPacket({ cmd: "connack", sessionPresent, reasonCode: code, properties: props } as OutPacket);
    } else {
      // 3.1.1 return codes [MQTT-3.2.2-5]; a refusal has session present 0 [MQTT-3.2.2-4]
      const returnCode = code >= 0x80 ? connackCodeV3(code) : code;
      // 3.1 (MQIsdp) has no Session Present flag: that byte is reserved there and stays 0
      const present = this.version === 4 && sessionPresent;
      this.sendPacket({ cmd: "connack", sessionPresent: present, returnCode });
    }
    this.flush();
  }

  /**
   * Encode and queue a PUBLISH to this client. Returns false when the packet would exceed the
   * client's Maximum Packet Size (the message is then not sent to it [MQTT-3.1.2-25]).
   * QoS 0 is dropped (and counted) when the connection's output is over its limit.
   */
  sendPublish(msg: StoredMessage, qos: QoS, retain: boolean, subIds: number[] | undefined, pid: number, dup: boolean): boolean {
    if (this.closed) return qos > 0;
    if (qos === 0 && this.conn.bufferedAmount + this.outBytes > this.ctx.config.maxOutputBuffer) {
      this.ctx.stats.droppedQos0SlowConsumer++;
      return true;
    }
    const v5 = this.version === 5;
    if (encMsg !== msg) {
      if (encMsg !== undefined) dropEncodings(); // (releaseEncodings left them empty)
      encMsg = msg;
    }
    let key: number | string = (v5 ? 8 : 0) | (qos << 1) | (retain ? 1 : 0);
    let expiry = -1;
    let alias = 0;
    if (v5) {
      // [MQTT-3.3.2-6] the lifetime left, not the lifetime received
      if (msg.expiresAt !== undefined) expiry = Math.max(0, Math.ceil((msg.expiresAt - this.ctx.clock.now()) / 1000));
      if (this.outAliases !== undefined) alias = this.outAliases.lookup(msg.topic);
      if (subIds !== undefined || expiry >= 0 || alias !== 0) key = `${key}|${expiry}|${alias}|${subIds ?? ""}`;
    }
    let encoded = encodingFor(key);
    if (encoded === undefined) {
      if (!v5 && msg.wire !== undefined && msg.qos === qos) {
        encoded = reuseWire(msg.wire, qos, retain);
      } else if (typeof key === "number") {
        encoded = encodePublish({ topic: msg.topic, payload: msg.payload, qos, retain, dup: false, properties: msg.properties }, this.version);
      } else {
        const props: PublishProperties = { ...msg.properties };
        if (expiry >= 0) props.messageExpiryInterval = expiry;
        // [MQTT-3.3.4-3] [MQTT-3.3.4-4] every matching subscription's identifier, in one PUBLISH
        if (subIds !== undefined) props.subscriptionIdentifier = subIds.length === 1 ? subIds[0] : subIds;
        if (alias !== 0) props.topicAlias = alias < 0 ? -alias : alias;
        // a known alias goes with an empty topic name: the repeated topic costs two bytes
        encoded = encodePublish({ topic: msg.topic, payload: msg.payload, qos, retain, dup: false, properties: props }, 5,
          alias > 0 ? NO_TOPIC : undefined);
      }
      keepEncoding(key, encoded);
    }
    if (encoded.bytes.length > this.maxOutPacket) {
      // [MQTT-3.1.2-24] [MQTT-3.1.2-25] too large for this client: discarded for it alone (a new
      // alias is not recorded, the client never learnt it)
      this.ctx.stats.droppedTooLarge++;
      return false;
    }
    if (alias < 0) this.outAliases!.commit(msg.topic, -alias);
    this.ctx.stats.messagesOut++;
    const st = this.ctx.stats;
    st.publishesOutByQos[qos]++;
    st.payloadBytesOutByQos[qos] += msg.payload.length;
    if (qos === 0) this.push(encoded.bytes);
    else this.pushWithPid(encoded.bytes, encoded.pidOffset, pid, dup);
    return true;
  }

  // --- closing ----------------------------------------------------------------------------
  /**
   * Server-initiated disconnect: MQTT 5 gets a DISCONNECT with the reason code first. The will
   * goes too (an abnormal end [MQTT-3.1.2-8]) unless the node sends the client away on purpose
   * (shutdown, drain: Broker.sendAway).
   */
  disconnect(code: number, why: string, extra?: Record<string, unknown>, publishWill = true): void {
    if (this.closed) return;
    this.closeCode = code;
    if (this.version === 5 && this.connected) {
      const properties: Record<string, unknown> = { ...extra };
      if (why && this.requestProblemInfo) properties.reasonString = why.slice(0, 200);
      this.sendPacket({ cmd: "disconnect", reasonCode: code, properties } as OutPacket);
    }
    // a server-side disconnect is an abnormal end for the will [MQTT-3.1.2-8]
    this.shutdown(publishWill, why);
  }

  /** Close the socket and detach from the session. */
  shutdown(publishWill: boolean, why: string): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.closeReason = why;
    this.conn.close();
    this.ctx.wheel.unwatch(this);
    this.drain(); // nobody waits for output that will not be written
    this.ctx.clientClosed(this, publishWill);
  }

  /** ConnectionEvents.close: the socket went away. */
  close(err?: Error): void {
    if (this.closed) return;
    if (this.paused && this.framer.buffered > 0) {
      // Bytes that arrived before the socket closed wait behind a pending handler (a
      // SUBSCRIBE's retained lookup, a CONNECT's session load): process them first, so a
      // DISCONNECT sent just before closing still counts (no will, its session expiry).
      this.socketGone = err ?? null;
      return;
    }
    this.closed = true;
    this.closeReason = err ? err.message : "connection lost";
    this.out = undefined;
    this.cur = undefined;
    this.outBytes = 0;
    this.ctx.wheel.unwatch(this);
    this.drain();
    this.ctx.clientClosed(this, true);
  }

  get reason(): string | undefined {
    return this.closeReason;
  }
}
