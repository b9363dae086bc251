// Aedes as a cluster node, the way Aedes is clustered: mqemitter-redis (every message through
// Redis pub/sub) and aedes-persistence-redis, on 127.0.0.1:<argv[2]> with the Redis on
// 127.0.0.1:<argv[3]>. Every node started on one Redis is one cluster. For the benchmark.
import net from "node:net";
import process from "node:process";
import { Aedes } from "aedes";
import mqemitterRedis from "mqemitter-redis";
import persistenceRedis from "aedes-persistence-redis";

const port = Number(process.argv[2]);
const redisPort = Number(process.argv[3]);
if (!Number.isInteger(port) || port <= 0 || !Number.isInteger(redisPort) || redisPort <= 0) {
  console.error("usage: aedes-cluster-server.mjs <port> <redis port>");
  process.exit(2);
}
const redis = { host: "127.0.0.1", port: redisPort };
const broker = await Aedes.createBroker({ mq: mqemitterRedis(redis), persistence: persistenceRedis(redis) });
const server = net.createServer(broker.handle);
server.listen(port, "127.0.0.1", () => console.log(`aedes cluster node listening on 127.0.0.1:${port}`));

const shutdown = () => {
  server.close();
  broker.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 500).unref();
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
