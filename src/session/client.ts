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
import { connectProtocolLevel, decode, encode, encodeAck, Framer, type Packet, PINGRESP } from "../protocol/codec.ts";
import { encodePublish, encodeUtf8, type PublishProperties, withPacketId } from "../protocol/publish-codec.ts";
import { connackCodeV3, MqttError, RC } from "../protocol/reason-codes.ts";
import type { QoS, StoredMessage, StoredWill } from "../persistence/persistence.ts";
import type { BrokerContext } from "./context.ts";
import type { Session } from "./session.ts";
import { dispatch } from "./handlers/index.ts";

/** Encoded forms of the message being fanned out right now, shared across subscribers. */
let encMsg: StoredMessage | undefined;
const encCache = new Map<number, { bytes: Uint8Array; pidOffset: number }>();

export class Client implements ConnectionEvents {
  /** 0 until CONNECT is accepted. */
  version = 0;
  connected = false;
  closed = false;
  clientId = "";
  session: Session | undefined;
  keepaliveMs = 0;
  lastSeen: number;
  /** Outgoing window: min(client Receive Maximum, broker maxInflight). */
  sendWindow = 65535;
  /** Client's Maximum Packet Size (MQTT 5); Infinity when not given. */
  maxOutPacket = Infinity;
  /** Client's Topic Alias Maximum for server-to-client aliases. */
  outAliasMax = 0;
  outAliases: Map<string, number> | undefined;
  inAliases: Map<number, string> | undefined;
  requestProblemInfo = true;
  will: StoredWill | undefined;
  /** Incoming QoS 1 publishes whose PUBACK is not sent yet (receive maximum accounting). */
  incomingPending = 0;
  /** Session expiry requested at CONNECT (MQTT 5 DISCONNECT may change it, not from 0). */
  connectExpiry = 0;
  private framer: Framer;
  private out: Uint8Array[] = [];
  private outBytes = 0;
  private dirty = false;
  private paused = false;
  private closeReason: string | undefined;

  constructor(readonly conn: Connection, readonly ctx: BrokerContext) {
    this.framer = new Framer(ctx.config.maxPacketSize);
    this.lastSeen = ctx.clock.now();
    ctx.wheel.watch(this);
  }

  // --- keepalive wheel ------------------------------------------------------------------
  deadline(): number {
    if (this.closed) return Infinity;
    if (!this.connected) return this.lastSeen + this.ctx.config.connectTimeoutMs;
    // [MQTT-3.1.2-24] 1.5 x keepalive; 0 disables [MQTT-3.1.2-10]
    return this.keepaliveMs === 0 ? Infinity : this.lastSeen + this.keepaliveMs * 1.5;
  }

  expire(): void {
    if (this.closed) return;
    if (!this.connected) {
      this.ctx.log.info("connection closed: no CONNECT in time", { remote: this.conn.remote.address });
      this.shutdown(false, "connect timeout");
    } else {
      this.ctx.log.info("keepalive expired", { clientId: this.clientId });
      this.disconnect(RC.KEEP_ALIVE_TIMEOUT, "keepalive expired");
    }
  }

  // --- input ------------------------------------------------------------------------------
  data(bytes: Uint8Array): void {
    if (this.closed) return;
    if (this.paused) {
      this.framer.push(bytes, () => false); // hold until resumed
      return;
    }
    try {
      this.framer.push(bytes, this.onFrame);
    } catch (e) {
      this.fail(e);
    }
  }

  private onFrame = (frame: Uint8Array, bodyStart: number): boolean => {
    if (this.closed) return false;
    this.lastSeen = this.ctx.clock.now();
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
  };

  private resume() {
    this.paused = false;
    if (this.closed) return;
    const rest = this.framer.take();
    if (rest) this.data(rest);
  }

  /** A handler or the framer failed: answer with the reason code, close, publish the will. */
  fail(e: unknown): void {
    if (this.closed) return;
    const err = e instanceof MqttError ? e : new MqttError(RC.UNSPECIFIED_ERROR, String((e as Error)?.message ?? e));
    this.ctx.stats.protocolErrors++;
    this.ctx.log.info("closing connection", {
      clientId: this.clientId || undefined,
      remote: this.conn.remote.address,
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
    this.disconnect(err.code, err.message);
  }

  // --- output -----------------------------------------------------------------------------
  private push(bytes: Uint8Array) {
    this.out.push(bytes);
    this.outBytes += bytes.length;
    if (!this.dirty) {
      this.dirty = true;
      this.ctx.markDirty(this);
    }
  }

  flush(): void {
    this.dirty = false;
    if (this.closed && this.out.length === 0) return;
    const n = this.out.length;
    if (n === 0) return;
    let buf: Uint8Array;
    if (n === 1) buf = this.out[0];
    else {
      buf = new Uint8Array(this.outBytes);
      let p = 0;
      for (const b of this.out) {
        buf.set(b, p);
        p += b.length;
      }
    }
    this.out = [];
    this.outBytes = 0;
    this.conn.write(buf);
  }

  /** ConnectionEvents.drain: the adapter's buffer is empty again. */
  drain(): void {}

  sendPacket(p: Exclude<Packet, { cmd: "publish" }>): void {
    // deno-lint-ignore no-explicit-any
    this.push(encode(p as any, this.version));
  }

  sendAck(type: 4 | 5 | 6 | 7, pid: number, reasonCode = 0, reasonString?: string): void {
    if (this.version !== 5 || (reasonCode === 0 && !reasonString)) {
      this.push(encodeAck(type, pid));
      return;
    }
    const cmd = type === 4 ? "puback" : type === 5 ? "pubrec" : type === 6 ? "pubrel" : "pubcomp";
    const properties = reasonString && this.requestProblemInfo ? { reasonString } : undefined;
    // deno-lint-ignore no-explicit-any
    this.sendPacket({ cmd, messageId: pid, reasonCode, properties } as any);
  }

  sendPubrel(pid: number): void {
    this.push(encodeAck(6, pid));
  }

  sendPingresp(): void {
    this.push(PINGRESP);
  }

  sendConnack(sessionPresent: boolean, code: number, properties: Record<string, unknown>): void {
    if (this.version === 5) {
      const props = Object.keys(properties).length ? properties : undefined;
      this.sendPacket({ cmd: "connack", sessionPresent, reasonCode: code, properties: props } as Packet as never);
    } else {
      // 3.1.1 return codes [MQTT-3.2.2-5]; a refusal has session present 0 [MQTT-3.2.2-4]
      const returnCode = code >= 0x80 ? connackCodeV3(code) : code;
      this.sendPacket({ cmd: "connack", sessionPresent, returnCode } as Packet as never);
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
    let encoded: { bytes: Uint8Array; pidOffset: number };
    const simple = !v5 || (!subIds && msg.expiresAt === undefined && this.outAliasMax === 0);
    if (simple) {
      if (encMsg !== msg) {
        encMsg = msg;
        encCache.clear();
      }
      const key = (v5 ? 8 : 0) | (qos << 1) | (retain ? 1 : 0);
      let e = encCache.get(key);
      if (!e) {
        e = encodePublish({ topic: msg.topic, payload: msg.payload, qos, retain, dup: false, properties: msg.properties }, this.version);
        encCache.set(key, e);
      }
      encoded = e;
    } else {
      const props: PublishProperties = { ...msg.properties };
      if (msg.expiresAt !== undefined) {
        // [MQTT-3.3.2-6] forward the remaining lifetime
        props.messageExpiryInterval = Math.max(0, Math.ceil((msg.expiresAt - this.ctx.clock.now()) / 1000));
      }
      if (subIds) props.subscriptionIdentifier = subIds.length === 1 ? subIds[0] : subIds;
      let topic = msg.topic;
      if (this.outAliasMax > 0) {
        const aliases = this.outAliases ??= new Map();
        const a = aliases.get(topic);
        if (a !== undefined) {
          props.topicAlias = a;
          topic = ""; // repeated topic costs two bytes
        } else if (aliases.size < this.outAliasMax) {
          props.topicAlias = aliases.size + 1;
          aliases.set(topic, props.topicAlias);
        }
      }
      encoded = encodePublish({ topic, payload: msg.payload, qos, retain, dup: false, properties: props }, 5,
        topic === "" ? new Uint8Array(0) : encodeUtf8(topic));
    }
    if (encoded.bytes.length > this.maxOutPacket) {
      this.ctx.stats.droppedTooLarge++;
      return false;
    }
    this.ctx.stats.messagesOut++;
    this.push(qos === 0 ? encoded.bytes : withPacketId(encoded.bytes, encoded.pidOffset, pid, dup));
    return true;
  }

  // --- closing ----------------------------------------------------------------------------
  /** Server-initiated disconnect: MQTT 5 gets a DISCONNECT with the reason code first. */
  disconnect(code: number, why: string, extra?: Record<string, unknown>): void {
    if (this.closed) return;
    if (this.version === 5 && this.connected) {
      const properties: Record<string, unknown> = { ...extra };
      if (why && this.requestProblemInfo) properties.reasonString = why.slice(0, 200);
      this.sendPacket({ cmd: "disconnect", reasonCode: code, properties } as never);
    }
    // a server-side disconnect is an abnormal end for the will [MQTT-3.1.2-8]
    this.shutdown(true, why);
  }

  /** Close the socket and detach from the session. */
  shutdown(publishWill: boolean, why: string): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.closeReason = why;
    this.conn.close();
    this.ctx.clientClosed(this, publishWill);
  }

  /** ConnectionEvents.close: the socket went away. */
  close(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = err ? err.message : "connection lost";
    this.out = [];
    this.ctx.clientClosed(this, true);
  }

  get reason(): string | undefined {
    return this.closeReason;
  }
}
