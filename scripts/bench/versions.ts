/** Versions of everything measured, for the report. */
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import { execFileSync } from "node:child_process";
import { ROOT } from "./brokers.ts";

function firstLine(cmd: string, args: string[]): string {
  try {
    const out = execFileSync(cmd, args, { encoding: "utf8", timeout: 5000, stdio: ["ignore", "pipe", "pipe"] });
    return out.split("\n")[0].trim();
  } catch (e) {
    // mosquitto -h exits non-zero but still prints its version on stdout
    const out = (e as { stdout?: string }).stdout;
    return typeof out === "string" && out.trim() !== "" ? out.split("\n")[0].trim() : "unavailable";
  }
}

function packageVersion(name: string): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "node_modules", name, "package.json"), "utf8"));
    return String(pkg.version);
  } catch {
    return "unavailable";
  }
}

export interface Versions {
  harness: string;
  bun: string;
  deno: string;
  node: string;
  mosquitto: string;
  aedes: string;
}

export function versions(): Versions {
  const v = process.versions as Record<string, string | undefined>;
  const harness = v.bun !== undefined ? `bun ${v.bun}` : v.deno !== undefined ? `deno ${v.deno}` : `node ${v.node}`;
  return {
    harness,
    bun: firstLine(path.join(ROOT, "node_modules/.bin/bun"), ["--version"]),
    deno: firstLine(path.join(ROOT, "node_modules/.bin/deno"), ["--version"]),
    node: firstLine("node", ["--version"]),
    mosquitto: firstLine("/usr/sbin/mosquitto", ["-h"]),
    aedes: packageVersion("aedes"),
  };
}
