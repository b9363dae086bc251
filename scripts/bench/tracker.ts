/**
 * Delivery bookkeeping for one load run. Every payload carries (publisher, sequence number); the
 * tracker counts how often each message arrived (against the number of subscribers it should
 * reach) and checks that each subscriber sees each publisher's messages in increasing order.
 *
 * - lost: expected deliveries that never arrived (sum over messages of fanout - count, if > 0)
 * - duplicated: deliveries beyond the expected count
 * - out of order: a subscriber got a sequence number not above the last one from that publisher
 *   (a reordering, or a redelivery of something already seen)
 * - foreign: payloads naming an unknown publisher or a sequence number never sent
 */

export interface DeliveryCheck {
  lost: number;
  duplicated: number;
  outOfOrder: number;
  foreign: number;
}

export class DeliveryTracker {
  private readonly counts: Uint8Array[];
  private readonly last: Int32Array;
  private outOfOrder = 0;
  private foreign = 0;

  constructor(private readonly pubs: number, subs: number, private readonly fanout: number) {
    this.counts = Array.from({ length: pubs }, () => new Uint8Array(65536));
    this.last = new Int32Array(subs * pubs).fill(-1);
  }

  /** Grows the per-publisher table so that `seq` fits; call before sending `seq`. */
  reserve(pub: number, seq: number): void {
    const c = this.counts[pub];
    if (seq < c.length) return;
    let n = c.length * 2;
    while (n <= seq) n *= 2;
    const bigger = new Uint8Array(n);
    bigger.set(c);
    this.counts[pub] = bigger;
  }

  /** Returns false when the payload is not one of ours. */
  record(sub: number, pub: number, seq: number): boolean {
    if (pub >= this.pubs) {
      this.foreign++;
      return false;
    }
    const c = this.counts[pub];
    if (seq >= c.length) {
      this.foreign++;
      return false;
    }
    const n = c[seq];
    if (n < 255) c[seq] = n + 1;
    const k = sub * this.pubs + pub;
    if (seq <= this.last[k]) this.outOfOrder++;
    else this.last[k] = seq;
    return true;
  }

  /** `sent[p]` = number of messages publisher p sent (sequence numbers 0 .. sent-1). */
  check(sent: readonly number[]): DeliveryCheck {
    let lost = 0;
    let duplicated = 0;
    const f = this.fanout;
    for (let p = 0; p < this.pubs; p++) {
      const c = this.counts[p];
      for (let s = 0; s < sent[p]; s++) {
        const n = c[s];
        if (n < f) lost += f - n;
        else if (n > f) duplicated += n - f;
      }
      for (let s = sent[p]; s < c.length; s++) if (c[s] !== 0) this.foreign += c[s];
    }
    return { lost, duplicated, outOfOrder: this.outOfOrder, foreign: this.foreign };
  }
}
