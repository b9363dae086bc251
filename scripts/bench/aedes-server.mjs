// Aedes (in-memory persistence, default options) on 127.0.0.1:<argv[2]>, for the benchmark.
// Runs under node and under bun.
import net from "node:net";
import process from "node:process";
import { Aedes } from "aedes";

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error("usage: aedes-server.mjs <port>");
  process.exit(2);
}

const broker = await Aedes.createBroker();
const server = net.createServer(broker.handle);
server.listen(port, "127.0.0.1", () => console.log(`aedes listening on 127.0.0.1:${port}`));

const shutdown = () => {
  server.close();
  broker.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 500).unref();
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
