import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { startBroker, type TestBroker } from "./helpers/broker.ts";
import { connectV4, connectV5, RawClient } from "./helpers/raw-client.ts";

describe("smoke: raw wire", () => {
  let b: TestBroker;
  before(async () => { b = await startBroker(); });
  after(async () => { RawClient.destroyAll(); await b.close(); });

  it("CONNECT/CONNACK 3.1.1, SUBSCRIBE, PUBLISH QoS 1 round trip", async () => {
    const { client: sub, connack } = await connectV4(b.port, "smoke-sub");
    assert.equal(connack.returnCode, 0);
    sub.sendPacket({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "s/+", qos: 1 }] });
    const suback = await sub.expectPacket("suback");
    assert.deepEqual(suback.granted, [1]);
    const { client: pub } = await connectV5(b.port, "smoke-pub");
    pub.sendPacket({ cmd: "publish", topic: "s/x", payload: Buffer.from("hi"), qos: 1, messageId: 7, dup: false, retain: false });
    const ack = await pub.expectPacket("puback");
    assert.equal(ack.messageId, 7);
    const got = await sub.expectPacket("publish");
    assert.equal(got.topic, "s/x");
    assert.equal(Buffer.from(got.payload).toString(), "hi");
    assert.equal(got.qos, 1);
  });
});
