/**
 * Overload protection at the door: --max-connections (per node) closes a connection over the
 * limit at accept, before it costs anything; per client address, a CONNECT past
 * --max-connections-per-address gets CONNACK 0x97 and one over --max-connect-rate 0x9F (3.1.1:
 * both 0x03), before any authentication work. Clients under the limits never notice them.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { brokersForFile, startBroker, until } from "../helpers/broker.ts";
import { ManualClock } from "../../src/clock.ts";
import { connectV4, connectV5, RawClient } from "../helpers/raw-client.ts";

const broker = brokersForFile();

/** A TCP connection the broker closes without answering (over a connection limit). */
async function refusedAtAccept(port: number, localAddress?: string): Promise<void> {
  const c = await RawClient.connect(port, "127.0.0.1", 2000, localAddress);
  c.sendPacket({ cmd: "connect", protocolVersion: 5, clientId: "over", clean: true, keepalive: 60 });
  await c.waitClose();
  assert.equal(c.unread.length, 0, "no CONNACK for a connection over the limit");
}

describe("connection limits", { timeout: 30_000 }, () => {
  it("--max-connections: the connection past the limit is closed at once; one leaves, one more gets in", async () => {
    const b = await broker({ maxConnections: 3 });
    const clients = [];
    for (let i = 0; i < 3; i++) {
      const r = await connectV5(b.port, `n${i}`);
      assert.equal(r.connack.reasonCode, 0);
      clients.push(r.client);
    }
    await refusedAtAccept(b.port);
    assert.equal(b.broker.stats.limitRefusals, 1);
    clients[0].destroy();
    await until(() => b.broker.connectionLimits.count === 2, "the closed connection to be released");
    assert.equal((await connectV4(b.port, "n3")).connack.returnCode, 0);
    // the three still connected were never disturbed
    for (const c of clients.slice(1)) {
      c.sendPacket({ cmd: "pingreq" });
      await c.expectPacket("pingresp");
    }
  });

  it("--max-connections-per-address: CONNACK 0x97 (3.1.1: 0x03) past it; another address still connects", async () => {
    const b = await broker({ maxConnectionsPerAddress: 2 });
    const first = await connectV5(b.port, "a1");
    await connectV5(b.port, "a2");
    const over = await connectV5(b.port, "a3");
    assert.equal(over.connack.reasonCode, 0x97);
    await over.client.waitClose();
    assert.equal((await connectV4(b.port, "a4")).connack.returnCode, 3);
    const other = await connectV5(b.port, "b1", { localAddress: "127.0.0.2" });
    assert.equal(other.connack.reasonCode, 0);
    assert.equal(b.broker.stats.limitRefusals, 2);
    first.client.destroy();
    // a2 and b1 left: a1 gone, and the refused ones closed
    await until(() => b.broker.connectionLimits.count === 2, "the closed connections to be released", 3000);
    assert.equal((await connectV5(b.port, "a5")).connack.reasonCode, 0);
  });

  it("--max-connect-rate: past the per-address burst a CONNECT gets 0x9F (3.1.1: 0x03); a second later it is in", async () => {
    // a manual clock: the bucket refills only when the test says a second has passed
    const clock = new ManualClock(Date.now());
    const b = await startBroker({ maxConnectRate: 4, authFailureDelayMs: 0 }, { clock });
    try {
      for (let i = 0; i < 4; i++) {
        const r = await connectV5(b.port, `r${i}`);
        assert.equal(r.connack.reasonCode, 0);
      }
      const v5 = await connectV5(b.port, "r4");
      assert.equal(v5.connack.reasonCode, 0x9f);
      await v5.client.waitClose();
      const v4 = await connectV4(b.port, "r5");
      assert.equal(v4.connack.returnCode, 3);
      // another address has its own bucket
      assert.equal((await connectV5(b.port, "elsewhere", { localAddress: "127.0.0.2" })).connack.reasonCode, 0);
      clock.advance(1000);
      assert.equal((await connectV5(b.port, "r6")).connack.reasonCode, 0);
    } finally {
      RawClient.destroyAll();
      await b.close();
    }
  });

  it("0 turns a limit off", async () => {
    const b = await broker({ maxConnections: 0, maxConnectionsPerAddress: 0, maxConnectRate: 0 });
    for (let i = 0; i < 30; i++) assert.equal((await connectV5(b.port, `z${i}`)).connack.reasonCode, 0);
    assert.equal(b.broker.stats.limitRefusals, 0);
  });
});
