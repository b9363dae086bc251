/**
 * SIGHUP on the real broker process (bun run / deno run src/main.ts): it reloads what can be
 * reloaded — the certificates of TLS listeners — logs it and keeps running; open connections
 * stay, new ones get the new certificate; a reload that fails is logged and the old
 * certificate stays. (Before: SIGHUP ended the broker with exit 129 and no log line.)
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { type BrokerProcess, startBrokerProcess } from "../helpers/broker-process.ts";
import { makePki, type Pki, replaceFiles } from "../helpers/certs.ts";
import { freePort, mosquittoPub, mosquittoSub, runCommand, sleep } from "../helpers/system.ts";

const SLOW = { timeout: 40_000 };

/** Does a TLS handshake with 127.0.0.1:port verify against `ca`? */
async function verifiesWith(port: number, ca: string): Promise<boolean> {
  const r = await runCommand("openssl", ["s_client", "-connect", `127.0.0.1:${port}`, "-servername", "localhost", "-CAfile", ca], {
    input: "",
    timeoutMs: 10_000,
  });
  return /Verify return code: 0 \(ok\)/.test(r.stdout);
}

describe("SIGHUP", () => {
  let pki: Pki;
  let broker: BrokerProcess | undefined;
  let files: { cert: string; key: string };
  let mqtts = 0;
  let wss = 0;
  before(async () => {
    pki = await makePki();
    const dir = fs.mkdtempSync(path.join(pki.dir, "live-"));
    files = { cert: path.join(dir, "server.crt"), key: path.join(dir, "server.key") };
    replaceFiles(files, pki.server);
  });
  after(async () => {
    await broker?.stop();
    pki?.remove();
  });

  it("is logged and the broker keeps serving (it used to exit with 129)", SLOW, async () => {
    const b = await startBrokerProcess(["--log-level", "info"]);
    try {
      b.proc.signal("SIGHUP");
      await b.proc.waitForLine(/INFO reloading .*signal="SIGHUP"/, 5000);
      await sleep(300);
      assert.ok(b.proc.running, `the broker exited: ${JSON.stringify(b.proc.exitInfo)}\n${b.proc.tail()}`);
      const sub = mosquittoSub(b.port, "hup/t", { count: 1, qos: 1 });
      await sub.ready;
      await mosquittoPub(b.port, "hup/t", "still-here", { qos: 1 });
      assert.equal((await sub)[0].payload, "still-here");
    } finally {
      await b.stop();
    }
  });

  it("reloads TLS certificates: new connections get the new one, an open connection stays", SLOW, async () => {
    [mqtts, wss] = [await freePort(), await freePort()];
    broker = await startBrokerProcess([
      "--log-level", "info", "--certfile", files.cert, "--keyfile", files.key,
      "--listen", `mqtts://127.0.0.1:${mqtts}`, "--listen", `wss://127.0.0.1:${wss}/mqtt`,
    ]);
    await broker.proc.waitForLine(new RegExp(`colibri listening .*listener="wss://127\\.0\\.0\\.1:${wss}/mqtt"`), 5000);
    const sub = mosquittoSub(mqtts, "hup/tls", { count: 1, qos: 1, extraArgs: ["--cafile", pki.ca], timeoutMs: 20_000 });
    await sub.ready;
    const next = await pki.newCa("ca-next");
    replaceFiles(files, next.server);
    broker.proc.signal("SIGHUP");
    await broker.proc.waitForLine(new RegExp(`INFO reloaded .*what="certificate of mqtts://127\\.0\\.0\\.1:${mqtts}"`), 5000);
    assert.ok(await verifiesWith(mqtts, next.ca), "mqtts:// does not serve the new certificate");
    assert.ok(!(await verifiesWith(mqtts, pki.ca)), "mqtts:// still serves the old certificate");
    // the subscriber from before the reload is still connected and gets this
    await mosquittoPub(mqtts, "hup/tls", "after-reload", { qos: 1, extraArgs: ["--cafile", next.ca] });
    assert.equal((await sub)[0].payload, "after-reload");
    // both runtimes: Bun.serve on a second socket, Deno on its node:tls listener (setSecureContext)
    await broker.proc.waitForLine(new RegExp(`INFO reloaded .*what="certificate of wss://127\\.0\\.0\\.1:${wss}/mqtt"`), 5000);
    assert.ok(await verifiesWith(wss, next.ca), "wss:// does not serve the new certificate");
    assert.ok(!(await verifiesWith(wss, pki.ca)), "wss:// still serves the old certificate");
    assert.ok(broker.proc.running);
  });

  it("a certificate that cannot be loaded is logged and the one in use stays", SLOW, async () => {
    assert.ok(broker, "needs the broker of the previous test");
    const current = fs.readFileSync(files.cert);
    fs.writeFileSync(files.cert, "not a certificate\n");
    try {
      broker.proc.signal("SIGHUP");
      await broker.proc.waitForLine(/ERROR reload failed, keeping the previous one .*what="certificate of mqtts:.*is not a PEM certificate/, 5000);
      const caNow = path.join(pki.dir, "ca-next.crt");
      assert.ok(await verifiesWith(mqtts, caNow), "the certificate in use was lost");
      assert.ok(broker.proc.running);
    } finally {
      fs.writeFileSync(files.cert, current);
    }
  });
});
