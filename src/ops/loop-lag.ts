/**
 * Event-loop lag: a timer asks to run every `everyMs`; how much later than asked it runs is
 * the time the loop was busy with other work (or the process was not scheduled). Kept in a
 * histogram (seconds) and as the largest lag of the last 10 to 20 seconds (two rotating
 * windows, so that any number of readers see the same value).
 */
import { Histogram, LATENCY_BOUNDS } from "./histogram.ts";

const WINDOW_MS = 10_000;

export class LoopLag {
  readonly histogram = new Histogram(LATENCY_BOUNDS);
  /** Largest lag (seconds) in the current and the previous window. */
  private cur = 0;
  private prev = 0;
  private windowEnds = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private expected = 0;

  constructor(private readonly everyMs = 500) {}

  start(): void {
    if (this.timer !== undefined) return;
    this.arm();
  }

  private arm() {
    this.expected = performance.now() + this.everyMs;
    this.timer = setTimeout(this.fire, this.everyMs);
    (this.timer as { unref?: () => void }).unref?.();
  }

  private fire = () => {
    const now = performance.now();
    const lag = Math.max(0, now - this.expected) / 1000;
    this.histogram.observe(lag);
    if (now >= this.windowEnds) {
      this.prev = now - this.windowEnds > WINDOW_MS ? 0 : this.cur;
      this.cur = 0;
      this.windowEnds = now + WINDOW_MS;
    }
    if (lag > this.cur) this.cur = lag;
    this.arm();
  };

  /** The largest lag (seconds) of the last 10 to 20 seconds. */
  get recentMax(): number {
    return this.cur > this.prev ? this.cur : this.prev;
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
