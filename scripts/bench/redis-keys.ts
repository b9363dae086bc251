/**
 * Just enough RESP over a raw socket to check that Redis answers and to delete the keys a
 * benchmark run left under its prefix (SCAN MATCH + UNLINK; run between measurements only).
 */
import net from "node:net";

export interface RedisAddress {
  host: string;
  port: number;
}

export function parseRedisUrl(url: string): RedisAddress {
  const u = new URL(url);
  return { host: u.hostname || "127.0.0.1", port: Number(u.port || 6379) };
}

function command(args: readonly string[]): string {
  return `*${args.length}\r\n` + args.map((a) => `$${new TextEncoder().encode(a).length}\r\n${a}\r\n`).join("");
}

/** Sends one command and returns the raw reply once it looks complete (simple heuristics). */
function call(addr: RedisAddress, args: readonly string[], timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: addr.host, port: addr.port });
    let reply = "";
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error("redis: timeout"));
    }, timeoutMs);
    s.on("error", (e: Error) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on("connect", () => s.write(command(args)));
    s.on("data", (d: Uint8Array) => {
      reply += new TextDecoder().decode(d);
      if (complete(reply)) {
        clearTimeout(timer);
        s.destroy();
        resolve(reply);
      }
    });
  });
}

/** Whether a RESP reply (simple, integer, error, or a SCAN-style nested array) is complete. */
function complete(r: string): boolean {
  if (r.length === 0 || !r.endsWith("\r\n")) return false;
  if (r[0] !== "*") return true;
  const lines = r.split("\r\n");
  lines.pop();
  // Count the elements still owed, walking the nested arrays and bulk strings.
  let owed = 1;
  let i = 0;
  while (i < lines.length) {
    const l = lines[i++];
    owed--;
    if (l[0] === "*") owed += Math.max(0, Number(l.slice(1)));
    else if (l[0] === "$" && Number(l.slice(1)) >= 0) i++;
  }
  return owed <= 0;
}

export async function redisPing(addr: RedisAddress): Promise<boolean> {
  try {
    return (await call(addr, ["PING"])).startsWith("+PONG");
  } catch {
    return false;
  }
}

/** Deletes every key starting with `prefix`; returns how many were removed. */
export async function deletePrefix(addr: RedisAddress, prefix: string): Promise<number> {
  let cursor = "0";
  let removed = 0;
  do {
    const lines = (await call(addr, ["SCAN", cursor, "MATCH", `${prefix}*`, "COUNT", "1000"])).split("\r\n");
    cursor = lines[2];
    const keys: string[] = [];
    for (let i = 5; i < lines.length; i += 2) if (lines[i] !== undefined && lines[i] !== "") keys.push(lines[i]);
    if (keys.length > 0) {
      await call(addr, ["UNLINK", ...keys]);
      removed += keys.length;
    }
  } while (cursor !== "0" && cursor !== undefined);
  return removed;
}
