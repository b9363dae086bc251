/**
 * use-identity-as-username with the password and ACL files: on a mutual-TLS listener the
 * verified certificate's CN is the user (no password asked, the password file not consulted)
 * and that user's ACL section applies; elsewhere the same broker still wants a password.
 * Real mosquitto_pub / mosquitto_sub with --cert / --key, a throwaway PKI (test/helpers/certs.ts).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { startSecureBroker, type SecureBroker } from "../helpers/auth.ts";
import { makePki, type Pki } from "../helpers/certs.ts";
import { ensureBinary, mosquittoPub, mosquittoSub } from "../helpers/system.ts";

const SLOW = { timeout: 60_000 };

describe("TLS identity as the user name, with the ACL file", SLOW, () => {
  let pki: Pki;
  let b: SecureBroker;
  let mtls = 0;
  let tlsOnly = 0;
  before(async () => {
    await ensureBinary("openssl", "openssl");
    pki = await makePki();
    b = await startSecureBroker({
      users: { alice: "apw" },
      allowAnonymous: false,
      acl: "user device-42\ntopic readwrite devices/42/#\nuser alice\ntopic readwrite #\n",
      config: {
        logLevel: "warn", certfile: pki.server.cert, keyfile: pki.server.key, cafile: pki.ca,
        listen: ["mqtts://127.0.0.1:0", "mqtts://127.0.0.1:0?require-certificate=true&use-identity-as-username=true"],
      },
    });
    tlsOnly = b.listeners[1].listener.port;
    mtls = b.listeners[2].listener.port;
  });
  after(async () => {
    await b?.close();
    pki?.remove();
  });

  const cert = () => ["--cafile", pki.ca, "--cert", pki.client.cert, "--key", pki.client.key];

  it("the certificate authenticates device-42 (no password) and its ACL section applies", async () => {
    const watch = mosquittoSub(b.port, "#", { extraArgs: ["-u", "alice", "-P", "apw"], timeoutMs: 8000 });
    await watch.ready;
    const own = mosquittoSub(mtls, "devices/42/#", { count: 1, extraArgs: cert() });
    await own.ready;
    await mosquittoPub(mtls, "devices/42/temp", "21", { extraArgs: cert(), qos: 1 });
    await mosquittoPub(mtls, "devices/7/temp", "stolen", { extraArgs: cert(), qos: 1 }); // 3.1.1: acked, dropped
    assert.deepEqual((await own).map((m) => m.payload), ["21"]);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual((await watch.stop()).map((m) => m.topic), ["devices/42/temp"]);
  });

  it("a user name in CONNECT does not change who the certificate says it is", async () => {
    const watch = mosquittoSub(b.port, "#", { extraArgs: ["-u", "alice", "-P", "apw"], timeoutMs: 8000 });
    await watch.ready;
    // claims to be alice (who may write '#'): still device-42, whose ACL refuses this topic
    await mosquittoPub(mtls, "anything/x", "m", { v5: true, qos: 1, extraArgs: [...cert(), "-u", "alice"] });
    await mosquittoPub(mtls, "devices/42/claim", "m", { v5: true, qos: 1, extraArgs: [...cert(), "-u", "alice"] });
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual((await watch.stop()).map((m) => m.topic), ["devices/42/claim"]);
  });

  it("without a certificate (TLS only) the password file still decides", async () => {
    await assert.rejects(mosquittoPub(tlsOnly, "x", "m", { extraArgs: ["--cafile", pki.ca] }), /refused|not authori[sz]ed/i);
    await mosquittoPub(tlsOnly, "x", "m", { extraArgs: ["--cafile", pki.ca, "-u", "alice", "-P", "apw"] });
  });
});
