/**
 * A token bucket: `rate` tokens per second, at most `burst` saved up. take() spends one token:
 * 0 when one was there, else the milliseconds until the debt it leaves is paid back (the caller
 * waits that long before acting, so a client can never be more than one token in debt).
 */
export class TokenBucket {
  private tokens: number;
  private at: number;

  constructor(private readonly rate: number, private readonly burst: number, now: number) {
    this.tokens = burst;
    this.at = now;
  }

  private refill(now: number): void {
    if (now > this.at) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) * this.rate) / 1000);
      this.at = now;
    }
  }

  /** Spend a token; the milliseconds to wait before going on (0: at once). */
  take(now: number): number {
    this.refill(now);
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * 1000) / this.rate);
  }

  /** Spend a token if there is one (no debt): true when spent. */
  tryTake(now: number): boolean {
    this.refill(now);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Full again: nothing to remember about this bucket. */
  full(now: number): boolean {
    this.refill(now);
    return this.tokens >= this.burst;
  }
}
