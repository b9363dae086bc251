/**
 * The operations HTTP endpoint (--http-port), runtime-agnostic: a request's method, path and
 * peer in, a status, headers and body out. adapters/bun/http.ts (Bun.serve) and
 * adapters/deno/http.ts (Deno.serve) put it on a socket; main.ts picks one.
 *
 *   GET  /metrics   Prometheus text format (metrics.ts)
 *   GET  /healthz   200 while the process runs
 *   GET  /readyz    200 when the node takes new clients, 503 (with the reason) while starting,
 *                   draining, stopping or cut off from Redis
 *   POST /drain     start draining (as SIGUSR2); from a loopback address only, 403 otherwise
 */
import { CONTENT_TYPE } from "./exposition.ts";

export interface HttpRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  /** The peer's IP address, when the runtime tells it. */
  remote?: string;
}

export interface HttpResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export type HttpHandler = (req: HttpRequest) => Promise<HttpResponse>;

export interface HttpServer {
  readonly port: number;
  close(): Promise<void>;
}

export type ServeHttp = (handler: HttpHandler, opts: { host: string; port: number }) => Promise<HttpServer>;

/** What the endpoint needs from the node. */
export interface OpsEndpoint {
  metrics(): Promise<string>;
  readiness(): { ready: boolean; reason: string };
  /** Start draining; resolves at once with the number of clients to send away. */
  drain(): number;
}

const TEXT = "text/plain; charset=utf-8";

function reply(status: number, body: string, type = TEXT, extra: Record<string, string> = {}): HttpResponse {
  return { status, headers: { "content-type": type, "cache-control": "no-store", ...extra }, body };
}

export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const a = address.startsWith("::ffff:") ? address.slice(7) : address;
  return a === "::1" || /^127\.\d+\.\d+\.\d+$/.test(a);
}

export function opsHandler(node: OpsEndpoint): HttpHandler {
  return async (req) => {
    const get = req.method === "GET" || req.method === "HEAD";
    switch (req.path) {
      case "/metrics":
        if (!get) return reply(405, "use GET\n", TEXT, { allow: "GET, HEAD" });
        return reply(200, await node.metrics(), CONTENT_TYPE);
      case "/healthz":
        if (!get) return reply(405, "use GET\n", TEXT, { allow: "GET, HEAD" });
        return reply(200, "ok\n");
      case "/readyz": {
        if (!get) return reply(405, "use GET\n", TEXT, { allow: "GET, HEAD" });
        const r = node.readiness();
        return r.ready ? reply(200, "ready\n") : reply(503, `not ready: ${r.reason}\n`);
      }
      case "/drain": {
        if (req.method !== "POST") return reply(405, "use POST\n", TEXT, { allow: "POST" });
        if (!isLoopback(req.remote)) return reply(403, "draining is allowed from this machine only (or send SIGUSR2)\n");
        const clients = node.drain();
        return reply(202, JSON.stringify({ draining: true, clients }) + "\n", "application/json");
      }
      default:
        return reply(404, "not found: try /metrics, /healthz, /readyz or POST /drain\n");
    }
  };
}
