/**
 * A real cluster for tests: N broker processes (the runtime that runs the test) on one Redis
 * (the machine's, or a Redis Cluster or Sentinel set-up: `redis`, see redis-env.ts) under a key
 * prefix of their own, behind a real HAProxy in TCP mode:
 *
 * - `lb`: one frontend balancing over every node (round robin, health-checked), as users run it;
 * - `via[i]`: one frontend per node, so a test can reach a chosen node, still through HAProxy.
 *
 * Everything is stopped and every key under the prefix deleted by close().
 */
import fs from "node:fs";
import path from "node:path";
import { startBrokerProcess, type BrokerProcess } from "./broker-process.ts";
import { redisEnv, type RedisEnv } from "./redis-env.ts";
import { after, before } from "node:test";
import { RawClient } from "./raw-client.ts";
import { ensureBinary, freePort, makeTempDir, removeDir, spawnProcess, type SpawnedProcess, waitForPort } from "./system.ts";

export { REDIS_URL } from "./redis-env.ts";

export interface ClusterOptions {
  /** Node lease (ms): how fast a killed node is declared dead. Default 1000. */
  leaseMs?: number;
  /** More broker arguments for every node. */
  args?: string[];
  /** The Redis the nodes share (default: the machine's). */
  redis?: RedisEnv;
  /**
   * Every node serves its HTTP endpoint (--http-port, `http[i]`), HAProxy checks each node's
   * /readyz (as docs/cluster.md and scripts/cluster-up.sh set it up) and shows its view of
   * the servers on `stats` (serverStates()).
   */
  http?: boolean;
}

export class TestCluster {
  readonly nodes: Array<BrokerProcess | undefined> = [];
  /** The nodes' own ports (behind HAProxy). */
  readonly ports: number[] = [];
  /** HAProxy frontend per node. */
  readonly via: number[] = [];
  /** Each node's HTTP endpoint port (with opts.http). */
  readonly http: number[] = [];
  lb = 0;
  /** HAProxy's statistics page (with opts.http). */
  stats = 0;
  readonly prefix = `colibri-test:cluster:${Math.random().toString(36).slice(2)}:`;
  private haproxy: SpawnedProcess | undefined;
  private dir = makeTempDir("colibri-haproxy-");
  private redis!: RedisEnv;

  constructor(readonly size: number, readonly opts: ClusterOptions = {}) {}

  args(i: number): string[] {
    return [
      ...this.redis.args(), "--redis-prefix", this.prefix,
      "--node-id", `n${i + 1}`, "--node-lease-ms", String(this.opts.leaseMs ?? 1000),
      ...(this.opts.http ? ["--http-host", "127.0.0.1", "--http-port", String(this.http[i])] : []),
      ...(this.opts.args ?? []),
    ];
  }

  async start(): Promise<this> {
    this.redis = this.opts.redis ?? await redisEnv("single");
    for (let i = 0; i < this.size; i++) {
      this.ports.push(await freePort());
      this.via.push(await freePort());
      if (this.opts.http) this.http.push(await freePort());
    }
    this.lb = await freePort();
    if (this.opts.http) this.stats = await freePort();
    await Promise.all(this.ports.map((_, i) => this.startNode(i)));
    await this.startHaproxy();
    return this;
  }

  async startNode(i: number): Promise<BrokerProcess> {
    const b = await startBrokerProcess(this.args(i), this.ports[i]);
    this.nodes[i] = b;
    return b;
  }

  /**
   * HAProxy on the ports chosen in start(). A port that was free a moment ago can be taken by
   * then (an outgoing connection's local port, under parallel test files): HAProxy then exits
   * at once, and is started again on fresh ports.
   */
  private async startHaproxy(): Promise<void> {
    const bin = await ensureBinary("haproxy", "haproxy");
    for (let attempt = 1;; attempt++) {
      const proxy = this.spawnHaproxy(bin);
      try {
        await Promise.race([
          (async () => {
            await waitForPort(this.lb, 10_000);
            for (const p of this.via) await waitForPort(p, 10_000);
            // a port may have answered for another process while HAProxy, failing to bind it,
            // was on its way out: it must still be running a moment later
            await new Promise((r) => setTimeout(r, 300));
            if (!proxy.running) throw new Error(`haproxy exited after start: ${proxy.lines.slice(-5).join(" | ")}`);
          })(),
          proxy.exited.then(() => Promise.reject(new Error(`haproxy exited: ${proxy.lines.slice(-5).join(" | ")}`))),
        ]);
        this.haproxy = proxy;
        return;
      } catch (e) {
        await proxy.kill();
        if (attempt === 3) throw e;
        this.lb = await freePort();
        for (let i = 0; i < this.via.length; i++) this.via[i] = await freePort();
        if (this.opts.http) this.stats = await freePort();
      }
    }
  }

  private spawnHaproxy(bin: string): SpawnedProcess {
    const lines = [
      "global", "  maxconn 8000",
      "defaults", "  mode tcp", "  timeout connect 2s", "  timeout client 120s", "  timeout server 120s",
      "  option redispatch", "  retries 3",
      "frontend lb", `  bind 127.0.0.1:${this.lb}`, "  default_backend all",
      "backend all", "  balance roundrobin",
      ...(this.opts.http ? ["  option httpchk GET /readyz", "  http-check expect status 200"] : []),
      ...this.ports.map((p, i) =>
        `  server n${i + 1} 127.0.0.1:${p} check${this.opts.http ? ` port ${this.http[i]}` : ""} inter 200ms fall 1 rise 1`
      ),
    ];
    if (this.opts.http) {
      lines.push("listen stats", `  bind 127.0.0.1:${this.stats}`, "  mode http", "  stats enable", "  stats uri /stats");
    }
    this.ports.forEach((p, i) => {
      lines.push(`frontend f${i + 1}`, `  bind 127.0.0.1:${this.via[i]}`, `  default_backend b${i + 1}`);
      lines.push(`backend b${i + 1}`, `  server n${i + 1} 127.0.0.1:${p}`);
    });
    const cfg = path.join(this.dir, "haproxy.cfg");
    fs.writeFileSync(cfg, lines.join("\n") + "\n");
    return spawnProcess(bin, ["-f", cfg, "-db"], { name: "haproxy" });
  }

  /** HAProxy's view of the balanced backend: server name -> status (UP, DOWN, ...). */
  async serverStates(): Promise<Map<string, string>> {
    const r = await fetch(`http://127.0.0.1:${this.stats}/stats;csv`);
    const rows = (await r.text()).trim().split("\n").map((l) => l.split(","));
    const head = rows[0].map((h) => h.replace(/^# /, ""));
    const [px, sv, st] = ["pxname", "svname", "status"].map((h) => head.indexOf(h));
    return new Map(rows.slice(1).filter((r) => r[px] === "all" && /^n\d+$/.test(r[sv])).map((r) => [r[sv], r[st]]));
  }

  node(i: number): BrokerProcess {
    const b = this.nodes[i];
    if (!b) throw new Error(`node n${i + 1} is not running`);
    return b;
  }

  /** kill -9 a node; it stays down until startNode(i). */
  async kill9(i: number): Promise<void> {
    await this.nodes[i]?.kill9();
    this.nodes[i] = undefined;
  }

  /** SIGTERM a node (planned shutdown) and wait for it to exit. */
  async stop(i: number): Promise<void> {
    await this.nodes[i]?.stop();
    this.nodes[i] = undefined;
  }

  /** Output lines of node i so far (assertions on what it logged). */
  lines(i: number): string[] {
    return this.nodes[i]?.proc.lines ?? [];
  }

  /** Keys under this cluster's prefix matching a pattern (the part after the prefix). */
  async keys(pattern: string): Promise<string[]> {
    return (await this.redis.scan(`${this.prefix}${pattern}`)).map((k) => k.slice(this.prefix.length));
  }

  /** The Redis the cluster runs on. */
  get store(): RedisEnv {
    return this.redis;
  }

  async close(): Promise<void> {
    await Promise.all(this.nodes.map((b) => b?.stop()));
    await this.haproxy?.kill();
    removeDir(this.dir);
    await this.redis?.deletePrefix(this.prefix);
  }
}

export async function startCluster(size: number, opts: ClusterOptions = {}): Promise<TestCluster> {
  return await new TestCluster(size, opts).start();
}

/**
 * One cluster for a describe block: started in before(), everything stopped and cleaned in
 * after(). Returns a getter (the cluster exists only once before() ran).
 */
export function useCluster(size: number, opts: ClusterOptions = {}): () => TestCluster {
  let c: TestCluster | undefined;
  before(async () => {
    c = await startCluster(size, opts);
  });
  after(async () => {
    RawClient.destroyAll();
    await c?.close();
  });
  return () => c!;
}
