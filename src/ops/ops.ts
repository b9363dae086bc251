/**
 * Operations around one broker: readiness (health.ts), the event-loop and Redis probes, the
 * metrics text, draining, and the HTTP endpoint's view of all of it. main.ts builds one per
 * process; tests build one around an in-process broker.
 */
import type { Broker } from "../broker.ts";
import { Drainer } from "./drain.ts";
import { Health } from "./health.ts";
import type { OpsEndpoint } from "./http.ts";
import { LoopLag } from "./loop-lag.ts";
import { renderMetrics } from "./metrics.ts";
import { StoreProbe } from "./store-probe.ts";

export interface OpsOptions {
  runtime: string;
  /** Close the listeners (draining stops accepting first). */
  stopAccepting: () => Promise<void>;
  /** Redis PING interval for the round-trip histogram (default 1000 ms). */
  probeEveryMs?: number;
}

export class Ops implements OpsEndpoint {
  readonly health: Health;
  readonly lag = new LoopLag();
  readonly probe: StoreProbe | undefined;
  readonly drainer: Drainer;
  readonly startedAt = Date.now();

  constructor(readonly broker: Broker, private readonly opts: OpsOptions) {
    const store = broker.persistence;
    this.health = new Health(store);
    this.probe = store.ping ? new StoreProbe({ ping: () => store.ping!() }, opts.probeEveryMs) : undefined;
    this.drainer = new Drainer(broker, this.health, broker.log, {
      ratePerSecond: broker.config.drainRate,
      stopAccepting: opts.stopAccepting,
    });
  }

  get runtime(): string {
    return this.opts.runtime;
  }

  /** The broker is started and its listeners open. */
  start(): void {
    this.lag.start();
    this.probe?.start();
    if (this.health.phase === "starting") this.health.phase = "running";
  }

  stop(): void {
    this.health.phase = "stopping";
    this.lag.stop();
    this.probe?.stop();
  }

  metrics(): Promise<string> {
    return renderMetrics(this);
  }

  readiness() {
    return this.health.readiness();
  }

  drain(): number {
    const n = this.broker.clients.size;
    this.drainer.drain().catch((e) => this.broker.log.error("draining failed", { error: String(e) }));
    return n;
  }
}
