/// <reference types="bun-types" />
/**
 * The operations HTTP endpoint on Bun.serve (the handler is src/ops/http.ts).
 */
import type { HttpHandler, HttpServer } from "../../src/ops/http.ts";

export function serveHttp(handler: HttpHandler, opts: { host: string; port: number }): Promise<HttpServer> {
  const server = Bun.serve({
    hostname: opts.host,
    port: opts.port,
    development: false,
    async fetch(req, srv) {
      const url = new URL(req.url, "http://localhost"); // an HTTP/1.0 probe sends no Host
      const r = await handler({ method: req.method, path: url.pathname, remote: srv.requestIP(req)?.address });
      return new Response(req.method === "HEAD" ? null : r.body, { status: r.status, headers: r.headers });
    },
  });
  return Promise.resolve({
    port: server.port ?? opts.port,
    close: async () => {
      await server.stop(true);
    },
  });
}
