/**
 * Round-trip latency of the store (Redis): one PING every `everyMs`, sent on the broker's own
 * connection, so it waits behind whatever the broker has in flight and measures what a write
 * of a session really waits. Failures (no connection, no answer) are counted.
 */
import type { Persistence } from "../persistence/persistence.ts";
import { Histogram, LATENCY_BOUNDS } from "./histogram.ts";

export class StoreProbe {
  readonly rtt = new Histogram(LATENCY_BOUNDS);
  errors = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;

  constructor(private readonly store: Required<Pick<Persistence, "ping">>, private readonly everyMs = 1000) {}

  start(): void {
    this.stopped = false;
    this.schedule();
  }

  private schedule() {
    if (this.stopped) return;
    this.timer = setTimeout(this.probe, this.everyMs);
    (this.timer as { unref?: () => void }).unref?.();
  }

  private probe = () => {
    const t0 = performance.now();
    this.store.ping().then(
      () => this.rtt.observe((performance.now() - t0) / 1000),
      () => this.errors++,
    ).finally(() => this.schedule());
  };

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
