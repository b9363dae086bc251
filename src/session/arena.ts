/**
 * Output bytes are carved from shared 64 KiB slabs instead of one `new Uint8Array` per packet.
 * Small typed-array allocations are what a QoS 1 profile spends most of its time on (each is
 * an ArrayBuffer with its own backing store and GC bookkeeping, markedly so under Deno); a
 * carve is a view on a slab that is bumped forward and never reused, so a view handed to a
 * socket stays valid for as long as the socket holds it. A slab is freed by the GC once no
 * view of it is left. Deno's small socket reads and WebSocket frames are cut from it too.
 */
const SLAB = 64 * 1024;
const BIG = 8 * 1024;
let slab = new Uint8Array(SLAB);
let pos = 0;

/** n fresh bytes (zeroed only if the slab is new; callers overwrite all of them). */
export function carve(n: number): Uint8Array {
  if (n > BIG) return new Uint8Array(n);
  if (pos + n > SLAB) {
    slab = new Uint8Array(SLAB);
    pos = 0;
  }
  const v = slab.subarray(pos, pos + n);
  pos += n;
  return v;
}
