/**
 * Black-box wire tests: keepalive. The broker runs on a ManualClock, so "no traffic for
 * 1.5 x keepalive" is a clock.advance(), not a sleep. Each test gets its own broker so that
 * moving the clock cannot touch another test's connections.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { startBroker, type TestBroker } from "../helpers/broker.ts";
import { connectV4, connectV5, RawClient } from "../helpers/raw-client.ts";
import { ManualClock } from "../../src/clock.ts";
import type { Config } from "../../src/config.ts";

const PINGREQ = Uint8Array.of(0xc0, 0);

async function withBroker(fn: (b: TestBroker, clock: ManualClock) => Promise<void>, cfg: Partial<Config> = {}) {
  const clock = new ManualClock();
  const b = await startBroker(cfg, { clock });
  try {
    await fn(b, clock);
  } finally {
    RawClient.destroyAll();
    await b.close();
  }
}

/** Gives the sockets a moment, then checks the connection is still open. */
async function stillOpen(c: RawClient, what: string): Promise<void> {
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(c.closed, false, `connection closed ${what}`);
}

async function ping(c: RawClient): Promise<void> {
  c.send(PINGREQ);
  await c.expectPacket("pingresp");
}

describe("wire: keepalive (manual clock)", () => {
  it("PINGREQ is answered with PINGRESP [MQTT-3.12.4-1]", () =>
    withBroker(async (b) => {
      const { client } = await connectV4(b.port, "ka-ping", { keepalive: 10 });
      for (let i = 0; i < 3; i++) await ping(client);
      const v5 = await connectV5(b.port, "ka-ping-5", { keepalive: 10 });
      await ping(v5.client);
    }));

  it("3.1.1: no packet for 1.5 x keepalive -> connection closed, no packet sent [MQTT-3.1.2-24]", () =>
    withBroker(async (b, clock) => {
      const { client } = await connectV4(b.port, "ka-v4", { keepalive: 10 });
      clock.advance(14_000);
      await stillOpen(client, "before 1.5 x keepalive (14 s of 15)");
      clock.advance(1_500);
      await client.waitClose();
      assert.equal(client.unread.length, 0, "3.1.1 gets no DISCONNECT");
    }));

  it("5.0: keepalive expiry -> DISCONNECT 0x8D (keep alive timeout), then closed [MQTT-3.1.2-22]", () =>
    withBroker(async (b, clock) => {
      const { client } = await connectV5(b.port, "ka-v5", { keepalive: 4 });
      clock.advance(5_000);
      await stillOpen(client, "before 1.5 x keepalive (5 s of 6)");
      clock.advance(1_500);
      const d = await client.expectPacket("disconnect");
      assert.equal(d.reasonCode, 0x8d);
      await client.waitClose();
    }));

  it("PINGREQ keeps the connection alive across many keepalive periods", () =>
    withBroker(async (b, clock) => {
      const { client } = await connectV4(b.port, "ka-alive", { keepalive: 10 });
      for (let i = 0; i < 5; i++) {
        clock.advance(10_000); // 50 s in total, far beyond 15 s
        await ping(client);
      }
      await stillOpen(client, "although it kept pinging");
      clock.advance(15_500);
      await client.waitClose();
    }));

  it("any packet counts as activity, not only PINGREQ", () =>
    withBroker(async (b, clock) => {
      const { client } = await connectV4(b.port, "ka-pub", { keepalive: 10 });
      for (let i = 0; i < 4; i++) {
        clock.advance(10_000);
        await client.publish("ka/t", `tick ${i}`, { qos: 1 }); // awaits the PUBACK
      }
      await stillOpen(client, "although it kept publishing");
      clock.advance(16_000);
      await client.waitClose();
    }));

  it("the server closes only the silent connection", () =>
    withBroker(async (b, clock) => {
      const quiet = await connectV4(b.port, "ka-quiet", { keepalive: 10 });
      const busy = await connectV4(b.port, "ka-busy", { keepalive: 10 });
      clock.advance(10_000);
      await ping(busy.client);
      clock.advance(6_000); // quiet: 16 s silent; busy: 6 s
      await quiet.client.waitClose();
      await ping(busy.client);
    }));

  it("keepalive 0 turns the mechanism off", () =>
    withBroker(async (b, clock) => {
      const { client } = await connectV4(b.port, "ka-zero", { keepalive: 0 });
      clock.advance(3_600_000);
      await stillOpen(client, "with keepalive 0 after an hour of silence");
      await ping(client);
      const v5 = await connectV5(b.port, "ka-zero-5", { keepalive: 0 });
      clock.advance(24 * 3_600_000);
      await stillOpen(v5.client, "with keepalive 0 (5.0) after a day of silence");
      await ping(v5.client);
    }));

  it("5.0 Server Keep Alive: maxKeepalive caps the client's value and the cap is enforced [MQTT-3.2.2-21]", () =>
    withBroker(async (b, clock) => {
      const { client, connack } = await connectV5(b.port, "ka-cap", { keepalive: 600 });
      assert.equal(connack.properties?.serverKeepAlive, 4);
      clock.advance(5_000);
      await stillOpen(client, "before 1.5 x the server keepalive");
      clock.advance(1_500);
      const d = await client.expectPacket("disconnect");
      assert.equal(d.reasonCode, 0x8d);
    }, { maxKeepalive: 4 }));
});
