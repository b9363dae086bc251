/**
 * What SIGHUP reloads, without a restart and without dropping connections. main.ts registers a
 * Reloadable per TLS listener (its certificate, key and CA files); the authentication work adds
 * its password and ACL files the same way (`reloadables.push({ name: "password file", reload })`).
 * A reload that fails is logged and leaves the old state in place; the broker keeps running.
 */
import type { Logger } from "./log.ts";

export interface Reloadable {
  /** What it is, for the log: "certificate of mqtts://0.0.0.0:8883". */
  readonly name: string;
  reload(): Promise<void>;
}

/** Reload everything; resolves with the number that failed (each one logged). */
export async function reloadAll(items: readonly Reloadable[], log: Logger, why = "SIGHUP"): Promise<number> {
  log.info("reloading", { signal: why, items: items.length });
  let failed = 0;
  for (const item of items) {
    try {
      await item.reload();
      log.info("reloaded", { what: item.name });
    } catch (e) {
      failed++;
      log.error("reload failed, keeping the previous one", { what: item.name, error: String((e as Error)?.message ?? e) });
    }
  }
  return failed;
}
