/** Ephemeral ports for the brokers under test, and waiting for one to accept connections. */
import net from "node:net";

/** Asks the kernel for a free port by binding port 0, then releases it. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function tryConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => {
      s.destroy();
      resolve(false);
    });
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls until `port` accepts a TCP connection; `stillRunning` aborts the wait early. */
export async function waitForPort(port: number, timeoutMs: number, stillRunning: () => boolean): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (!stillRunning()) throw new Error("process exited before listening");
    if (await tryConnect(port)) return;
    await sleep(25);
  }
  throw new Error(`port ${port} not accepting connections after ${timeoutMs} ms`);
}
