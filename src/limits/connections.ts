/**
 * Connection admission on one node: open connections in all (--max-connections), counted from
 * accept to close; connections per client address (--max-connections-per-address), counted from
 * their CONNECT to close; and the CONNECT rate per address (--max-connect-rate, a token bucket
 * with one second of burst).
 *
 * A connection over the node limit is closed at accept, before it costs anything more (no
 * CONNECT is read: there is no CONNACK to answer with yet). The per-address checks wait for the
 * CONNECT because only then is the address known for sure (a PROXY protocol listener learns it
 * from the header that precedes the CONNECT): a CONNECT over the rate gets CONNACK 0x9F
 * Connection rate exceeded, one past the address's connections 0x97 Quota exceeded (3.1.1: both
 * 0x03 Server unavailable), before any authentication work.
 * The per-address buckets of quiet addresses are dropped once they are full again, so an address
 * table never outgrows the addresses that connected in the last second or so.
 */
import type { Clock } from "../clock.ts";
import { TokenBucket } from "./token-bucket.ts";

export interface ConnectionLimitConfig {
  maxConnections: number;
  maxConnectionsPerAddress: number;
  maxConnectRate: number;
}

export class ConnectionLimits {
  private open = 0;
  private readonly perAddress = new Map<string, number>();
  private readonly buckets = new Map<string, TokenBucket>();
  private sweepAt = 10_000;

  constructor(private readonly cfg: ConnectionLimitConfig, private readonly clock: Clock) {}

  /** Connections open now (admitted and not released). */
  get count(): number {
    return this.open;
  }

  /** A new connection: undefined when admitted (then counted), else why not. */
  admit(): string | undefined {
    const max = this.cfg.maxConnections;
    if (max > 0 && this.open >= max) return `${this.open} connections open, the limit of this node (--max-connections ${max})`;
    this.open++;
    return undefined;
  }

  /** An admitted connection closed. */
  release(): void {
    this.open--;
  }

  /** A CONNECT from `address`: undefined when admitted (counted until releaseAddress), else why not. */
  admitAddress(address: string): string | undefined {
    const max = this.cfg.maxConnectionsPerAddress;
    const n = this.perAddress.get(address) ?? 0;
    if (max > 0 && n >= max) return `${n} connections open from this address (--max-connections-per-address ${max})`;
    this.perAddress.set(address, n + 1);
    return undefined;
  }

  releaseAddress(address: string): void {
    const n = (this.perAddress.get(address) ?? 1) - 1;
    if (n > 0) this.perAddress.set(address, n);
    else this.perAddress.delete(address);
  }

  /** A CONNECT from `address`: false when it is over --max-connect-rate. */
  connectAllowed(address: string): boolean {
    const rate = this.cfg.maxConnectRate;
    if (rate === 0) return true;
    const now = this.clock.now();
    let b = this.buckets.get(address);
    if (b === undefined) {
      if (this.buckets.size >= this.sweepAt) this.sweep(now);
      this.buckets.set(address, b = new TokenBucket(rate, rate, now));
    }
    return b.tryTake(now);
  }

  private sweep(now: number): void {
    for (const [a, b] of this.buckets) if (b.full(now)) this.buckets.delete(a);
    this.sweepAt = Math.max(10_000, this.buckets.size * 2);
  }
}
