/**
 * Fresh small buffers without an allocation each: views cut from a shared slab that is never
 * rewound (a new slab replaces a full one), so a view handed out is never written again by
 * anyone else. A typed-array allocation costs microseconds on Deno, a view a few nanoseconds.
 * What a view pins is at most one slab; whatever keeps bytes for long compacts them to its own
 * copy (session/memory.ts compactPayload).
 */
const SLAB = 256 * 1024;
let slab = new Uint8Array(SLAB);
let used = 0;

/** `n` bytes (n at most a small fraction of SLAB: callers allocate larger ones themselves). */
export function slabPiece(n: number): Uint8Array {
  if (used + n > SLAB) {
    slab = new Uint8Array(SLAB);
    used = 0;
  }
  const v = slab.subarray(used, used + n);
  used += n;
  return v;
}
