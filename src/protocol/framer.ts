/**
 * Splits a byte stream into MQTT frames by the fixed header's Remaining Length.
 *
 * A frame that arrives whole is handed on as a view of the read buffer: no copy. A frame split
 * over several reads is assembled in one buffer that doubles as bytes come in, up to the size
 * its fixed header announced (taken whole once more than half of it would be reserved). So
 * each byte is copied at most about twice (once in; the doublings add up to less than the
 * frame), however small the reads, where copying everything held on every read was quadratic
 * (a 16 MiB packet in 2 KiB writes). And an announcement alone allocates nothing: the memory
 * held stays within four times the bytes actually received. A frame whose announced size is over the limit is
 * refused from its fixed header (0x95 Packet too large), before anything of it is held.
 */
import { MqttError, RC } from "./reason-codes.ts";

/** Bytes copied by every Framer while holding input (what the reassembly test measures). */
export const framerStats = { copied: 0 };

export interface FrameConsumer {
  /** One complete frame; return false to pause (the rest is held until take()). */
  onFrame(frame: Uint8Array, bodyStart: number): boolean;
}

/** Fixed header length of the frame frameSize() read last (read right after the call). */
let headerLen = 0;

export class Framer {
  /** Held input: the start of a frame split over reads, or everything received while paused. */
  private held: Uint8Array | undefined;
  private len = 0;
  /** Size of the frame being assembled in `held` once its fixed header is complete, else 0. */
  private size = 0;

  constructor(public maxPacketSize: number) {}

  /**
   * Calls consumer.onFrame(frame, bodyStart) per complete frame (a method, not a closure: no
   * per-connection function object); throws MqttError on bad framing.
   */
  push(chunk: Uint8Array, consumer: FrameConsumer): void {
    const n = chunk.length;
    let p = 0;
    if (this.len > 0) {
      // a fixed header split over reads: add its bytes one at a time (four at most)
      while (this.size === 0) {
        if (p === n) return;
        this.hold(chunk, p, p + 1);
        p++;
        this.size = this.frameSize(this.held!, 0, this.len);
      }
      const take = Math.min(this.size - this.len, n - p);
      this.hold(chunk, p, p + take);
      p += take;
      if (this.len < this.size) return;
      const frame = this.held!.subarray(0, this.size);
      this.held = undefined;
      this.len = this.size = 0;
      let bodyStart = 2;
      while (frame[bodyStart - 1] & 128) bodyStart++;
      if (!consumer.onFrame(frame, bodyStart)) {
        this.hold(chunk, p, n);
        return;
      }
    }
    while (p < n) {
      const size = this.frameSize(chunk, p, n);
      if (size === 0 || p + size > n) {
        this.size = size;
        this.hold(chunk, p, n);
        return;
      }
      if (!consumer.onFrame(chunk.subarray(p, p + size), headerLen)) {
        this.hold(chunk, p + size, n); // paused: kept unframed until take()
        return;
      }
      p += size;
    }
  }

  /** Hold bytes without framing them (the consumer is paused); push() frames them later. */
  append(chunk: Uint8Array): void {
    this.hold(chunk, 0, chunk.length);
  }

  /** Bytes held waiting for the rest of a frame (or while paused). */
  get buffered(): number {
    return this.len;
  }

  /** Take the held bytes (used to resume after a pause). */
  take(): Uint8Array | undefined {
    if (this.len === 0) return undefined;
    const b = this.held!.subarray(0, this.len);
    this.held = undefined;
    this.len = this.size = 0;
    return b;
  }

  /** Whole size of the frame at b[p], 0 while its fixed header is incomplete. */
  private frameSize(b: Uint8Array, p: number, n: number): number {
    let len = 0, mul = 1;
    for (let i = 1; i <= 4; i++) {
      if (p + i >= n) return 0;
      const c = b[p + i];
      len += (c & 127) * mul;
      if ((c & 128) === 0) {
        // [MQTT-1.5.5-1] the shortest encoding: a last byte of 0 after others adds nothing
        if (c === 0 && i > 1) throw new MqttError(RC.MALFORMED_PACKET, "remaining length not in its shortest form");
        headerLen = i + 1;
        const total = headerLen + len;
        if (total > this.maxPacketSize) {
          throw new MqttError(RC.PACKET_TOO_LARGE, `packet of ${total} bytes exceeds the maximum packet size ${this.maxPacketSize}`);
        }
        return total;
      }
      mul *= 128;
    }
    throw new MqttError(RC.MALFORMED_PACKET, "remaining length longer than 4 bytes");
  }

  /** Append src[from, to) to `held`, doubling it as needed (never past a known frame size). */
  private hold(src: Uint8Array, from: number, to: number): void {
    const k = to - from;
    if (k === 0) return;
    const need = this.len + k;
    let buf = this.held;
    if (buf === undefined || buf.length < need) {
      let cap = Math.max(need, (buf ? buf.length : k) * 2, 256);
      // once past half the frame, take the whole frame: one copy fewer, and more than a
      // quarter of it has arrived (need <= size: only the frame is held)
      if (this.size > 0 && cap * 2 > this.size) cap = this.size;
      const next = new Uint8Array(cap);
      if (buf !== undefined && this.len > 0) {
        next.set(buf.subarray(0, this.len));
        framerStats.copied += this.len;
      }
      this.held = buf = next;
    }
    buf.set(src.subarray(from, to), this.len);
    framerStats.copied += k;
    this.len = need;
  }
}
