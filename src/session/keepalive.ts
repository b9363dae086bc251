/**
 * One timer for every connection's keepalive and CONNECT deadline: a wheel of one-second
 * buckets. A client is put in the bucket of its deadline; activity only updates a number on
 * the client (no timer work per packet). When a bucket comes due, each client in it is checked:
 * expired ones are closed, the others re-filed at their new deadline. O(1) per packet, O(1)
 * amortised per keepalive period per client, no per-client timers.
 */
import type { Clock } from "../clock.ts";

export interface Watched {
  /** Epoch ms after which the connection is dead; Infinity = not watched. */
  deadline(): number;
  expire(): void;
  /** The bucket (second) it is filed in; kept by the wheel, 0 = none. */
  wheelSlot: number;
}

export class KeepaliveWheel {
  private buckets = new Map<number, Set<Watched>>();
  private timer: unknown;
  private nextDue = Infinity;

  constructor(private readonly clock: Clock) {}

  /** (Re)file a watched connection at its current deadline. */
  watch(w: Watched): void {
    const d = w.deadline();
    if (!Number.isFinite(d)) return;
    const sec = Math.ceil(d / 1000);
    if (w.wheelSlot !== 0 && w.wheelSlot !== sec) this.buckets.get(w.wheelSlot)?.delete(w);
    let b = this.buckets.get(sec);
    if (!b) this.buckets.set(sec, b = new Set());
    b.add(w);
    w.wheelSlot = sec;
    if (sec * 1000 < this.nextDue) this.arm(sec * 1000);
  }

  /**
   * Forget a connection that closed: its bucket may be a keepalive period away, and until then
   * it would keep the closed connection and everything it references (output buffers) alive.
   */
  unwatch(w: Watched): void {
    const slot = w.wheelSlot;
    if (slot === 0) return;
    w.wheelSlot = 0;
    const b = this.buckets.get(slot);
    if (b === undefined) return;
    b.delete(w);
    if (b.size === 0) this.buckets.delete(slot);
  }

  /** Connections filed (tests: nothing is held after its connection closed). */
  get watching(): number {
    let n = 0;
    for (const b of this.buckets.values()) n += b.size;
    return n;
  }

  private arm(at: number) {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.nextDue = at;
    this.timer = this.clock.setTimeout(() => this.tick(), Math.max(0, at - this.clock.now()));
  }

  private tick() {
    this.timer = undefined;
    this.nextDue = Infinity;
    const now = this.clock.now();
    const nowSec = Math.floor(now / 1000);
    const due = [...this.buckets.keys()].filter((s) => s <= nowSec).sort((a, b) => a - b);
    for (const s of due) {
      const b = this.buckets.get(s)!;
      this.buckets.delete(s);
      for (const w of b) {
        w.wheelSlot = 0;
        if (w.deadline() <= now) w.expire();
        else this.watch(w);
      }
    }
    let min = Infinity;
    for (const s of this.buckets.keys()) if (s < min) min = s;
    if (Number.isFinite(min)) this.arm(min * 1000);
  }

  stop() {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.buckets.clear();
  }
}
