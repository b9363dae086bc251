/**
 * The stop sequence (SIGTERM, SIGINT, or the launcher gone): not ready at once, stop accepting,
 * send every client away (MQTT 5: DISCONNECT 0x8B, or 0x9C with a Server Reference), flush
 * the sessions to the store and leave the cluster (Broker.close: the others adopt what is
 * left at once), close the store and the HTTP endpoint, exit 0. If that takes longer than
 * --shutdown-timeout-ms, the process exits anyway, with code 1 and a line naming the step it
 * was stuck in.
 */
import type { Logger } from "../log.ts";

export interface Step {
  name: string;
  run(): Promise<unknown> | unknown;
}

export interface ShutdownOptions {
  steps: Step[];
  timeoutMs: number;
  log: Logger;
  exit(code: number): void;
}

export function makeShutdown(o: ShutdownOptions): (why: string) => Promise<void> {
  let running: Promise<void> | undefined;
  return (why) => {
    running ??= (async () => {
      const t0 = Date.now();
      let current = "";
      o.log.info("shutting down", { reason: why, timeoutMs: o.timeoutMs });
      const timer = setTimeout(() => {
        o.log.error("shutdown did not finish within --shutdown-timeout-ms; exiting now", { step: current, timeoutMs: o.timeoutMs });
        o.exit(1);
      }, o.timeoutMs);
      for (const step of o.steps) {
        current = step.name;
        try {
          await step.run();
        } catch (e) {
          o.log.warn("shutdown step failed", { step: step.name, error: String((e as Error)?.message ?? e) });
        }
      }
      clearTimeout(timer);
      o.log.info("stopped", { ms: Date.now() - t0 });
      o.exit(0);
    })();
    return running;
  };
}
