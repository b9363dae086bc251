/**
 * The operations HTTP endpoint on Deno.serve (the handler is src/ops/http.ts).
 */
import type { HttpHandler, HttpServer } from "../../src/ops/http.ts";

export function serveHttp(handler: HttpHandler, opts: { host: string; port: number }): Promise<HttpServer> {
  const server = Deno.serve({
    hostname: opts.host,
    port: opts.port,
    onListen: () => {}, // Deno prints "Listening on ..." otherwise; main.ts logs it in its format
  }, async (req, info) => {
    const url = new URL(req.url, "http://localhost"); // an HTTP/1.0 probe sends no Host
    const remote = (info.remoteAddr as Deno.NetAddr).hostname;
    const r = await handler({ method: req.method, path: url.pathname, remote });
    return new Response(req.method === "HEAD" ? null : r.body, { status: r.status, headers: r.headers });
  });
  return Promise.resolve({
    port: (server.addr as Deno.NetAddr).port,
    close: () => server.shutdown(),
  });
}
