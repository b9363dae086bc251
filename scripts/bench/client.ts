/**
 * A minimal MQTT 3.1.1 client for the load generator: CONNECT/CONNACK, SUBSCRIBE/SUBACK, and the
 * QoS 1/2 acknowledgement flows on both sides. Acknowledgements produced while handling one read
 * are written back in a single write.
 */
import { type Conn, type Connector } from "./transport.ts";
import { FrameReader } from "./frame-reader.ts";
import {
  encodeConnect,
  encodeSubscribe,
  PUBACK,
  PUBCOMP,
  PUBREC,
  PUBREL,
  type ConnectOptions,
  type SubscriptionRequest,
} from "./mqtt-encode.ts";

export interface ClientHooks {
  /** A PUBLISH arrived; its payload is buf[start, end). */
  message?(buf: Uint8Array, start: number, end: number, qos: number): void;
  /** Our own QoS 1 publish got its PUBACK, or our QoS 2 publish its PUBCOMP. */
  completed?(packetId: number): void;
  /** Called once after every read has been handled. */
  afterRead?(): void;
  /** The connection closed without us asking. */
  lost?(): void;
}

interface Waiter {
  resolve(): void;
  reject(e: Error): void;
}

export class MqttClient {
  private conn: Conn | null = null;
  private readonly reader: FrameReader;
  private acks = new Uint8Array(256);
  private ackLen = 0;
  private connack: Waiter | null = null;
  private suback: Waiter | null = null;
  private closing = false;
  /** Protocol errors seen (unexpected packet types, refused CONNACK/SUBACK...). */
  errors: string[] = [];

  constructor(private readonly hooks: ClientHooks) {
    this.reader = new FrameReader((type, flags, buf, start, end) => this.packet(type, flags, buf, start, end));
  }

  async open(connect: Connector, host: string, port: number, options: ConnectOptions): Promise<void> {
    this.conn = await connect(host, port, {
      data: (chunk) => this.read(chunk),
      close: () => this.closed(),
    });
    const done = new Promise<void>((resolve, reject) => (this.connack = { resolve, reject }));
    this.conn.write(encodeConnect(options));
    await done;
  }

  subscribe(subs: readonly SubscriptionRequest[], packetId = 1): Promise<void> {
    const done = new Promise<void>((resolve, reject) => (this.suback = { resolve, reject }));
    this.write(encodeSubscribe(packetId, subs));
    return done;
  }

  write(data: Uint8Array): void {
    this.conn?.write(data);
  }

  buffered(): number {
    return this.conn === null ? 0 : this.conn.buffered();
  }

  close(): void {
    this.closing = true;
    this.conn?.destroy();
  }

  private closed(): void {
    const e = new Error("connection closed by broker");
    this.connack?.reject(e);
    this.suback?.reject(e);
    this.connack = this.suback = null;
    if (!this.closing) this.hooks.lost?.();
  }

  private read(chunk: Uint8Array): void {
    this.reader.push(chunk);
    if (this.ackLen > 0) {
      this.conn?.write(this.acks.slice(0, this.ackLen));
      this.ackLen = 0;
    }
    this.hooks.afterRead?.();
  }

  private ack(firstByte: number, hi: number, lo: number): void {
    if (this.ackLen + 4 > this.acks.length) {
      const bigger = new Uint8Array(this.acks.length * 2);
      bigger.set(this.acks);
      this.acks = bigger;
    }
    const a = this.acks;
    const i = this.ackLen;
    a[i] = firstByte;
    a[i + 1] = 2;
    a[i + 2] = hi;
    a[i + 3] = lo;
    this.ackLen = i + 4;
  }

  private packet(type: number, flags: number, buf: Uint8Array, start: number, end: number): void {
    switch (type) {
      case 3: {
        const qos = (flags >> 1) & 3;
        let pos = start + 2 + ((buf[start] << 8) | buf[start + 1]);
        if (qos > 0) {
          const hi = buf[pos];
          const lo = buf[pos + 1];
          pos += 2;
          this.ack(qos === 1 ? PUBACK : PUBREC, hi, lo);
        }
        this.hooks.message?.(buf, pos, end, qos);
        return;
      }
      case 4: // PUBACK
      case 7: // PUBCOMP
        this.hooks.completed?.((buf[start] << 8) | buf[start + 1]);
        return;
      case 5: // PUBREC -> PUBREL
        this.ack(PUBREL, buf[start], buf[start + 1]);
        return;
      case 6: // PUBREL -> PUBCOMP
        this.ack(PUBCOMP, buf[start], buf[start + 1]);
        return;
      case 2: {
        const w = this.connack;
        this.connack = null;
        const rc = end - start >= 2 ? buf[start + 1] : -1;
        if (rc === 0) w?.resolve();
        else {
          this.errors.push(`CONNACK return code ${rc}`);
          w?.reject(new Error(`CONNACK return code ${rc}`));
        }
        return;
      }
      case 9: {
        const w = this.suback;
        this.suback = null;
        for (let i = start + 2; i < end; i++) {
          if (buf[i] === 0x80) {
            this.errors.push("SUBACK refused a subscription");
            w?.reject(new Error("SUBACK refused a subscription"));
            return;
          }
        }
        w?.resolve();
        return;
      }
      case 13: // PINGRESP
        return;
      default:
        this.errors.push(`unexpected packet type ${type}`);
    }
  }
}
