/** Public API: embed Colibri in a program or a test. */
export { Broker, type BrokerOptions } from "./broker.ts";
export { type Config, ConfigError, defaults, resolveConfig } from "./config.ts";
export { type Clock, ManualClock, systemClock } from "./clock.ts";
export { createLogger, type Logger } from "./log.ts";
export { MemoryPersistence } from "./persistence/memory.ts";
export type * from "./persistence/persistence.ts";
export type * from "./transport.ts";

import { Broker } from "./broker.ts";
import { type Config, resolveConfig } from "./config.ts";
import type { Clock } from "./clock.ts";
import type { Logger } from "./log.ts";
import { MemoryPersistence } from "./persistence/memory.ts";
import type { Persistence } from "./persistence/persistence.ts";

/** A broker with in-memory state unless a persistence is given; call start() before use. */
export function createBroker(
  config: Partial<Config> = {},
  opts: { persistence?: Persistence; clock?: Clock; log?: Logger } = {},
): Broker {
  const now = opts.clock ? () => opts.clock!.now() : undefined;
  return new Broker({
    config: resolveConfig(config),
    persistence: opts.persistence ?? new MemoryPersistence({ now }),
    clock: opts.clock,
    log: opts.log,
  });
}
