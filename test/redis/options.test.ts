/**
 * The Redis connection options: credentials and TLS (a Redis that requires an ACL user and TLS
 * with client certificates, made for this file with openssl), Sentinel and Cluster options
 * pointed at the wrong thing, --redis-wait-replicas on a Redis without replicas, and bad
 * values, each refused with a message that names the option, the value (no password) and the
 * fix.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { Buffer } from "node:buffer";
import { parseCli } from "../../src/cli.ts";
import { ConfigError } from "../../src/config.ts";
import { RedisPersistence } from "../../adapters/redis/redis.ts";
import { PASSWORD, RedisTopology } from "../../scripts/redis-topology.ts";
import { isBun } from "../helpers/broker.ts";
import { type BrokerProcess, startBrokerProcess } from "../helpers/broker-process.ts";
import { spawnProcess } from "../helpers/system.ts";
import { connectV4, connectV5, payloadText, RawClient } from "../helpers/raw-client.ts";
import { ensureTools, REDIS_URL } from "../helpers/redis-env.ts";

const cmd = isBun ? "node_modules/.bin/bun" : "node_modules/.bin/deno";
const pre = isBun ? ["run", "src/main.ts"] : ["run", "-P", "src/main.ts"];
const quiet = { info() {}, warn() {}, error() {} };
const prefix = () => `colibri-test:options:${Math.random().toString(36).slice(2)}:`;

/** Run the broker until it exits (it must: bad options or no Redis); its output. */
async function refused(args: string[]): Promise<string> {
  const p = spawnProcess(cmd, [...pre, "--port", "0", ...args]);
  const exit = await p.exited;
  const out = p.lines.join("\n");
  assert.notEqual(exit.code, 0, `exited 0:\n${out}`);
  assert.doesNotMatch(out, /colibri listening/);
  return out;
}

describe("redis options: bad values are refused naming the option, the value and the fix", () => {
  const cases: Array<[string, string[], RegExp[]]> = [
    ["a URL that is not one", ["--redis-url", "localhost:6379"], [/--redis-url/, /"localhost:6379"/, /redis:\/\//]],
    ["a scheme other than redis/rediss", ["--redis-url", "http://u:pw@h:1"], [/--redis-url/, /http:\/\/u:\*\*\*@h:1/, /redis:\/\/ or rediss:\/\//]],
    ["a database that is not a number", ["--redis-url", "redis://h:1/x"], [/--redis-url/, /database/, /\/x/]],
    ["TLS files without rediss://", ["--redis-url", "redis://u:pw@h:1", "--redis-tls-ca", "/ca.pem"], [/--redis-tls-ca/, /"\/ca\.pem"/, /rediss:\/\//]],
    ["a client certificate without its key", ["--redis-url", "rediss://h:1", "--redis-tls-cert", "/c.pem"], [/--redis-tls-cert/, /--redis-tls-key/]],
    ["sentinels that are not host:port", ["--redis-sentinels", "10.0.0.1"], [/--redis-sentinels/, /"10\.0\.0\.1"/, /host:port/]],
    ["a sentinel port out of range", ["--redis-sentinels", "a:1,b:99999"], [/--redis-sentinels/, /b:99999/]],
    ["an empty sentinel name", ["--redis-sentinels", "a:1", "--redis-sentinel-name", " "], [/--redis-sentinel-name/, /sentinel monitor/]],
    ["cluster nodes that are not host:port", ["--redis-cluster", "a:1,b"], [/--redis-cluster/, /"b"/, /host:port/]],
    ["Sentinel and Cluster together", ["--redis-sentinels", "a:1", "--redis-cluster", "b:2"], [/--redis-sentinels/, /--redis-cluster/, /keep one/]],
    ["a database on Redis Cluster", ["--redis-url", "redis://h:1/3", "--redis-cluster", "b:2"], [/--redis-url/, /database 0/, /remove \/3/]],
    ["braces in the prefix on Redis Cluster", ["--redis-cluster", "b:2", "--redis-prefix", "app{1}:"], [/--redis-prefix/, /"app\{1\}:"/, /slot/]],
    ["a negative replica count", ["--redis-wait-replicas", "-1"], [/--redis-wait-replicas/, /"-1"/, /whole number/]],
  ];
  for (const [name, args, patterns] of cases) {
    it(name, () => {
      let err: unknown;
      try {
        parseCli(["--persistence", "redis", ...args], {}, () => "");
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof ConfigError, `accepted: ${args.join(" ")}`);
      for (const p of patterns) assert.match(err.message, p);
      assert.doesNotMatch(err.message, /\bpw\b/, "a password in the message");
    });
  }

  it("a Redis option without --persistence means redis; beside --persistence memory it is ignored with a warning", () => {
    const r = parseCli(["--redis-cluster", "a:1"], {}, () => "");
    assert.ok(r.kind === "run");
    assert.equal(r.config.persistence, "redis");
    assert.ok(r.notes.some((n) => n.level === "info" && /implied by --redis-cluster/.test(n.text)), JSON.stringify(r.notes));
    const m = parseCli(["--persistence", "memory", "--redis-wait-replicas", "1"], {}, () => "");
    assert.ok(m.kind === "run");
    assert.equal(m.config.persistence, "memory");
    assert.ok(m.notes.some((n) => n.level === "warn" && /--redis-wait-replicas ignored/.test(n.text)), JSON.stringify(m.notes));
  });

  it("the process exits with that message on stderr, the password masked", async () => {
    const out = await refused(["--persistence", "redis", "--redis-url", "ftp://admin:hunter2@h:1"]);
    assert.match(out, /--redis-url/);
    assert.match(out, /admin:\*\*\*@h:1/);
    assert.doesNotMatch(out, /hunter2/);
  });
});

describe("redis options: ACL user and TLS with client certificates", () => {
  let t: RedisTopology;
  let b: BrokerProcess | undefined;
  before(async () => {
    await ensureTools();
    t = await RedisTopology.start({ kind: "single", tls: true, auth: true });
  });
  after(async () => {
    RawClient.destroyAll();
    await b?.stop();
    await t?.stop();
  });

  it("a broker on it keeps a persistent session's queue, and no log line holds the password", { timeout: 30_000 }, async () => {
    const p = prefix();
    b = await startBrokerProcess([...t.brokerArgs(), "--redis-prefix", p]);
    const { client: sub } = await connectV4(b.port, "tls-sub", { clean: false });
    await sub.subscribe("tls/t", { qos: 1 });
    sub.destroy();
    const { client: pub } = await connectV5(b.port, "tls-pub");
    await pub.publish("tls/t", "over tls", { qos: 1 });
    const { client: back, connack } = await connectV4(b.port, "tls-sub", { clean: false });
    assert.equal(connack.sessionPresent, true);
    assert.equal(payloadText(await back.expectPacket("publish", 3000)), "over tls");
    assert.ok((await t.keys(p)).some((k) => k.includes(":q:tls-sub")), "the queue is in the TLS Redis");
    assert.doesNotMatch(b.proc.lines.join("\n"), new RegExp(PASSWORD));
    assert.match(b.proc.lines.join("\n"), /rediss:\/\/colibri:\*\*\*@127\.0\.0\.1/);
  });

  it("a wrong password: exits naming where it tried, not the password", async () => {
    const url = t.url.replace(PASSWORD, "wrong-pw-42");
    const out = await refused([...t.brokerArgs().map((a) => (a === t.url ? url : a))]);
    assert.match(out, /Redis unreachable at rediss:\/\/colibri:\*\*\*@127\.0\.0\.1/);
    assert.match(out, /credentials/);
    assert.doesNotMatch(out, /wrong-pw-42/);
  });

  it("no client certificate: the server refuses; a CA that did not sign the server: refused too", async () => {
    const args = t.brokerArgs();
    const without = args.filter((a, i) => !["--redis-tls-cert", "--redis-tls-key"].includes(a) && !["--redis-tls-cert", "--redis-tls-key"].includes(args[i - 1]));
    assert.match(await refused(without), /Redis unreachable at rediss:/);
    // the client certificate as the CA: it signed nothing
    const ca = args[args.indexOf("--redis-tls-ca") + 1];
    const wrongCa = args.map((a) => (a === ca ? args[args.indexOf("--redis-tls-cert") + 1] : a));
    assert.match(await refused(wrongCa), /Redis unreachable at rediss:.*(certificate|self.signed|verify)/is);
  });

  it("a TLS file that cannot be read: exits naming the option and the path", async () => {
    const args = t.brokerArgs();
    const missing = path.join(path.dirname(args[args.indexOf("--redis-tls-ca") + 1]), "nope.pem");
    const out = await refused(args.map((a, i) => (args[i - 1] === "--redis-tls-key" ? missing : a)));
    assert.match(out, /--redis-tls-key/);
    assert.ok(out.includes(JSON.stringify(missing)), out);
    assert.match(out, /private key \(PEM\)/);
    assert.ok(!fs.existsSync(missing));
  });
});

describe("redis options: Sentinel and Cluster options pointed at the wrong thing", () => {
  it("--redis-cluster at a Redis that is not a cluster: exits naming it", async () => {
    const out = await refused(["--persistence", "redis", "--redis-cluster", "127.0.0.1:6379"]);
    assert.match(out, /Redis unreachable at Redis Cluster 127\.0\.0\.1:6379/);
  });

  it("--redis-sentinels at something that is not a sentinel: exits naming the master and the sentinels", async () => {
    const out = await refused(["--persistence", "redis", "--redis-sentinels", "127.0.0.1:6379", "--redis-sentinel-name", "nosuch"]);
    assert.match(out, /master "nosuch" of sentinels 127\.0\.0\.1:6379/);
  });

  it("a store written for one layout is refused by a broker with another", async () => {
    const p = prefix();
    const one = await RedisPersistence.connect({ url: REDIS_URL, prefix: p, logger: quiet });
    await one.close();
    await assert.rejects(
      RedisPersistence.connect({ url: REDIS_URL, prefix: p, logger: quiet, groups: 1024 }),
      /written for a single Redis or a Sentinel set-up.*Redis Cluster \(1024 session groups\).*--redis-prefix/,
    );
    const r = await RedisPersistence.connect({ url: REDIS_URL, prefix: p, logger: quiet });
    await (r.client as { del(k: string): Promise<number> }).del(`${p}{c}:layout`);
    await r.close();
  });
});

describe("redis options: --redis-wait-replicas", () => {
  let b: BrokerProcess | undefined;
  const p = prefix();
  after(async () => {
    RawClient.destroyAll();
    await b?.stop();
    const r = await RedisPersistence.connect({ url: REDIS_URL, prefix: p, logger: quiet });
    const c = r.client as { keys(p: string): Promise<string[]>; del(...k: string[]): Promise<number> };
    const keys = await c.keys(`${p}*`);
    if (keys.length) await c.del(...keys);
    await r.close();
  });

  it("on a Redis without replicas nothing that needs the store is acknowledged", { timeout: 30_000 }, async () => {
    b = await startBrokerProcess(["--persistence", "redis", "--redis-url", REDIS_URL, "--redis-prefix", p, "--redis-wait-replicas", "1"]);
    // a persistent session cannot be made safe: CONNACK 0x88 (server unavailable)
    const { connack } = await connectV5(b.port, "wait-sub", { clean: false, timeoutMs: 8000 });
    assert.equal(connack.reasonCode, 0x88);
    // a clean one connects; a retained QoS 1 message is not acknowledged (5.0: told why)
    const { client: pub } = await connectV5(b.port, "wait-pub", { timeoutMs: 8000 });
    pub.sendPacket({ cmd: "publish", topic: "wait/t", payload: Buffer.from("x"), qos: 1, messageId: 9, dup: false, retain: true });
    const d = await pub.expectPacket("disconnect", 6000);
    assert.equal(d.reasonCode, 0x80);
    assert.match(b.proc.lines.join("\n"), /reached 0 of 1 replicas/);
  });
});
