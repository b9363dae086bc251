/**
 * How listeners are configured: --listen (flags, COLIBRI_LISTEN, a config file's "listen"
 * array) and how it combines with --host/--port, per-listener options in the URL's query, the
 * TLS files' checks, and the real entry point refusing what the runtime cannot do or opening
 * every listener it is given.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { parseCli } from "../../src/cli.ts";
import { ConfigError } from "../../src/config.ts";
import { listenerSpecs } from "../../src/listener-spec.ts";
import { loadTlsMaterial } from "../../src/tls-files.ts";
import { isBun } from "../helpers/broker.ts";
import { makePki, type Pki } from "../helpers/certs.ts";
import { freePort, mosquittoPub, mosquittoSub, runCommand, type SpawnedProcess, spawnProcess } from "../helpers/system.ts";

const SLOW = { timeout: 30_000 };
const entry = isBun ? ["run", "src/main.ts"] : ["run", "-A", "src/main.ts"];
const bin = `node_modules/.bin/${isBun ? "bun" : "deno"}`;

function specs(argv: string[], env: Record<string, string> = {}, files: Record<string, string> = {}) {
  const r = parseCli(argv, env, (p) => {
    if (!(p in files)) throw new Error(`ENOENT ${p}`);
    return files[p];
  });
  assert.equal(r.kind, "run");
  return listenerSpecs((r as { config: Parameters<typeof listenerSpecs>[0] }).config);
}
const names = (argv: string[], env: Record<string, string> = {}, files: Record<string, string> = {}) =>
  specs(argv, env, files).map((s) => s.name);

describe("--listen and --host/--port", () => {
  it("without --listen: the plain TCP listener on --host:--port, as before", () => {
    assert.deepEqual(names([]), ["mqtt://0.0.0.0:1883"]);
    assert.deepEqual(names(["--port", "1999", "--host", "127.0.0.1"]), ["mqtt://127.0.0.1:1999"]);
  });

  it("--listen replaces the default listener; repeated, it adds listeners in order", () => {
    assert.deepEqual(names(["--listen", "ws://0.0.0.0:8080/mqtt"]), ["ws://0.0.0.0:8080/mqtt"]);
    assert.deepEqual(names(["--listen", "mqtt://0.0.0.0:1884", "--listen", "wss://[::]:8443/", "--certfile", "c", "--keyfile", "k"]), [
      "mqtt://0.0.0.0:1884",
      "wss://[::]:8443",
    ]);
  });

  it("--listen with an explicit --port (or --host) keeps the plain listener too", () => {
    assert.deepEqual(names(["--port", "1884", "--listen", "ws://0.0.0.0:8080/mqtt"]), ["mqtt://0.0.0.0:1884", "ws://0.0.0.0:8080/mqtt"]);
    assert.deepEqual(names(["--listen", "ws://0.0.0.0:8080/mqtt"], { COLIBRI_HOST: "127.0.0.1" }), [
      "mqtt://127.0.0.1:1883",
      "ws://0.0.0.0:8080/mqtt",
    ]);
  });

  it("COLIBRI_LISTEN takes several URLs (spaces or commas); a config file takes an array; flags win", () => {
    assert.deepEqual(names([], { COLIBRI_LISTEN: "mqtt://0.0.0.0:1 ws://0.0.0.0:2/a,ws://0.0.0.0:3/b" }), [
      "mqtt://0.0.0.0:1",
      "ws://0.0.0.0:2/a",
      "ws://0.0.0.0:3/b",
    ]);
    const files = { "/c.json": JSON.stringify({ listen: ["mqtt://0.0.0.0:5", "ws://0.0.0.0:6/mqtt"] }) };
    assert.deepEqual(names(["--config", "/c.json"], {}, files), ["mqtt://0.0.0.0:5", "ws://0.0.0.0:6/mqtt"]);
    assert.deepEqual(names(["--config", "/c.json", "--listen", "mqtt://0.0.0.0:7"], {}, files), ["mqtt://0.0.0.0:7"]);
    assert.throws(
      () => names(["--config", "/bad.json"], {}, { "/bad.json": JSON.stringify({ listen: ["tcp://x:1"] }) }),
      /invalid value "tcp:\/\/x:1" for listen in \/bad\.json: unknown scheme "tcp"/,
    );
  });

  it("default ports: mqtt 1883, mqtts 8883; a WebSocket path of / accepts any path", () => {
    const [a, b, c] = specs(["--listen", "mqtt://h", "--listen", "mqtts://h", "--listen", "ws://h:80/", "--certfile", "c", "--keyfile", "k"]);
    assert.deepEqual([a.port, b.port, c.port, c.path], [1883, 8883, 80, ""]);
  });

  it("per-listener options in the query override the global ones", () => {
    const [plain, proxied, mtls] = specs([
      "--listen", "mqtt://0.0.0.0:1883",
      "--listen", "mqtt://0.0.0.0:1884?proxy-protocol",
      "--listen", "mqtts://0.0.0.0:8883?require-certificate=true&cafile=/etc/ca.pem&certfile=/etc/other.pem",
      "--certfile", "/etc/server.pem", "--keyfile", "/etc/server.key",
    ]);
    assert.equal(plain.proxyProtocol, false);
    assert.equal(proxied.proxyProtocol, true);
    assert.deepEqual([mtls.requireCertificate, mtls.cafile, mtls.certfile, mtls.keyfile], [true, "/etc/ca.pem", "/etc/other.pem", "/etc/server.key"]);
    assert.equal(mtls.tls, true);
  });

  it("the global --proxy-protocol is for mqtt:// listeners; WebSocket ones are left alone", () => {
    const s = specs(["--proxy-protocol", "--listen", "mqtt://0.0.0.0:1", "--listen", "ws://0.0.0.0:2/mqtt"]);
    assert.deepEqual(s.map((x) => x.proxyProtocol), [true, false]);
  });

  it("two listeners on one address are refused, naming both", () => {
    assert.throws(
      () => names(["--listen", "mqtt://0.0.0.0:1884", "--listen", "ws://0.0.0.0:1884/mqtt"]),
      (e: Error) => e instanceof ConfigError && /mqtt:\/\/0\.0\.0\.0:1884 and ws:\/\/0\.0\.0\.0:1884\/mqtt use the same address/.test(e.message),
    );
  });
});

describe("TLS files", () => {
  let pki: Pki;
  before(async () => {
    pki = await makePki();
  });
  after(() => pki?.remove());
  const spec = (o: Record<string, string | boolean>) =>
    listenerSpecs({ ...parseConfig(["--listen", "mqtts://127.0.0.1:0"]), ...o } as ReturnType<typeof parseConfig>)[0];
  const parseConfig = (argv: string[]) => {
    const r = parseCli([...argv, "--certfile", "c", "--keyfile", "k"], {}, () => "{}");
    return (r as { config: Parameters<typeof listenerSpecs>[0] }).config;
  };

  it("a certificate, its key and a CA are read as PEM text", () => {
    const m = loadTlsMaterial(spec({ certfile: pki.server.cert, keyfile: pki.server.key, cafile: pki.ca, requireCertificate: true }));
    assert.match(m.cert, /BEGIN CERTIFICATE/);
    assert.match(m.key, /PRIVATE KEY/);
    assert.match(m.ca ?? "", /BEGIN CERTIFICATE/);
    assert.equal(m.requireCertificate, true);
  });

  it("a file that is not a certificate, a key that does not match, a bad CA: the option, the file and the fix", () => {
    const junk = path.join(pki.dir, "junk.pem");
    fs.writeFileSync(junk, "hello\n");
    assert.throws(() => loadTlsMaterial(spec({ certfile: junk, keyfile: pki.server.key })), /--certfile ".*junk\.pem" \(listener mqtts:\/\/127\.0\.0\.1:0\) is not a PEM certificate .*give the server certificate in PEM format/);
    assert.throws(() => loadTlsMaterial(spec({ certfile: pki.server.cert, keyfile: junk })), /--keyfile ".*junk\.pem" .*is not a PEM private key/);
    assert.throws(() => loadTlsMaterial(spec({ certfile: pki.server.cert, keyfile: pki.client.key })), /--keyfile ".*client\.key" is not the key of --certfile ".*server\.crt".*give the private key the certificate was issued for/);
    assert.throws(() => loadTlsMaterial(spec({ certfile: pki.server.cert, keyfile: pki.server.key, cafile: junk })), /--cafile ".*junk\.pem" .*is not a PEM certificate/);
    assert.throws(() => loadTlsMaterial(spec({ certfile: "/nonexistent.pem", keyfile: pki.server.key })), /cannot read --certfile "\/nonexistent\.pem"/);
  });
});

describe("the entry point with listeners", () => {
  let pki: Pki;
  const procs: SpawnedProcess[] = [];
  before(async () => {
    pki = await makePki();
  });
  after(async () => {
    for (const p of procs) await p.kill("SIGKILL");
    pki?.remove();
  });
  const tls = () => ["--certfile", pki.server.cert, "--keyfile", pki.server.key];

  it("opens every listener it is given and logs each with the port it got", SLOW, async () => {
    const [a, w] = [await freePort(), await freePort()];
    const proc = spawnProcess(bin, [
      ...entry, "--listen", `mqtt://127.0.0.1:${a}`, "--listen", "mqtts://127.0.0.1:0", "--listen", `ws://127.0.0.1:${w}/mqtt`,
      "--listen", "wss://127.0.0.1:0/mqtt", ...tls(),
    ], { name: "colibri listeners" });
    procs.push(proc);
    await proc.waitForLine(/colibri listening .*listener="wss:\/\/127\.0\.0\.1:(\d+)\/mqtt"/, 15_000);
    const lines = proc.lines.filter((l) => /colibri listening/.test(l));
    assert.equal(lines.length, 4, lines.join("\n"));
    assert.match(lines[0], new RegExp(`listener="mqtt://127\\.0\\.0\\.1:${a}" host="127\\.0\\.0\\.1" port=${a} `));
    assert.match(lines[1], /listener="mqtts:\/\/127\.0\.0\.1:[1-9]\d*" .*port=[1-9]/);
    assert.match(lines[2], new RegExp(`listener="ws://127\\.0\\.0\\.1:${w}/mqtt"`));
    const mqtts = Number(/listener="mqtts:\/\/127\.0\.0\.1:(\d+)"/.exec(lines[1])![1]);
    const sub = mosquittoSub(mqtts, "entry/t", { count: 1, qos: 1, extraArgs: ["--cafile", pki.ca] });
    await sub.ready;
    await mosquittoPub(a, "entry/t", "tcp-to-tls", { qos: 1 });
    assert.equal((await sub)[0].payload, "tcp-to-tls");
  });

  it("a key that does not belong to the certificate: exit 2 with a message naming both files", SLOW, async () => {
    const r = await runCommand(bin, [...entry, "--listen", "mqtts://127.0.0.1:0", "--certfile", pki.server.cert, "--keyfile", pki.client.key], { timeoutMs: 20_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /colibri: --keyfile ".*client\.key" is not the key of --certfile ".*server\.crt"/);
  });

  it(`wss:// with --require-certificate --use-identity-as-username: ${isBun ? "refused at start under Bun, saying why and what to do instead" : "opens under Deno (node:tls listener)"}`, SLOW, async () => {
    const args = ["--listen", "wss://127.0.0.1:0/mqtt", ...tls(), "--cafile", pki.ca, "--require-certificate", "--use-identity-as-username"];
    if (!isBun) {
      const proc = spawnProcess(bin, [...entry, ...args], { name: "colibri wss mtls" });
      procs.push(proc);
      await proc.waitForLine(/colibri listening .*listener="wss:\/\/127\.0\.0\.1:[1-9]\d*\/mqtt"/, 15_000);
      return;
    }
    const r = await runCommand(bin, [...entry, ...args], { timeoutMs: 20_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--use-identity-as-username is not available on wss:\/\/ listeners under Bun: .*use an mqtts:\/\/ listener/);
    assert.match(r.stderr, /listener wss:\/\/127\.0\.0\.1:0\/mqtt/);
  });

  it("a listener port in use names that listener", SLOW, async () => {
    const busy = await freePort();
    const blocker = spawnProcess(bin, [...entry, "--host", "127.0.0.1", "--port", String(busy)], { name: "blocker" });
    procs.push(blocker);
    await blocker.waitForLine(/colibri listening/, 15_000);
    const r = await runCommand(bin, [...entry, "--listen", `ws://127.0.0.1:${busy}/mqtt`], { timeoutMs: 20_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`port ${busy} on 127\\.0\\.0\\.1 is already in use \\(listener ws://127\\.0\\.0\\.1:${busy}/mqtt\\); choose another port in --listen`));
  });
});
