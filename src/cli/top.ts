/**
 * colibri top: a live view of one node or a cluster, read from each node's /metrics.
 *
 *   bun run src/cli/top.ts --url http://127.0.0.1:9100 [--url http://127.0.0.1:9101 ...] [--interval 1]
 *   deno run -A src/cli/top.ts --url ...
 *
 * One row per node: ready, connections, sessions, subscriptions, messages and bytes per second
 * in and out, drops per second, queued and in-flight messages, event-loop lag, memory; a total
 * row for a cluster. q (or Ctrl-C) quits. A node that does not answer shows DOWN and why.
 */
import process from "node:process";
import { type NodeView, readSamples, render, type Scrape, view } from "./top-view.ts";

interface Options {
  urls: string[];
  intervalS: number;
}

function usage(why: string): never {
  console.error(`colibri top: ${why}\nusage: bun run src/cli/top.ts --url http://host:port [--url ...] [--interval seconds]`);
  process.exit(2);
}

export function parseTopArgs(argv: string[]): Options {
  const o: Options = { urls: [], intervalS: 1 };
  for (let i = 0; i < argv.length; i++) {
    const [name, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => inline ?? argv[++i] ?? usage(`${name} needs a value`);
    if (name === "--url") {
      const u = value().replace(/\/+$/, "");
      if (!/^https?:\/\/[^/]+$/.test(u)) usage(`--url ${JSON.stringify(u)}: expected http://host:port (a node's --http-port)`);
      o.urls.push(u);
    } else if (name === "--interval") {
      const s = Number(value());
      if (!(s >= 0.1 && s <= 3600)) usage(`--interval ${JSON.stringify(argv[i])}: expected seconds from 0.1 to 3600`);
      o.intervalS = s;
    } else if (name === "--help" || name === "-h") usage("a live view of Colibri nodes from their /metrics");
    else usage(`unknown option ${name}`);
  }
  if (o.urls.length === 0) usage("--url is required (a node's HTTP endpoint, --http-port)");
  return o;
}

async function scrape(url: string, timeoutMs: number): Promise<Scrape> {
  const r = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
  return { at: Date.now(), samples: readSamples(await r.text()) };
}

export async function top(o: Options): Promise<void> {
  const out = process.stdout;
  const last = new Map<string, Scrape>();
  const names = new Map<string, string>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let done = false;
  const quit = () => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    out.write("\x1b[?25h\x1b[?1049l"); // cursor back, main screen back
    process.exit(0);
  };
  out.write("\x1b[?1049h\x1b[?25l"); // alternate screen, no cursor
  process.on("SIGINT", quit);
  process.on("SIGTERM", quit);
  if (process.stdin.isTTY) process.stdin.setRawMode(true);
  process.stdin.on("data", (d: Uint8Array) => {
    if (d.includes(0x71) || d.includes(0x51) || d.includes(0x03)) quit(); // q, Q, Ctrl-C
  });
  const frame = async () => {
    const views: NodeView[] = await Promise.all(o.urls.map(async (url) => {
      try {
        const now = await scrape(url, Math.max(500, o.intervalS * 900));
        const v = view(url, now, last.get(url));
        last.set(url, now);
        if (v.node) names.set(url, v.node);
        return v;
      } catch (e) {
        last.delete(url);
        return { url, node: names.get(url) ?? new URL(url).host, error: String((e as Error)?.message ?? e) };
      }
    }));
    if (done) return;
    out.write("\x1b[H\x1b[2J" + render(views, new Date(), o.intervalS) + "\n");
    timer = setTimeout(frame, o.intervalS * 1000);
  };
  await frame();
}

if ((import.meta as { main?: boolean }).main) {
  await top(parseTopArgs(process.argv.slice(2)));
}
