/**
 * Connection admission on one node: open connections in all (--max-connections) and per client
 * address (--max-connections-per-address), counted from accept to close; and the CONNECT rate
 * per address (--max-connect-rate, a token bucket with one second of burst).
 *
 * A connection over a connection limit is closed at accept, before it costs anything more (no
 * CONNECT is read: there is no CONNACK to answer with yet). A CONNECT over the rate gets CONNACK
 * 0x9F Connection rate exceeded (3.1.1: 0x03 Server unavailable) before any authentication work.
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

  /** A new connection from `address`: undefined when admitted (then counted), else why not. */
  admit(address: string): string | undefined {
    const { maxConnections, maxConnectionsPerAddress } = this.cfg;
    if (maxConnections > 0 && this.open >= maxConnections) {
      return `${this.open} connections open, the limit of this node (--max-connections ${maxConnections})`;
    }
    const n = this.perAddress.get(address) ?? 0;
    if (maxConnectionsPerAddress > 0 && n >= maxConnectionsPerAddress) {
      return `${n} connections open from this address (--max-connections-per-address ${maxConnectionsPerAddress})`;
    }
    this.open++;
    this.perAddress.set(address, n + 1);
    return undefined;
  }

  /** An admitted connection closed. */
  release(address: string): void {
    this.open--;
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
