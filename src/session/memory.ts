/**
 * The broker's own accounting of the bytes it holds for messages, and the pressure levels
 * derived from it (--max-memory-bytes). Not RSS: what the broker itself chose to keep.
 *
 * - Messages: a StoredMessage is counted once however many holders it has (sessions' queues
 *   and inflight windows, the in-memory retained store): a reference count on the message
 *   itself, so holding and releasing allocate nothing. What is counted is the payload, not
 *   the socket read it may be a view of: whatever keeps a message for long compacts it first
 *   (compactPayload: queued messages, those of a lagging client, retained ones), so that the
 *   count does not say 64 bytes where a 64 KB read is held.
 * - Output: bytes a connection's adapter holds for the socket (Client reports its
 *   bufferedAmount after each flush and drain, and gives it back when it closes).
 * - Forwarding: bytes of forward batches on their way to other nodes of a cluster (the bus
 *   reports them as they are batched and gives them back when the append is stored or failed),
 *   so that a store that stops answering fills this account, not the heap unseen.
 *
 * Levels, as fractions of the limit (0 = no limit, always level 0): past 80 % QoS 0 publishes
 * are shed, past 90 % QoS 1/2 publishes are refused, past 100 % new connections are refused
 * (session/handlers/publish.ts, connect.ts). A session's own share is bounded separately
 * (--max-queued-bytes, session.ts).
 */
import type { MessageHolder, StoredMessage } from "../message.ts";

/** Counted per message for the objects around the payload (message, entry, strings). */
const MESSAGE_OVERHEAD = 128;

export const LEVEL = { OK: 0, SHED_QOS0: 1, REFUSE_PUBLISH: 2, REFUSE_CONNECT: 3 } as const;
const FRACTIONS = [0.8, 0.9, 1];

/**
 * Replace a payload that views a much larger buffer (the socket read it arrived in) by its own
 * copy; done once per message, when it is kept beyond the current tick. Not `p.slice()`: on a
 * Node Buffer (what Bun's sockets deliver) slice is a view of the same memory, not a copy.
 */
export function compactPayload(msg: StoredMessage): void {
  const p = msg.payload;
  if (p.buffer.byteLength > p.byteLength + 256) {
    const own = new Uint8Array(p.byteLength);
    own.set(p);
    msg.payload = own;
  }
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
  /** Bytes of forward batches not yet stored in other nodes' inboxes. */
  forwarding = 0;
  /** 0..3, see LEVEL; read on the hot path, so kept as a plain number. */
  level: number = LEVEL.OK;
  /** The level changes when held reaches `up` or drops below `down` (one compare each). */
  private up = Infinity;
  private down = -Infinity;
  private readonly thresholds: number[];

  /** `onLevel` is told every change of level (logging). */
  constructor(readonly limit: number, private readonly onLevel: (level: number, held: number) => void = () => {}) {
    this.thresholds = limit > 0 ? FRACTIONS.map((f) => Math.floor(limit * f)) : [];
    if (limit > 0) this.up = this.thresholds[0];
  }

  /** Everything counted, in bytes. */
  get held(): number {
    return this.messages + this.output + this.forwarding;
  }

  /** One more holder of msg; returns the bytes it counts for. */
  hold(msg: StoredMessage): number {
    const n = msg.bytes || messageBytes(msg);
    const h = msg.holders;
    if (h !== undefined && h > 0) msg.holders = h + 1;
    else {
      msg.holders = 1;
      const held = (this.messages += n) + this.output + this.forwarding;
      if (held >= this.up) this.update(held);
    }
    return n;
  }

  /** One holder fewer; the message stops counting with its last holder. */
  release(msg: StoredMessage): number {
    const n = msg.bytes || messageBytes(msg);
    const h = msg.holders ?? 0;
    if (h > 1) msg.holders = h - 1;
    else {
      msg.holders = 0;
      if (h === 1) {
        const held = (this.messages -= n) + this.output + this.forwarding;
        if (held < this.down) this.update(held);
      }
    }
    return n;
  }

  /** A connection's output buffer grew (or shrank, negative). */
  addOutput(delta: number): void {
    const held = this.messages + (this.output += delta) + this.forwarding;
    if (held >= this.up || held < this.down) this.update(held);
  }

  /** Forward batches for other nodes grew (or shrank, negative). */
  addForwarding(delta: number): void {
    const held = this.messages + this.output + (this.forwarding += delta);
    if (held >= this.up || held < this.down) this.update(held);
  }

  private update(held: number): void {
    const t = this.thresholds;
    const level = held >= t[2] ? 3 : held >= t[1] ? 2 : held >= t[0] ? 1 : 0;
    this.up = level < 3 ? t[level] : Infinity;
    this.down = level > 0 ? t[level - 1] : -Infinity;
    if (level !== this.level) {
      this.level = level;
      this.onLevel(level, held);
    }
  }
}
