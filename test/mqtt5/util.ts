/**
 * Small helpers shared by the MQTT 5 feature tests (test/mqtt5/*.test.ts): hand-built packets
 * for what a well-behaved encoder refuses to produce, and the checks every protocol-error test
 * makes (reason code on DISCONNECT, a log line naming the client, the broker still serving).
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { TestBroker } from "../helpers/broker.ts";
import { connectV5, type PacketOf, type RawClient } from "../helpers/raw-client.ts";

export { payloadText as text } from "../helpers/raw-client.ts";
import { payloadText as text } from "../helpers/raw-client.ts";

export function varInt(n: number): number[] {
  const out: number[] = [];
  do {
    let c = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) c |= 128;
    out.push(c);
  } while (n > 0);
  return out;
}

const str = (s: string) => {
  const b = Buffer.from(s, "utf8");
  return [b.length >> 8, b.length & 255, ...b];
};

/** Raw MQTT 5 property bytes. */
export const prop = {
  topicAlias: (n: number) => [0x23, n >> 8, n & 255],
  subscriptionId: (n: number) => [0x0b, ...varInt(n)],
  responseTopic: (t: string) => [0x08, ...str(t)],
  contentType: (t: string) => [0x03, ...str(t)],
  user: (k: string, v: string) => [0x26, ...str(k), ...str(v)],
  payloadFormat: (v: number) => [0x01, v],
  messageExpiry: (s: number) => [0x02, (s >>> 24) & 255, (s >>> 16) & 255, (s >>> 8) & 255, s & 255],
};

/** An MQTT 5 PUBLISH built byte by byte (any topic, any properties, any flags). */
export function rawPublish(
  topic: string,
  payload: string | Uint8Array,
  o: { qos?: number; pid?: number; retain?: boolean; dup?: boolean; props?: number[] } = {},
): Uint8Array {
  const qos = o.qos ?? 0;
  const props = o.props ?? [];
  const body = [
    ...str(topic),
    ...(qos > 0 ? [(o.pid ?? 1) >> 8, (o.pid ?? 1) & 255] : []),
    ...varInt(props.length),
    ...props,
    ...(typeof payload === "string" ? Buffer.from(payload) : payload),
  ];
  const h = 0x30 | (o.dup ? 8 : 0) | (qos << 1) | (o.retain ? 1 : 0);
  return Uint8Array.from([h, ...varInt(body.length), ...body]);
}

/** An MQTT 5 SUBSCRIBE built byte by byte. */
export function rawSubscribe(pid: number, filters: Array<[string, number]>, props: number[] = []): Uint8Array {
  const body = [pid >> 8, pid & 255, ...varInt(props.length), ...props];
  for (const [f, opts] of filters) body.push(...str(f), opts);
  return Uint8Array.from([0x82, ...varInt(body.length), ...body]);
}

/** The user properties of a PUBLISH frame's bytes, in wire order (mqtt-packet merges them). */
export function userPropsInOrder(frame: Uint8Array): Array<[string, string]> {
  let p = 1;
  while (frame[p] & 128) p++;
  p++;
  const qos = (frame[0] >> 1) & 3;
  const tlen = (frame[p] << 8) | frame[p + 1];
  p += 2 + tlen + (qos > 0 ? 2 : 0);
  let plen = 0, mul = 1;
  for (;;) {
    const c = frame[p++];
    plen += (c & 127) * mul;
    mul *= 128;
    if (!(c & 128)) break;
  }
  const end = p + plen;
  const out: Array<[string, string]> = [];
  const rs = () => {
    const l = (frame[p] << 8) | frame[p + 1];
    const s = Buffer.from(frame.subarray(p + 2, p + 2 + l)).toString();
    p += 2 + l;
    return s;
  };
  while (p < end) {
    const id = frame[p++];
    if (id === 0x26) out.push([rs(), rs()]);
    else if (id === 0x01) p += 1;
    else if (id === 0x02) p += 4;
    else if (id === 0x23) p += 2;
    else if (id === 0x03 || id === 0x08 || id === 0x09) rs();
    else if (id === 0x0b) while (frame[p++] & 128);
    else throw new Error(`unexpected property 0x${id.toString(16)}`);
  }
  return out;
}

/** The server's DISCONNECT with this reason code, then the close [MQTT-4.13.1-1]. */
export async function expectDisconnect(c: RawClient, code: number): Promise<PacketOf<"disconnect">> {
  const d = await c.waitForPacket("disconnect");
  assert.equal(d.reasonCode, code, `DISCONNECT reason 0x${d.reasonCode?.toString(16)}, expected 0x${code.toString(16)}`);
  await c.waitClose();
  return d;
}

/** A log line names the client and the reason code (and so says who and why). */
export async function expectLogged(b: TestBroker, clientId: string, code: number): Promise<void> {
  const want = `reason="0x${code.toString(16)}"`;
  const end = Date.now() + 1000;
  for (;;) {
    if (b.logs.some((l) => l.includes(`clientId="${clientId}"`) && l.includes(want) && l.includes("why="))) return;
    if (Date.now() > end) assert.fail(`no log line names ${clientId} with ${want}; got:\n${b.logs.slice(-5).join("\n")}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

let seq = 0;
/** A fresh client still gets a full QoS 1 round trip: the broker carries on. */
export async function expectBrokerServes(b: TestBroker): Promise<void> {
  const id = `bystander-${++seq}`;
  const { client } = await connectV5(b.port, id, { keepalive: 0 });
  await client.subscribe(`${id}/t`, { qos: 1 });
  await client.publish(`${id}/t`, "still here", { qos: 1 });
  const p = await client.waitForPacket("publish");
  assert.equal(text(p), "still here");
  client.sendPacket({ cmd: "puback", messageId: p.messageId });
  client.disconnect();
}

/** Acknowledge a PUBLISH from the server as its QoS asks (QoS 2: PUBREC, PUBREL, PUBCOMP). */
export async function ack(c: RawClient, p: PacketOf<"publish">): Promise<void> {
  if (p.qos === 1) c.sendPacket({ cmd: "puback", messageId: p.messageId });
  if (p.qos === 2) {
    c.sendPacket({ cmd: "pubrec", messageId: p.messageId });
    await c.waitForPacket("pubrel", (r) => r.messageId === p.messageId);
    c.sendPacket({ cmd: "pubcomp", messageId: p.messageId });
  }
}

/** Collect `n` PUBLISH packets (acknowledging each), in arrival order. */
export async function collect(c: RawClient, n: number, doAck = true): Promise<PacketOf<"publish">[]> {
  const out: PacketOf<"publish">[] = [];
  while (out.length < n) {
    const p = await c.waitForPacket("publish");
    out.push(p);
    if (doAck) await ack(c, p);
  }
  return out;
}
