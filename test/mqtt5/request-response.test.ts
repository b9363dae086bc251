/**
 * MQTT 5 request/response (§4.10) and the application properties the broker forwards untouched:
 * Response Information in CONNACK when asked for and configured, Response Topic, Correlation
 * Data, Content Type, Payload Format Indicator and User Properties (in order). Also Request
 * Problem Information: with 0, no Reason String / User Properties except on PUBLISH, CONNACK
 * and DISCONNECT [MQTT-3.1.2-29].
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { startBroker, type TestBroker, useBroker } from "../helpers/broker.ts";
import { connectV4, connectV5, type PacketOf, RawClient } from "../helpers/raw-client.ts";
import { expectBrokerServes, expectDisconnect, expectLogged, prop, rawPublish, text, userPropsInOrder } from "./util.ts";

describe("mqtt5: request / response", () => {
  let b: TestBroker;
  useBroker((x) => (b = x), { responseInformation: "reply/" });

  describe("Response Information", () => {
    it("returned in CONNACK when requested and configured (§3.2.2.3.15)", async () => {
      const { client, connack } = await connectV5(b.port, "rr-info", { properties: { requestResponseInformation: true } });
      assert.equal(connack.properties?.responseInformation, "reply/");
      client.disconnect();
    });

    it("not returned when not requested [MQTT-3.1.2-28]", async () => {
      for (const properties of [undefined, { requestResponseInformation: false }]) {
        const { client, connack } = await connectV5(b.port, "rr-noinfo", { properties });
        assert.equal(connack.properties?.responseInformation, undefined);
        client.disconnect();
      }
    });

    it("not returned when not configured, even if requested", async () => {
      const other = await startBroker();
      try {
        const { client, connack } = await connectV5(other.port, "rr-unset", { properties: { requestResponseInformation: true } });
        assert.equal(connack.properties?.responseInformation, undefined);
        client.disconnect();
      } finally {
        RawClient.destroyAll();
        await other.close();
      }
    });
  });

  it("a request and its response flow through untouched (§4.10.1)", async () => {
    const { client: responder } = await connectV5(b.port, "rr-responder", { keepalive: 0 });
    await responder.subscribe("svc/time", { qos: 1 });
    const { client: requester, connack } = await connectV5(b.port, "rr-requester", {
      keepalive: 0, properties: { requestResponseInformation: true },
    });
    const replyTo = `${connack.properties?.responseInformation}rr-requester`;
    await requester.subscribe(replyTo, { qos: 1 });
    const corr = Buffer.from([0x00, 0xff, 0x10, 0x80]);
    await requester.publish("svc/time", "what time?", { qos: 1, properties: { responseTopic: replyTo, correlationData: corr } });
    const req = await responder.expectPacket("publish");
    responder.sendPacket({ cmd: "puback", messageId: req.messageId });
    assert.equal(req.properties?.responseTopic, replyTo, "[MQTT-3.3.2-15]");
    assert.deepEqual([...(req.properties?.correlationData ?? [])], [...corr], "[MQTT-3.3.2-16]");
    await responder.publish(req.properties!.responseTopic!, "noon", {
      qos: 1, properties: { correlationData: req.properties!.correlationData },
    });
    const res = await requester.expectPacket("publish");
    assert.equal(res.topic, replyTo);
    assert.equal(text(res), "noon");
    assert.deepEqual([...(res.properties?.correlationData ?? [])], [...corr]);
    assert.equal(res.properties?.responseTopic, undefined);
  });

  it("content type, payload format indicator and user properties are forwarded unaltered, in order [MQTT-3.3.2-4] [MQTT-3.3.2-17] [MQTT-3.3.2-18] [MQTT-3.3.2-20]", async () => {
    const { client: sub } = await connectV5(b.port, "rr-props-sub", { keepalive: 0 });
    await sub.subscribe("props/t");
    const { client: pub } = await connectV5(b.port, "rr-props-pub", { keepalive: 0 });
    const order: Array<[string, string]> = [["b", "1"], ["a", "2"], ["b", "3"], ["ü", "ß"], ["a", "4"]];
    const props = [...prop.contentType("text/plain; charset=utf-8"), ...prop.payloadFormat(1)];
    for (const [k, v] of order) props.push(...prop.user(k, v));
    pub.send(rawPublish("props/t", "héllo", { props }));
    const f = await sub.nextFrame();
    const p = f.packet as PacketOf<"publish">;
    assert.equal(p.properties?.contentType, "text/plain; charset=utf-8");
    assert.equal(p.properties?.payloadFormatIndicator, true);
    assert.equal(text(p), "héllo");
    assert.deepEqual(userPropsInOrder(f.bytes), order, "same pairs, same order, names interleaved");
  });

  it("the same properties reach subscribers of a retained message and of an offline queue", async () => {
    const { client: pub } = await connectV5(b.port, "rr-keep-pub", { keepalive: 0 });
    const properties = { contentType: "a/b", responseTopic: "r/t", correlationData: Buffer.from("c"), userProperties: { k: "v" } };
    await pub.publish("keep/ret", "r", { qos: 1, retain: true, properties });
    const { client: sub } = await connectV5(b.port, "rr-keep-sub", { keepalive: 0 });
    await sub.subscribe("keep/ret", { qos: 1 });
    const p = await sub.expectPacket("publish");
    assert.equal(p.properties?.contentType, "a/b");
    assert.equal(p.properties?.responseTopic, "r/t");
    assert.equal(Buffer.from(p.properties!.correlationData!).toString(), "c");
    assert.deepEqual({ ...p.properties?.userProperties }, { k: "v" });
    await pub.publish("keep/ret", "", { qos: 1, retain: true });
  });

  it("a 3.1.1 subscriber gets the message without properties", async () => {
    const { client: v4 } = await connectV4(b.port, "rr-v4", { keepalive: 0 });
    await v4.subscribe("v4/req");
    const { client: pub } = await connectV5(b.port, "rr-v4-pub", { keepalive: 0 });
    await pub.publish("v4/req", "plain", { properties: { responseTopic: "x/y", userProperties: { a: "b" } } });
    const p = await v4.expectPacket("publish");
    assert.equal(text(p), "plain");
    assert.equal(p.properties, undefined);
  });

  it("a Response Topic with a wildcard: DISCONNECT 0x82 [MQTT-3.3.2-14]", async () => {
    const { client } = await connectV5(b.port, "rr-wild");
    client.send(rawPublish("req/t", "x", { props: prop.responseTopic("reply/+") }));
    await expectDisconnect(client, 0x82);
    await expectLogged(b, "rr-wild", 0x82);
    await expectBrokerServes(b);
  });
});

describe("mqtt5: Request Problem Information", () => {
  let b: TestBroker;
  useBroker((x) => (b = x));

  /** A QoS 1 PUBLISH claiming UTF-8 but carrying invalid bytes: PUBACK 0x99 (§3.3.2.3.2). */
  const badUtf8 = (pid: number) => rawPublish("rpi/t", Uint8Array.of(0xc3, 0x28), { qos: 1, pid, props: prop.payloadFormat(1) });

  it("by default an error ack says why (Reason String)", async () => {
    const { client } = await connectV5(b.port, "rpi-default");
    client.send(badUtf8(1));
    const ack = await client.expectPacket("puback");
    assert.equal(ack.reasonCode, 0x99);
    assert.ok(ack.properties?.reasonString, "a reason string");
  });

  it("with 0: no Reason String or User Properties on the ack [MQTT-3.1.2-29]", async () => {
    const { client } = await connectV5(b.port, "rpi-off", { properties: { requestProblemInformation: false } });
    client.send(badUtf8(2));
    const f = await client.nextFrame();
    const ack = f.packet as PacketOf<"puback">;
    assert.equal(ack.cmd, "puback");
    assert.equal(ack.reasonCode, 0x99);
    assert.equal(ack.properties, undefined);
    assert.ok(f.bytes.length <= 6, "packet id, reason code, at most a zero property length");
  });

  it("with 0: PUBLISH still carries the user properties it came with [MQTT-3.1.2-29]", async () => {
    const { client: sub } = await connectV5(b.port, "rpi-sub", { keepalive: 0, properties: { requestProblemInformation: false } });
    await sub.subscribe("rpi/pub");
    const { client: pub } = await connectV5(b.port, "rpi-pub", { keepalive: 0 });
    await pub.publish("rpi/pub", "x", { properties: { userProperties: { app: "data" } } });
    const p = await sub.expectPacket("publish");
    assert.deepEqual({ ...p.properties?.userProperties }, { app: "data" });
  });
});
