/**
 * The operations side of an in-process test broker: an Ops (src/ops/ops.ts) and its HTTP
 * endpoint on the adapter of the runtime that runs the test (Bun.serve / Deno.serve).
 */
import { Ops } from "../../src/ops/ops.ts";
import { type HttpServer, opsHandler, type ServeHttp } from "../../src/ops/http.ts";
import { isBun, type TestBroker } from "./broker.ts";
import { type Family, parseExposition } from "./prometheus.ts";

export async function loadServeHttp(): Promise<ServeHttp> {
  const mod = isBun ? await import("../../adapters/bun/http.ts") : await import("../../adapters/deno/http.ts");
  return mod.serveHttp;
}

export interface TestOps {
  ops: Ops;
  http: HttpServer;
  url: string;
  /** GET /metrics, parsed strictly. */
  scrape(): Promise<Map<string, Family>>;
  close(): Promise<void>;
}

export async function startOps(b: TestBroker, opts: { probeEveryMs?: number; start?: boolean } = {}): Promise<TestOps> {
  const ops = new Ops(b.broker, {
    runtime: isBun ? "bun" : "deno",
    stopAccepting: () => b.listener.close(),
    probeEveryMs: opts.probeEveryMs,
  });
  if (opts.start !== false) ops.start();
  const http = await (await loadServeHttp())(opsHandler(ops), { host: "127.0.0.1", port: 0 });
  const url = `http://127.0.0.1:${http.port}`;
  return {
    ops,
    http,
    url,
    async scrape() {
      const r = await fetch(`${url}/metrics`);
      if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
      const type = r.headers.get("content-type") ?? "";
      if (!type.startsWith("text/plain; version=0.0.4")) throw new Error(`/metrics content type ${type}`);
      return parseExposition(await r.text());
    },
    async close() {
      ops.stop();
      await http.close();
    },
  };
}
