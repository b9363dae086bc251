/**
 * Redis as it is run in production, started on this machine for tests and benchmarks: a single
 * Redis, a Redis Cluster (`redis-server --cluster-enabled yes` + `redis-cli --cluster create`)
 * or a Sentinel set-up (a master, its replicas and three `redis-server --sentinel`), optionally
 * with an ACL user and password and with TLS (a CA and certificates made here with openssl).
 * Every server listens on an ephemeral port of 127.0.0.1 and lives in a temporary directory;
 * stop() kills what was started (by pid) and removes the directory.
 *
 *   bun scripts/redis-topology.ts cluster [--replicas 1] [--auth] [--tls]   # try it by hand:
 *   bun scripts/redis-topology.ts sentinel                                  # prints the broker
 *                                                                           # options, Ctrl-C stops
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { Cluster, Redis, type RedisOptions } from "ioredis";
import { freePort as anyFreePort } from "./bench/ports.ts";

export type TopologyKind = "single" | "cluster" | "sentinel";

export interface TopologyOptions {
  kind: TopologyKind;
  /** Cluster: masters (default 3). */
  masters?: number;
  /** Cluster: replicas per master (default 0); Sentinel: replicas of the master (default 1). */
  replicas?: number;
  /** Every data node requires this ACL user (the default user is disabled). */
  auth?: boolean;
  /** TLS only, client certificates required (single and cluster). */
  tls?: boolean;
  /** Append-only file with fsync always: a server restarted after a kill keeps its data. */
  aof?: boolean;
}

export const USER = "colibri";
export const PASSWORD = "s3cret-pw";
const MASTER_NAME = "mymaster";
const REDIS_SERVER = "redis-server";
const REDIS_CLI = "redis-cli";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A TCP port that was free a moment ago (never 1883, the machine's Mosquitto). */
async function freePort(): Promise<number> {
  for (;;) {
    const p = await anyFreePort();
    if (p !== 1883) return p;
  }
}

const live = new Set<ChildProcess>();
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on("exit", () => {
    for (const c of live) {
      try {
        c.kill("SIGKILL");
      } catch { /* gone */ }
    }
  });
}

/** One redis-server process (data node or sentinel) that can be killed and started again. */
export class Server {
  proc: ChildProcess | undefined;
  constructor(readonly port: number, readonly dir: string, private readonly args: string[], readonly sentinel = false) {}

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  start(): void {
    hookExit();
    fs.mkdirSync(this.dir, { recursive: true });
    const args = this.sentinel ? [path.join(this.dir, "sentinel.conf"), "--sentinel"] : this.args;
    const proc = spawn(REDIS_SERVER, args, { cwd: this.dir, stdio: "ignore" });
    live.add(proc);
    proc.once("exit", () => live.delete(proc));
    this.proc = proc;
  }

  /** kill -9 by pid, and wait until it is gone. */
  async kill(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once("exit", r));
    process.kill(p.pid!, "SIGKILL");
    await gone;
  }

  /** The tail of its log (for error messages). */
  log(): string {
    try {
      return fs.readFileSync(path.join(this.dir, "redis.log"), "utf8").split("\n").slice(-15).join("\n");
    } catch {
      return "";
    }
  }
}

function run(cmd: string, args: string[], cwd?: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl. */
function makeCertificates(dir: string): { ca: string; cert: string; key: string; clientCert: string; clientKey: string } {
  const f = (n: string) => path.join(dir, n);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  run("openssl", ["req", "-x509", ...ec, "-keyout", f("ca.key"), "-out", f("ca.crt"), "-days", "2", "-subj", "/CN=colibri-test-ca"]);
  for (const [name, cn, ext] of [
    ["server", "127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"],
    ["client", "colibri-client", "extendedKeyUsage=clientAuth\n"],
  ]) {
    fs.writeFileSync(f(`${name}.ext`), ext);
    run("openssl", ["req", "-new", ...ec, "-keyout", f(`${name}.key`), "-out", f(`${name}.csr`), "-subj", `/CN=${cn}`]);
    run("openssl", [
      "x509", "-req", "-in", f(`${name}.csr`), "-CA", f("ca.crt"), "-CAkey", f("ca.key"), "-CAcreateserial",
      "-days", "2", "-sha256", "-extfile", f(`${name}.ext`), "-out", f(`${name}.crt`),
    ]);
  }
  return { ca: f("ca.crt"), cert: f("server.crt"), key: f("server.key"), clientCert: f("client.crt"), clientKey: f("client.key") };
}

export class RedisTopology {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), "colibri-redis-"));
  /** Data nodes (single: one; cluster: masters then replicas as created; sentinel: master first). */
  readonly servers: Server[] = [];
  readonly sentinels: Server[] = [];
  private certs: ReturnType<typeof makeCertificates> | undefined;
  private adminClient: Redis | Cluster | undefined;

  private constructor(readonly opts: TopologyOptions) {}

  static async start(opts: TopologyOptions): Promise<RedisTopology> {
    const t = new RedisTopology(opts);
    try {
      await t.launch();
    } catch (e) {
      await t.stop();
      throw e;
    }
    return t;
  }

  get kind(): TopologyKind {
    return this.opts.kind;
  }

  // --- how clients reach it -----------------------------------------------------------------

  /** --redis-url (scheme, credentials; host:port for a single Redis). */
  get url(): string {
    const scheme = this.opts.tls ? "rediss" : "redis";
    const auth = this.opts.auth ? `${USER}:${PASSWORD}@` : "";
    return `${scheme}://${auth}127.0.0.1:${this.servers[0].port}`;
  }

  private list(servers: Server[]): string {
    return servers.map((s) => `127.0.0.1:${s.port}`).join(",");
  }

  /** The broker options that select this Redis. */
  brokerArgs(): string[] {
    const a = ["--persistence", "redis", "--redis-url", this.url];
    if (this.certs) {
      a.push("--redis-tls-ca", this.certs.ca, "--redis-tls-cert", this.certs.clientCert, "--redis-tls-key", this.certs.clientKey);
    }
    if (this.kind === "cluster") a.push("--redis-cluster", this.list(this.servers.slice(0, 1)));
    if (this.kind === "sentinel") a.push("--redis-sentinels", this.list(this.sentinels), "--redis-sentinel-name", MASTER_NAME);
    return a;
  }

  /** The same as a connection target (adapters/redis/connection.ts ConnectionOptions). */
  target(): {
    url: string;
    tls?: { ca?: string; cert?: string; key?: string };
    sentinels?: Array<{ host: string; port: number }>;
    sentinelName?: string;
    cluster?: Array<{ host: string; port: number }>;
  } {
    const hp = (s: Server) => ({ host: "127.0.0.1", port: s.port });
    return {
      url: this.url,
      ...(this.certs ? { tls: { ca: this.certs.ca, cert: this.certs.clientCert, key: this.certs.clientKey } } : {}),
      ...(this.kind === "cluster" ? { cluster: [hp(this.servers[0])] } : {}),
      ...(this.kind === "sentinel" ? { sentinels: this.sentinels.map(hp), sentinelName: MASTER_NAME } : {}),
    };
  }

  /** ioredis options for a client of the data nodes (credentials, TLS). */
  private clientOptions(): RedisOptions {
    const o: RedisOptions = { maxRetriesPerRequest: 1, lazyConnect: true };
    if (this.opts.auth) Object.assign(o, { username: USER, password: PASSWORD });
    if (this.certs) {
      o.tls = {
        ca: fs.readFileSync(this.certs.ca),
        cert: fs.readFileSync(this.certs.clientCert),
        key: fs.readFileSync(this.certs.clientKey),
      };
    }
    return o;
  }

  /** A plain client of one data node. */
  nodeClient(s: Server): Redis {
    const r = new Redis({ ...this.clientOptions(), host: "127.0.0.1", port: s.port, retryStrategy: () => null });
    r.on("error", () => {});
    return r;
  }

  /** A client of the whole thing for tests (follows failovers and slots). */
  async admin(): Promise<Redis | Cluster> {
    if (this.adminClient) return this.adminClient;
    let c: Redis | Cluster;
    if (this.kind === "cluster") {
      c = new Cluster([{ host: "127.0.0.1", port: this.servers[0].port }], {
        redisOptions: this.clientOptions(), lazyConnect: true, slotsRefreshInterval: 500,
      });
    } else if (this.kind === "sentinel") {
      c = new Redis({
        ...this.clientOptions(), sentinels: this.sentinels.map((s) => ({ host: "127.0.0.1", port: s.port })), name: MASTER_NAME,
      });
    } else {
      c = new Redis({ ...this.clientOptions(), host: "127.0.0.1", port: this.servers[0].port });
    }
    c.on("error", () => {});
    await c.connect();
    this.adminClient = c;
    return c;
  }

  /** Every key matching a pattern, on every master (SCAN: tests only). */
  async scan(pattern: string): Promise<string[]> {
    const out: string[] = [];
    for (const node of await this.masterClients()) {
      let cursor = "0";
      do {
        const [next, keys] = await node.scan(cursor, "MATCH", pattern, "COUNT", 1000);
        cursor = next;
        out.push(...keys);
      } while (cursor !== "0");
    }
    return out;
  }

  keys(prefix: string): Promise<string[]> {
    return this.scan(`${prefix}*`);
  }

  async deletePrefix(prefix: string): Promise<number> {
    let n = 0;
    for (const node of await this.masterClients()) {
      let cursor = "0";
      do {
        const [next, keys] = await node.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
        cursor = next;
        for (const k of keys) n += await node.unlink(k); // one key per command: any slot
      } while (cursor !== "0");
    }
    return n;
  }

  private async masterClients(): Promise<Redis[]> {
    const a = await this.admin();
    if (a instanceof Cluster) return a.nodes("master");
    return [a];
  }

  // --- failures -----------------------------------------------------------------------------

  /** The data node that is master now (sentinel: of the set; cluster: of the key's slot). */
  async masterOf(key?: string): Promise<Server> {
    if (this.kind === "sentinel") {
      const s = this.nodeClient(this.sentinels.find((x) => x.running)!);
      try {
        const [, port] = await s.call("SENTINEL", "get-master-addr-by-name", MASTER_NAME) as [string, string];
        return this.servers.find((x) => x.port === Number(port))!;
      } finally {
        s.disconnect();
      }
    }
    if (this.kind === "cluster") {
      const c = this.nodeClient(this.servers.find((x) => x.running)!);
      let slot: number;
      try {
        slot = Number(await c.call("CLUSTER", "KEYSLOT", key ?? "{c}"));
      } finally {
        c.disconnect();
      }
      return await this.masterOfSlot(slot);
    }
    return this.servers[0];
  }

  /** kill -9 the master (of a key's slot on a cluster); returns it (startable again). */
  async killMaster(key?: string): Promise<Server> {
    const m = await this.masterOf(key);
    await m.kill();
    return m;
  }

  /** Until a replica has taken over from `old` and serves (after killMaster). */
  async waitFailover(old: Server, timeoutMs = 30_000): Promise<Server> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      try {
        if (this.kind === "sentinel") {
          const now = await this.masterOf();
          if (now !== old && now.running) {
            const c = this.nodeClient(now);
            try {
              if (String(await c.call("ROLE")).startsWith("master")) return now;
            } finally {
              c.disconnect();
            }
          }
        } else if (this.kind === "cluster") {
          const owners = await this.slotOwners();
          if (!owners.includes(old.port) && await this.clusterOk(this.servers.filter((s) => s.running))) {
            return this.servers.find((s) => s.port === owners[0])!;
          }
        }
      } catch { /* not yet */ }
      await sleep(200);
    }
    throw new Error(`no failover from 127.0.0.1:${old.port} within ${timeoutMs} ms`);
  }

  private async slotOwners(): Promise<number[]> {
    const c = this.nodeClient(this.servers.find((x) => x.running)!);
    try {
      const slots = await c.call("CLUSTER", "SLOTS") as Array<[number, number, [string, number]]>;
      return slots.map((s) => Number(s[2][1]));
    } finally {
      c.disconnect();
    }
  }

  /**
   * Move one slot (with its keys) from its master to another master while clients use it, as
   * `redis-cli --cluster reshard` does: clients see ASK during the move and MOVED after it.
   */
  async migrateSlot(slot: number, to: Server): Promise<void> {
    const owner = await this.masterOfSlot(slot);
    if (owner === to) return;
    const src = this.nodeClient(owner), dst = this.nodeClient(to);
    try {
      const srcId = String(await src.call("CLUSTER", "MYID"));
      const dstId = String(await dst.call("CLUSTER", "MYID"));
      await dst.call("CLUSTER", "SETSLOT", slot, "IMPORTING", srcId);
      await src.call("CLUSTER", "SETSLOT", slot, "MIGRATING", dstId);
      for (;;) {
        const keys = await src.call("CLUSTER", "GETKEYSINSLOT", slot, 10) as string[];
        if (keys.length === 0) break;
        const auth = this.opts.auth ? ["AUTH2", USER, PASSWORD] : [];
        await src.call("MIGRATE", "127.0.0.1", to.port, "", 0, 5000, ...auth, "KEYS", ...keys);
        await sleep(20); // keys move while the clients go on
      }
      for (const m of this.servers.filter((s) => s.running)) {
        const c = this.nodeClient(m);
        try {
          await c.call("CLUSTER", "SETSLOT", slot, "NODE", dstId);
        } catch { /* a replica refuses: it follows its master */ } finally {
          c.disconnect();
        }
      }
    } finally {
      src.disconnect();
      dst.disconnect();
    }
  }

  /** The masters serving slots now. */
  async masters(): Promise<Server[]> {
    const c = this.nodeClient(this.servers.find((x) => x.running)!);
    try {
      const slots = await c.call("CLUSTER", "SLOTS") as Array<[number, number, [string, number]]>;
      const ports = new Set(slots.map((r) => Number(r[2][1])));
      return this.servers.filter((x) => ports.has(x.port));
    } finally {
      c.disconnect();
    }
  }

  /** The master serving a slot now. */
  async masterOfSlot(slot: number): Promise<Server> {
    const c = this.nodeClient(this.servers.find((x) => x.running)!);
    try {
      const slots = await c.call("CLUSTER", "SLOTS") as Array<[number, number, [string, number]]>;
      const range = slots.find(([lo, hi]) => slot >= lo && slot <= hi)!;
      return this.servers.find((x) => x.port === Number(range[2][1]))!;
    } finally {
      c.disconnect();
    }
  }

  /** Start a killed data node again (it rejoins as a replica, or as itself with its AOF). */
  async restart(s: Server): Promise<void> {
    s.start();
    await this.waitPing(s);
  }

  /** Until a cluster serves every slot again / a Sentinel set-up's master answers. */
  async settled(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.kind === "cluster") {
        if (await this.clusterOk(this.servers.filter((s) => s.running))) return;
      } else {
        try {
          const m = await this.masterOf();
          if (m.running) return;
        } catch { /* not yet */ }
      }
      if (Date.now() > deadline) throw new Error(`${this.kind} did not settle within ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  // --- start and stop -----------------------------------------------------------------------

  private serverArgs(port: number, dir: string, extra: string[] = []): string[] {
    const a = ["--bind", "127.0.0.1", "--dir", dir, "--logfile", path.join(dir, "redis.log"), "--save", ""];
    a.push("--appendonly", this.opts.aof ? "yes" : "no");
    if (this.opts.aof) a.push("--appendfsync", "always");
    if (this.certs) {
      a.push("--port", "0", "--tls-port", String(port), "--tls-cert-file", this.certs.cert, "--tls-key-file", this.certs.key);
      a.push("--tls-ca-cert-file", this.certs.ca, "--tls-auth-clients", "yes", "--tls-replication", "yes");
      if (this.kind === "cluster") a.push("--tls-cluster", "yes");
    } else {
      a.push("--port", String(port));
    }
    if (this.opts.auth) {
      a.push("--user", "default", "off", "--user", USER, "on", `>${PASSWORD}`, "~*", "&*", "+@all");
      a.push("--masteruser", USER, "--masterauth", PASSWORD);
    }
    return [...a, ...extra];
  }

  private async launch(): Promise<void> {
    if (this.opts.tls) {
      if (this.kind === "sentinel") throw new Error("this helper starts Sentinel set-ups without TLS");
      this.certs = makeCertificates(this.dir);
    }
    if (this.kind === "single") {
      await this.addServer();
    } else if (this.kind === "cluster") {
      await this.launchCluster();
    } else {
      await this.launchSentinel();
    }
  }

  /**
   * Start one more server. Its ports were free a moment ago, but another process (a parallel
   * test file, an outgoing connection's ephemeral port) may take one before redis-server binds
   * it: a server that exits with "Address already in use" is retried on other ports.
   */
  private async addServer(extra: (port: number, dir: string) => string[] | Promise<string[]> = () => []): Promise<Server> {
    for (let attempt = 1;; attempt++) {
      const port = await freePort();
      const dir = path.join(this.dir, `redis-${port}`);
      fs.mkdirSync(dir, { recursive: true });
      const s = new Server(port, dir, this.serverArgs(port, dir, await extra(port, dir)));
      this.servers.push(s);
      s.start();
      try {
        await this.waitPing(s);
        return s;
      } catch (e) {
        if (attempt >= 5 || s.running || !/Address already in use/.test(s.log())) throw e;
        this.servers.splice(this.servers.indexOf(s), 1);
      }
    }
  }

  private async waitPing(s: Server, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!s.running) throw new Error(`redis-server on port ${s.port} exited:\n${s.log()}`);
      const c = s.sentinel ? new Redis({ host: "127.0.0.1", port: s.port, lazyConnect: true, retryStrategy: () => null }) : this.nodeClient(s);
      c.on("error", () => {});
      try {
        await c.connect();
        await c.ping();
        return;
      } catch {
        await sleep(50);
      } finally {
        c.disconnect();
      }
    }
    throw new Error(`redis-server on port ${s.port} did not answer within ${timeoutMs} ms:\n${s.log()}`);
  }

  private cliAuth(): string[] {
    const a: string[] = [];
    if (this.opts.auth) a.push("--user", USER, "--pass", PASSWORD, "--no-auth-warning");
    if (this.certs) a.push("--tls", "--cacert", this.certs.ca, "--cert", this.certs.clientCert, "--key", this.certs.clientKey);
    return a;
  }

  private async launchCluster(): Promise<void> {
    const masters = this.opts.masters ?? 3;
    const replicas = this.opts.replicas ?? 0;
    const all: Server[] = [];
    for (let i = 0; i < masters * (1 + replicas); i++) {
      all.push(await this.addServer(async (_port, dir) => [
        "--cluster-enabled", "yes", "--cluster-config-file", path.join(dir, "nodes.conf"), "--cluster-port", String(await freePort()),
        "--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0",
      ]));
    }
    run(REDIS_CLI, [
      ...this.cliAuth(), "--cluster", "create", ...all.map((s) => `127.0.0.1:${s.port}`),
      "--cluster-replicas", String(replicas), "--cluster-yes",
    ]);
    const deadline = Date.now() + 30_000;
    while (!(await this.clusterOk(all, masters * (1 + replicas)))) {
      if (Date.now() > deadline) throw new Error(`the cluster did not settle:\n${all[0].log()}`);
      await sleep(100);
    }
    if (replicas > 0) await this.waitReplicasSynced(all);
  }

  /** Every node reports cluster_state:ok, knows every node, and (with replicas) is synced. */
  private async clusterOk(nodes: Server[], known?: number): Promise<boolean> {
    for (const s of nodes) {
      const c = this.nodeClient(s);
      try {
        const info = String(await c.call("CLUSTER", "INFO"));
        if (!/cluster_state:ok/.test(info)) return false;
        if (known !== undefined && !new RegExp(`cluster_known_nodes:${known}\\b`).test(info)) return false;
      } catch {
        return false;
      } finally {
        c.disconnect();
      }
    }
    return true;
  }

  private async waitReplicasSynced(nodes: Server[]): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (const s of nodes) {
      for (;;) {
        const c = this.nodeClient(s);
        let ok = false;
        try {
          const info = String(await c.info("replication"));
          ok = /role:master/.test(info) || /master_link_status:up/.test(info);
        } catch { /* not yet */ } finally {
          c.disconnect();
        }
        if (ok) break;
        if (Date.now() > deadline) throw new Error(`replica on port ${s.port} did not sync:\n${s.log()}`);
        await sleep(100);
      }
    }
  }

  private async launchSentinel(): Promise<void> {
    const master = await this.addServer();
    for (let i = 0; i < (this.opts.replicas ?? 1); i++) {
      await this.addServer(() => ["--replicaof", "127.0.0.1", String(master.port)]);
    }
    await this.waitReplicasSynced(this.servers);
    for (let i = 0, attempt = 1; i < 3; i++) {
      const port = await freePort();
      const dir = path.join(this.dir, `sentinel-${port}`);
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, "sentinel.conf"), [
        `port ${port}`, "bind 127.0.0.1", `dir ${dir}`, `logfile ${path.join(dir, "redis.log")}`,
        `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${master.port} 2`,
        `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
        `sentinel failover-timeout ${MASTER_NAME} 4000`,
        `sentinel parallel-syncs ${MASTER_NAME} 1`,
        ...(this.opts.auth ? [`sentinel auth-user ${MASTER_NAME} ${USER}`, `sentinel auth-pass ${MASTER_NAME} ${PASSWORD}`] : []),
        "",
      ].join("\n"));
      const s = new Server(port, dir, [], true);
      this.sentinels.push(s);
      s.start();
      try {
        await this.waitPing(s);
      } catch (e) {
        // its port was taken before it bound it (see addServer): another port
        if (attempt++ >= 5 || s.running || !/Address already in use/.test(s.log())) throw e;
        this.sentinels.pop();
        i--;
      }
    }
    // ready for a failover: every sentinel knows the replicas and the other sentinels
    const deadline = Date.now() + 30_000;
    for (const s of this.sentinels) {
      for (;;) {
        const c = new Redis({ host: "127.0.0.1", port: s.port, lazyConnect: true, retryStrategy: () => null });
        c.on("error", () => {});
        let ok = false;
        try {
          await c.connect();
          const reps = await c.call("SENTINEL", "REPLICAS", MASTER_NAME) as unknown[];
          const sens = await c.call("SENTINEL", "SENTINELS", MASTER_NAME) as unknown[];
          ok = reps.length >= (this.opts.replicas ?? 1) && sens.length >= this.sentinels.length - 1;
        } catch { /* not yet */ } finally {
          c.disconnect();
        }
        if (ok) break;
        if (Date.now() > deadline) throw new Error(`sentinel on port ${s.port} did not learn the set-up:\n${s.log()}`);
        await sleep(200);
      }
    }
  }

  async stop(): Promise<void> {
    this.adminClient?.disconnect();
    this.adminClient = undefined;
    await Promise.all([...this.sentinels, ...this.servers].map((s) => s.kill()));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

if ((import.meta as { main?: boolean }).main) {
  const argv = process.argv.slice(2);
  const kind = (argv[0] ?? "single") as TopologyKind;
  const num = (flag: string) => (argv.includes(flag) ? Number(argv[argv.indexOf(flag) + 1]) : undefined);
  const t = await RedisTopology.start({
    kind, replicas: num("--replicas"), masters: num("--masters"), auth: argv.includes("--auth"), tls: argv.includes("--tls"),
  });
  console.log(`${kind} running; broker options:\n  ${t.brokerArgs().join(" ")}\nCtrl-C stops it.`);
  const stop = () => void t.stop().then(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  await new Promise(() => {});
}
