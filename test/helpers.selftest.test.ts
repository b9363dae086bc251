/**
 * Self-test of the test helpers (raw client, process and Mosquitto helpers) against a
 * private Mosquitto on an ephemeral port — so that when a broker test fails, the broker
 * is to blame, not the harness.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { connectV3, connectV4, connectV5, RawClient } from "./helpers/raw-client.ts";
import {
  freePort,
  type MosquittoBroker,
  mosquittoPub,
  mosquittoSub,
  runCommand,
  runtime,
  spawnProcess,
  startMosquitto,
  waitForPort,
} from "./helpers/system.ts";

describe("system helpers", () => {
  it("runtime() names the runtime running the tests", () => {
    const g = globalThis as { Bun?: unknown };
    assert.equal(runtime(), g.Bun !== undefined ? "bun" : "deno");
  });

  it("freePort() returns a port that can be listened on, never 1883", async () => {
    const port = await freePort();
    assert.ok(port > 0 && port < 65536 && port !== 1883, `bad port ${port}`);
    await assert.rejects(waitForPort(port, 200), /nothing accepted connections/);
  });

  it("runCommand() returns exit code, stdout and stderr, and feeds stdin", async () => {
    const r = await runCommand("sh", ["-c", "cat; echo oops >&2; exit 3"], { input: "hello", timeoutMs: 5000 });
    assert.deepEqual([r.code, r.stdout, r.stderr], [3, "hello", "oops\n"]);
    await assert.rejects(runCommand("sleep", ["5"], { timeoutMs: 100 }), /did not finish within 100 ms/);
  });

  it("spawnProcess() waits for output lines and kills by pid", async () => {
    const p = spawnProcess("sh", ["-c", "echo starting; echo ready on 42 >&2; exec sleep 30"]);
    assert.ok(p.pid > 0);
    const m = await p.waitForLine(/ready on (\d+)/, 5000);
    assert.equal(m[1], "42");
    // stdout and stderr are two pipes: the stdout line may be read after the stderr one
    await p.waitForLine(/^starting$/, 5000);
    assert.ok(p.lines.includes("starting"));
    const exit = await p.kill();
    assert.equal(exit.signal, "SIGTERM");
    assert.equal(p.running, false);
    await assert.rejects(p.waitForLine(/never/, 1000), /exited .* before printing/);
  });
});

describe("raw client and mosquitto_pub/sub against Mosquitto", () => {
  let broker: MosquittoBroker;
  let port: number;

  before(async () => {
    broker = await startMosquitto();
    port = broker.port;
    assert.notEqual(port, 1883);
  });

  after(async () => {
    RawClient.destroyAll();
    await broker?.stop();
  });

  it("CONNECT/CONNACK with MQTT 3.1.1", async () => {
    const { client, connack } = await connectV4(port, "self-v4");
    assert.equal(client.protocolVersion, 4);
    assert.equal(connack.returnCode, 0);
    assert.equal(connack.sessionPresent, false);
    client.disconnect();
    await client.waitClose();
  });

  it("CONNECT/CONNACK with MQTT 5, properties decoded", async () => {
    const { client, connack } = await connectV5(port, "self-v5", {
      properties: { sessionExpiryInterval: 0, receiveMaximum: 10 },
    });
    assert.equal(client.protocolVersion, 5);
    assert.equal(connack.reasonCode, 0);
    assert.equal(typeof connack.properties, "object");
    client.disconnect(0);
    await client.waitClose();
  });

  it("CONNECT/CONNACK with MQTT 3.1 (MQIsdp)", async () => {
    const { client, connack } = await connectV3(port, "self-v3");
    assert.equal(connack.returnCode, 0);
    client.destroy();
  });

  it("SUBSCRIBE/SUBACK and QoS 1 delivery between two raw MQTT 5 clients", async () => {
    const { client: sub } = await connectV5(port, "self-sub");
    const { client: pub } = await connectV5(port, "self-pub");
    const suback = await sub.subscribe("self/qos1/+", { qos: 1 });
    assert.deepEqual(suback.granted, [1]);
    const puback = await pub.publish("self/qos1/a", "hello", { qos: 1 });
    assert.equal(puback?.cmd, "puback");
    const msg = await sub.expectPacket("publish");
    assert.equal(msg.topic, "self/qos1/a");
    assert.equal(msg.payload.toString(), "hello");
    assert.equal(msg.qos, 1);
    sub.sendPacket({ cmd: "puback", messageId: msg.messageId });
    await sub.expectNoPacket(100);
    sub.destroy();
    pub.destroy();
  });

  it("QoS 2 flow from a raw MQTT 3.1.1 client", async () => {
    const { client } = await connectV4(port, "self-qos2");
    await client.subscribe("self/qos2", { qos: 2 });
    const pubcomp = await client.publish("self/qos2", new Uint8Array([0, 1, 2]), { qos: 2 });
    assert.equal(pubcomp?.cmd, "pubcomp");
    const msg = await client.expectPacket("publish");
    assert.equal(msg.qos, 2);
    assert.deepEqual([...msg.payload as Uint8Array], [0, 1, 2]);
    client.destroy();
  });

  it("hand-written bytes: PINGREQ gets exactly PINGRESP", async () => {
    const { client } = await connectV4(port, "self-bytes");
    client.send(new Uint8Array([0xc0, 0x00]));
    const frame = await client.nextFrame();
    assert.deepEqual([...frame.bytes], [0xd0, 0x00]);
    assert.equal(frame.packet?.cmd, "pingresp");
    client.destroy();
  });

  it("failed expectations say what was expected and what came", async () => {
    const { client } = await connectV4(port, "self-messages");
    await assert.rejects(client.expectPacket("suback", 100), {
      name: "AssertionError",
      message: "expected suback within 100 ms, got nothing",
    });
    client.sendPacket({ cmd: "pingreq" });
    await assert.rejects(client.expectPacket("suback"), /^AssertionError.*expected suback, got \{"cmd":"pingresp"/);
    await client.expectNoPacket(50);
    await assert.rejects(client.waitClose(100), /expected the server to close the connection within 100 ms/);
    client.sendPacket({ cmd: "pingreq" });
    await assert.rejects(client.expectNoPacket(1000), /expected no packet for 1000 ms, got \{"cmd":"pingresp"/);
    client.destroy();
  });

  it("waitClose() resolves when the server drops a protocol violation (second CONNECT)", async () => {
    const { client } = await connectV4(port, "self-violation");
    client.sendPacket({ cmd: "connect", clientId: "self-violation", protocolVersion: 4, clean: true, keepalive: 60 });
    await client.waitClose(); // [MQTT-3.1.0-2]
    assert.equal(client.closed, true);
    await assert.rejects(client.nextPacket(100), /got nothing \(.*closed/);
  });

  it("mosquitto_pub -> raw subscriber", async () => {
    const { client } = await connectV4(port, "self-raw-sub");
    await client.subscribe("self/from-pub", { qos: 1 });
    await mosquittoPub(port, "self/from-pub", "from mosquitto_pub", { qos: 1 });
    const msg = await client.expectPacket("publish");
    assert.equal(msg.payload.toString(), "from mosquitto_pub");
    client.destroy();
  });

  it("raw publisher -> mosquitto_sub, with retain and QoS reported", async () => {
    const { client } = await connectV5(port, "self-raw-pub");
    await client.publish("self/retained", "kept", { qos: 1, retain: true });
    const sub = mosquittoSub(port, "self/#", { count: 2, qos: 1, v5: true });
    await sub.ready;
    await client.publish("self/live", "fresh", { qos: 1 });
    const messages = await sub;
    assert.deepEqual(
      messages.map((m) => [m.topic, m.payload, m.qos, m.retain]),
      [["self/retained", "kept", 1, true], ["self/live", "fresh", 1, false]],
    );
    await client.publish("self/retained", "", { qos: 1, retain: true }); // clear it
    client.destroy();
  });

  it("mosquitto_pub binary payload (MQTT 5) -> mosquitto_sub bytes", async () => {
    const sub = mosquittoSub(port, "self/binary", { count: 1, v5: true });
    await sub.ready;
    await mosquittoPub(port, "self/binary", new Uint8Array([0xff, 0x00, 0x0a, 0x41]), { v5: true });
    const [m] = await sub;
    assert.deepEqual([...m.bytes], [0xff, 0x00, 0x0a, 0x41]);
  });

  it("mosquittoSub() fails clearly when too few messages arrive; stop() ends it early", async () => {
    const sub = mosquittoSub(port, "self/few", { count: 2, timeoutMs: 1000 });
    await sub.ready;
    await mosquittoPub(port, "self/few", "only one");
    await assert.rejects(sub, /expected 2 message\(s\) within 1000 ms, got 1: \[\["self\/few","only one"\]\]/);

    const open = mosquittoSub(port, "self/open");
    await open.ready;
    await mosquittoPub(port, "self/open", "x");
    while (open.messages.length === 0) await new Promise((r) => setTimeout(r, 20));
    const got = await open.stop();
    assert.equal(got.length, 1);
    assert.equal(open.process.running, false);
  });

  it("mosquittoPub() rejects with the tool's own error when nothing listens", async () => {
    const closedPort = await freePort();
    await assert.rejects(mosquittoPub(closedPort, "x", "y"), /mosquitto_pub to 127\.0\.0\.1:\d+ topic 'x' failed \(exit \d+\): .+/);
  });
});
