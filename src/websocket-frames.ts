/**
 * WebSocket framing (RFC 6455 §5), server side, bytes in and bytes out: what a listener needs
 * to carry MQTT over any byte stream (src/websocket-server.ts). No runtime API.
 *
 * The decoder streams: the payload of a binary message goes out as it arrives, unmasked in
 * place, never assembled into a whole message (MQTT over WebSocket is a byte stream whose
 * packets may span messages [MQTT-6.0.0-2]; the core's framer bounds packets). What it holds
 * per connection is one frame header and one control frame (at most 125 bytes).
 */

import { carve } from "./session/arena.ts";

export const OP = { continuation: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 } as const;

/** Close codes used here (RFC 6455 §7.4.1). */
export const CLOSE = {
  normal: 1000,
  protocolError: 1002,
  unsupportedData: 1003,
  noStatus: 1005,
  tooBig: 1009,
} as const;

export interface FrameSink {
  /** Payload bytes of a binary message, in order, as they arrive. */
  data(bytes: Uint8Array): void;
  /** A whole control frame (close, ping, pong). */
  control(opcode: number, payload: Uint8Array): void;
  /** The peer broke the framing rules: close with this code; nothing more is decoded. */
  fail(code: number, reason: string): void;
}

const MAX_CONTROL = 125;
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/**
 * XOR b[start, end) in place with the mask, starting at mask byte `pos`: a word at a time over
 * the 4-byte-aligned middle (a byte loop costs several times more per byte on both runtimes).
 */
function unmask(b: Uint8Array, start: number, end: number, m: Uint8Array, pos: number): void {
  let i = start;
  if (LITTLE_ENDIAN && end - start >= 16) {
    while (((b.byteOffset + i) & 3) !== 0) b[i++] ^= m[pos++ & 3];
    const words = (end - i) >>> 2;
    const q = pos & 3;
    const word = (m[q] | (m[(q + 1) & 3] << 8) | (m[(q + 2) & 3] << 16) | (m[(q + 3) & 3] << 24)) >>> 0;
    const u = new Uint32Array(b.buffer, b.byteOffset + i, words);
    for (let w = 0; w < words; w++) u[w] ^= word;
    i += words * 4;
    pos += words * 4;
  }
  while (i < end) b[i++] ^= m[pos++ & 3];
}

export class FrameDecoder {
  private readonly head = new Uint8Array(14);
  private headLen = 0;
  /** Header bytes this frame needs (2 until the length byte is known). */
  private need = 2;
  /** Payload bytes of the current frame still to come; -1 while reading a header. */
  private remaining = -1;
  private readonly mask = new Uint8Array(4);
  private maskPos = 0;
  private fin = false;
  private opcode = 0;
  /** A data message was started and not finished (its continuation frames may follow). */
  private inMessage = false;
  private messageBytes = 0;
  private control: Uint8Array | undefined;
  private controlPos = 0;
  private stopped = false;

  constructor(private readonly sink: FrameSink, private readonly maxMessage: number) {}

  /**
   * Decode one read. The payloads of its data frames are unmasked and moved together in place
   * (over the headers between them), and go to the sink as one chunk per read, not one per
   * frame: a client that sends each packet in its own frame costs the core no more calls than
   * one that does not. The read's buffer must be the decoder's to change.
   */
  push(b: Uint8Array): void {
    let i = 0;
    let start = 0; // payload bytes of this read gathered at b[start, out), not yet passed on
    let out = 0;
    // what came before a control frame or a violation goes first; later payload is gathered
    // after it, never over bytes already passed on (the core may keep views of them)
    const flush = () => {
      if (out > start) this.sink.data(b.subarray(start, out));
      start = out;
    };
    while (i < b.length && !this.stopped) {
      if (this.remaining < 0) {
        while (this.headLen < this.need && i < b.length) this.head[this.headLen++] = b[i++];
        if (this.headLen < this.need) break;
        if (this.need === 2) {
          const len7 = this.head[1] & 0x7f;
          this.need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + ((this.head[1] & 0x80) !== 0 ? 4 : 0);
          if (this.headLen < this.need) continue;
        }
        const failure = this.startFrame();
        if (failure !== undefined) {
          flush();
          this.stopped = true;
          this.sink.fail(failure[0], failure[1]);
          return;
        }
      } else {
        const n = Math.min(this.remaining, b.length - i);
        const m = this.mask;
        const p = this.maskPos;
        if (this.control !== undefined) {
          const c = this.control;
          for (let j = 0; j < n; j++) c[this.controlPos + j] = b[i + j] ^ m[(p + j) & 3];
          this.controlPos += n;
        } else {
          unmask(b, i, i + n, m, p);
          if (out !== i) b.copyWithin(out, i, i + n);
          out += n;
        }
        this.maskPos = (p + n) & 3;
        i += n;
        this.remaining -= n;
      }
      if (this.remaining === 0) {
        if (this.control !== undefined) flush();
        this.endFrame();
      }
    }
    if (!this.stopped) flush();
  }

  /** Stop decoding (the connection is closing). */
  stop(): void {
    this.stopped = true;
  }

  /** Read the header just completed; a broken rule is returned as [close code, reason]. */
  private startFrame(): [number, string] | undefined {
    const h = this.head;
    const b0 = h[0], b1 = h[1];
    if ((b0 & 0x70) !== 0) return [CLOSE.protocolError, "reserved bits set (no extension was negotiated)"];
    // RFC 6455 §5.1: a server closes the connection on a frame from the client that is not masked
    if ((b1 & 0x80) === 0) return [CLOSE.protocolError, "a client frame must be masked"];
    const fin = (b0 & 0x80) !== 0;
    const op = b0 & 0x0f;
    let len = b1 & 0x7f;
    let p = 2;
    if (len === 126) {
      len = (h[2] << 8) | h[3];
      p = 4;
    } else if (len === 127) {
      const hi = ((h[2] << 24) >>> 0) + (h[3] << 16) + (h[4] << 8) + h[5];
      const lo = ((h[6] << 24) >>> 0) + (h[7] << 16) + (h[8] << 8) + h[9];
      if (hi >= 0x200000) return [CLOSE.tooBig, "frame length beyond 2^53"];
      len = hi * 2 ** 32 + lo;
      p = 10;
    }
    this.mask.set(h.subarray(p, p + 4));
    this.maskPos = 0;
    this.headLen = 0;
    this.need = 2;
    if (op >= 8) {
      if (op !== OP.close && op !== OP.ping && op !== OP.pong) return [CLOSE.protocolError, `unknown control opcode ${op}`];
      // §5.5: control frames are not fragmented and carry at most 125 bytes
      if (!fin || len > MAX_CONTROL) return [CLOSE.protocolError, "a control frame must be final and at most 125 bytes"];
      this.control = new Uint8Array(len);
      this.controlPos = 0;
    } else {
      if (op === OP.continuation) {
        if (!this.inMessage) return [CLOSE.protocolError, "a continuation frame without a message to continue"];
      } else if (op === OP.binary || op === OP.text) {
        if (this.inMessage) return [CLOSE.protocolError, "a new message inside a fragmented one"];
        // [MQTT-6.0.0-1] MQTT travels in binary data frames only
        if (op === OP.text) return [CLOSE.unsupportedData, "MQTT needs binary WebSocket frames"];
        this.inMessage = true;
        this.messageBytes = 0;
      } else return [CLOSE.protocolError, `unknown data opcode ${op}`];
      this.messageBytes += len;
      if (this.messageBytes > this.maxMessage) {
        return [CLOSE.tooBig, `message larger than ${this.maxMessage} bytes`];
      }
      this.fin = fin;
      this.control = undefined;
    }
    this.opcode = op;
    this.remaining = len;
    return undefined;
  }

  private endFrame(): void {
    this.remaining = -1;
    const c = this.control;
    if (c !== undefined) {
      this.control = undefined;
      this.sink.control(this.opcode, c);
    } else if (this.fin) this.inMessage = false;
  }
}

/** The header of an unmasked, final server frame carrying `len` bytes. */
export function frameHeader(opcode: number, len: number): Uint8Array {
  if (len < 126) return Uint8Array.of(0x80 | opcode, len);
  if (len < 65536) return Uint8Array.of(0x80 | opcode, 126, len >>> 8, len & 0xff);
  const h = new Uint8Array(10);
  h[0] = 0x80 | opcode;
  h[1] = 127;
  const hi = Math.floor(len / 2 ** 32), lo = len >>> 0;
  h[2] = hi >>> 24;
  h[3] = (hi >>> 16) & 0xff;
  h[4] = (hi >>> 8) & 0xff;
  h[5] = hi & 0xff;
  h[6] = lo >>> 24;
  h[7] = (lo >>> 16) & 0xff;
  h[8] = (lo >>> 8) & 0xff;
  h[9] = lo & 0xff;
  return h;
}

/**
 * One final server frame: header and payload in one buffer (one write per frame: an adapter's
 * write has a cost of its own, far above copying the payload once).
 */
export function framed(opcode: number, payload: Uint8Array): Uint8Array {
  const n = payload.length;
  const hl = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const total = hl + n;
  const out = carve(total); // small ones a view of the shared slab (session/arena.ts)
  if (hl === 2) {
    out[0] = 0x80 | opcode;
    out[1] = n;
  } else if (hl === 4) {
    out[0] = 0x80 | opcode;
    out[1] = 126;
    out[2] = n >>> 8;
    out[3] = n & 0xff;
  } else out.set(frameHeader(opcode, n));
  out.set(payload, hl);
  return out;
}

/** A whole close frame: the code and a reason cut to what fits in a control frame. */
export function closeFrame(code: number, reason = ""): Uint8Array {
  let r = new TextEncoder().encode(reason);
  if (r.length > MAX_CONTROL - 2) r = r.subarray(0, MAX_CONTROL - 2);
  const f = new Uint8Array(4 + r.length);
  f.set(frameHeader(OP.close, 2 + r.length));
  f[2] = code >>> 8;
  f[3] = code & 0xff;
  f.set(r, 4);
  return f;
}
