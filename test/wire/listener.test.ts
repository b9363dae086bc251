/**
 * The listener outlives connections that are reset before it accepts them (a load balancer's
 * TCP probe, a port scanner): an accept that fails must not stop accepting.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { type BrokerProcess, startBrokerProcess } from "../helpers/broker-process.ts";
import { connectV4, RawClient } from "../helpers/raw-client.ts";

/** Open `n` TCP connections and reset each (RST) as soon as it is established. */
function resetMany(port: number, n: number): Promise<void> {
  return new Promise((resolve) => {
    let left = n;
    for (let i = 0; i < n; i++) {
      const s = net.connect({ port, host: "127.0.0.1" }, () => s.resetAndDestroy());
      s.on("error", () => {});
      s.on("close", () => {
        if (--left === 0) resolve();
      });
    }
  });
}

describe("listener", () => {
  // the broker in a process of its own: its accepts then race the resets, as in production
  let b: BrokerProcess;
  before(async () => {
    b = await startBrokerProcess([]);
  });
  after(async () => {
    RawClient.destroyAll();
    await b.stop();
  });

  it("keeps accepting after connections reset in the backlog", async () => {
    for (let round = 0; round < 5; round++) {
      await resetMany(b.port, 200);
      const { client, connack } = await connectV4(b.port, `after-reset-${round}`);
      assert.equal(connack.returnCode, 0);
      client.destroy();
    }
  });
});
