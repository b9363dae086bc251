/**
 * Draining a node for a rolling restart (SIGUSR2, or POST /drain): stop accepting connections,
 * report not ready (/readyz 503, so the load balancer stops sending clients here), then send
 * the clients away a few at a time (--drain-rate per second; MQTT 5 clients are told why with
 * DISCONNECT 0x8B, or 0x9C and a Server Reference) so that they reconnect to the other nodes
 * gradually instead of all in the same second. Their sessions stay here until they reconnect
 * elsewhere (a takeover moves them) or the node stops (the others adopt what is left).
 */
import type { Logger } from "../log.ts";
import type { Health } from "./health.ts";

export interface DrainHost {
  /** Connections open now (connected or not yet). */
  readonly clients: { readonly size: number; [Symbol.iterator](): Iterator<unknown> };
  /** Send one connection away (Broker.sendAway). */
  sendAway(c: unknown): void;
}

/** Sending clients away happens in slices, this often. */
const SLICE_MS = 100;

export class Drainer {
  private running: Promise<void> | undefined;

  constructor(
    private readonly host: DrainHost,
    private readonly health: Health,
    private readonly log: Logger,
    private readonly opts: { ratePerSecond: number; stopAccepting: () => Promise<void> },
  ) {}

  get started(): boolean {
    return this.running !== undefined;
  }

  /** Start draining (once); resolves when every client is gone. */
  drain(): Promise<void> {
    this.running ??= this.run();
    return this.running;
  }

  private async run(): Promise<void> {
    if (this.health.phase !== "stopping") this.health.phase = "draining";
    const rate = this.opts.ratePerSecond;
    this.log.info("draining: new connections refused, clients sent away", { clients: this.host.clients.size, rate });
    try {
      await this.opts.stopAccepting();
    } catch (e) {
      this.log.warn("a listener did not close", { error: String((e as Error)?.message ?? e) });
    }
    // a token bucket: `rate` clients per second, one at once to begin with
    const perSlice = rate === 0 ? Infinity : rate * SLICE_MS / 1000;
    let budget = 1;
    const t0 = Date.now();
    while (this.host.clients.size > 0 && this.health.phase === "draining") {
      for (const c of [...this.host.clients]) {
        if (budget < 1) break;
        budget--;
        this.host.sendAway(c);
      }
      budget = Math.min(budget + perSlice, Math.max(1, perSlice));
      if (this.host.clients.size === 0) break;
      await new Promise((r) => setTimeout(r, SLICE_MS));
    }
    this.log.info("drained: every client sent away", { ms: Date.now() - t0 });
  }
}
