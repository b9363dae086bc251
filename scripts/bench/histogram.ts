/**
 * Latency histogram in whole microseconds: exact below 64 µs, then 32 buckets per power of two
 * (about 3 % resolution) up to 2^31 µs. Fixed size, no allocation per sample.
 */

const SUB = 32;
const BUCKETS = 64 + 25 * SUB;

function bucketOf(us: number): number {
  if (us < 64) return us < 0 ? 0 : us;
  if (us >= 0x7fffffff) return BUCKETS - 1;
  const e = 31 - Math.clz32(us);
  const shift = e - 5;
  return 64 + (e - 6) * SUB + ((us >>> shift) - SUB);
}

function valueOf(bucket: number): number {
  if (bucket < 64) return bucket;
  const e = Math.floor((bucket - 64) / SUB) + 6;
  const m = ((bucket - 64) % SUB) + SUB;
  const shift = e - 5;
  return (m + 0.5) * 2 ** shift;
}

export class Histogram {
  private readonly counts = new Float64Array(BUCKETS);
  count = 0;
  max = 0;

  record(us: number): void {
    this.counts[bucketOf(us)]++;
    this.count++;
    if (us > this.max) this.max = us;
  }

  /** q in [0, 1]; returns microseconds, NaN when empty. */
  quantile(q: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(valueOf(i), this.max);
    }
    return this.max;
  }
}
