/**
 * The broker's own accounting of the bytes it holds for messages, and the pressure levels
 * derived from it (--max-memory-bytes). Not RSS: what the broker itself chose to keep.
 *
 * - Messages: a StoredMessage is counted once however many holders it has (sessions' queues
 *   and inflight windows, the in-memory retained store): a reference count on the message
 *   itself, so holding and releasing allocate nothing. The first holder also compacts the
 *   payload (see compactPayload): a kept message must not pin the socket read it arrived in,
 *   or the count would say 64 bytes where 64 KB are held.
 * - Output: bytes a connection's adapter holds for the socket (Client reports its
 *   bufferedAmount after each flush and drain, and gives it back when it closes).
 *
 * Levels, as fractions of the limit (0 = no limit, always level 0): past 80 % QoS 0 publishes
 * are shed, past 90 % QoS 1/2 publishes are refused, past 100 % new connections are refused
 * (session/handlers/publish.ts, connect.ts). A session's own share is bounded separately
 * (--max-queued-bytes, session.ts).
 */
import type { MessageHolder, StoredMessage } from "../persistence/persistence.ts";

/** Counted per message for the objects around the payload (message, entry, strings). */
const MESSAGE_OVERHEAD = 128;

export const LEVEL = { OK: 0, SHED_QOS0: 1, REFUSE_PUBLISH: 2, REFUSE_CONNECT: 3 } as const;
const FRACTIONS = [0.8, 0.9, 1];

/**
 * Replace a payload that views a much larger buffer (the socket read it arrived in) by its own
 * copy; done once per message, when it is kept beyond the current tick.
 */
export function compactPayload(msg: StoredMessage): void {
  const p = msg.payload;
  if (p.buffer.byteLength > p.byteLength + 256) msg.payload = p.slice();
}

/** Bytes counted for a message; computed once and kept on it. */
export function messageBytes(msg: StoredMessage): number {
  let n = msg.bytes;
  if (n === undefined || n === 0) {
    n = msg.payload.byteLength + msg.topic.length + MESSAGE_OVERHEAD;
    const pr = msg.properties;
    if (pr !== undefined) n += propertyBytes(pr);
    msg.bytes = n;
  }
  return n;
}

function propertyBytes(pr: NonNullable<StoredMessage["properties"]>): number {
  let n = (pr.contentType?.length ?? 0) + (pr.responseTopic?.length ?? 0) + (pr.correlationData?.byteLength ?? 0);
  const u = pr.userProperties;
  if (Array.isArray(u)) for (const [k, v] of u) n += k.length + v.length + 4;
  else if (u !== undefined) {
    for (const [k, v] of Object.entries(u)) {
      for (const x of Array.isArray(v) ? v : [v]) n += k.length + x.length + 4;
    }
  }
  return n;
}

export class MemoryAccount implements MessageHolder {
  /** Bytes of distinct messages held. */
  messages = 0;
  /** Bytes held in connections' output buffers. */
  output = 0;
  /** 0..3, see LEVEL; read on the hot path, so kept as a plain number. */
  level: number = LEVEL.OK;
  private readonly thresholds: number[];

  /** `onLevel` is told every change of level (logging). */
  constructor(readonly limit: number, private readonly onLevel: (level: number, held: number) => void = () => {}) {
    this.thresholds = limit > 0 ? FRACTIONS.map((f) => Math.floor(limit * f)) : [];
  }

  /** Everything counted, in bytes. */
  get held(): number {
    return this.messages + this.output;
  }

  /** One more holder of msg; returns the bytes it counts for. */
  hold(msg: StoredMessage): number {
    const n = messageBytes(msg);
    const h = msg.holders;
    if (h === undefined || h <= 0) {
      msg.holders = 1;
      compactPayload(msg);
      this.messages += n;
      if (this.limit > 0) this.update();
    } else msg.holders = h + 1;
    return n;
  }

  /** One holder fewer; the message stops counting with its last holder. */
  release(msg: StoredMessage): number {
    const n = messageBytes(msg);
    const h = msg.holders ?? 0;
    if (h <= 1) {
      if (h === 1) {
        this.messages -= n;
        if (this.limit > 0) this.update();
      }
      msg.holders = 0;
    } else msg.holders = h - 1;
    return n;
  }

  /** A connection's output buffer grew (or shrank, negative). */
  addOutput(delta: number): void {
    this.output += delta;
    if (this.limit > 0) this.update();
  }

  private update(): void {
    const held = this.messages + this.output;
    const t = this.thresholds;
    const level = held >= t[2] ? 3 : held >= t[1] ? 2 : held >= t[0] ? 1 : 0;
    if (level !== this.level) {
      this.level = level;
      this.onLevel(level, held);
    }
  }
}
