/**
 * Incremental MQTT frame splitter: fixed header + remaining length, nothing else. Hands each
 * complete packet to the callback as (buffer, start, end) without copying; only a packet split
 * across reads is copied (once) into a carry-over buffer.
 */

/** `type` is the high nibble of the first byte, `flags` the low nibble; body is buf[start, end). */
export type PacketHandler = (type: number, flags: number, buf: Uint8Array, start: number, end: number) => void;

export class FrameReader {
  private carry: Uint8Array | null = null;

  constructor(private readonly onPacket: PacketHandler) {}

  push(chunk: Uint8Array): void {
    let buf = chunk;
    const carry = this.carry;
    if (carry !== null) {
      buf = new Uint8Array(carry.length + chunk.length);
      buf.set(carry);
      buf.set(chunk, carry.length);
      this.carry = null;
    }
    const len = buf.length;
    let pos = 0;
    while (pos + 1 < len) {
      const first = buf[pos];
      let i = pos + 1;
      let b = buf[i++];
      let rl = b & 127;
      if (b & 128) {
        if (i >= len) break;
        b = buf[i++];
        rl |= (b & 127) << 7;
        if (b & 128) {
          if (i >= len) break;
          b = buf[i++];
          rl |= (b & 127) << 14;
          if (b & 128) {
            if (i >= len) break;
            b = buf[i++];
            rl += (b & 127) * 2097152;
          }
        }
      }
      const end = i + rl;
      if (end > len) break;
      this.onPacket(first >> 4, first & 15, buf, i, end);
      pos = end;
    }
    // The runtime may reuse `chunk` after this call returns, so the tail is always copied.
    if (pos < len) this.carry = buf.slice(pos);
  }
}
