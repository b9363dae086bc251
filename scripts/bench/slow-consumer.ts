/**
 * The slow-consumer scenario's driver: one QoS 1 subscriber that stops reading right after its
 * SUBACK (its socket paused, so the broker's writes to it stall once the kernel buffers are
 * full), one publisher sending large QoS 1 messages to it, and one monitor reading the
 * broker's own memory figure from $SYS when the broker publishes one (Colibri:
 * $SYS/broker/memory/held, the bytes it accounts for messages; Mosquitto:
 * $SYS/broker/heap/current, its tracked heap). Memory is sampled while the subscriber is
 * stuck and again after it has gone. Plain node:net sockets (pause() is what makes the
 * subscriber slow), MQTT 3.1.1.
 */
import net from "node:net";
import { Buffer } from "node:buffer";
import { encodeConnect, encodePublish, encodeSubscribe } from "./mqtt-encode.ts";
import { FrameReader } from "./frame-reader.ts";
import { sleep } from "./ports.ts";
import { type ResourceSample } from "./brokers.ts";

export interface SlowConsumerSpec {
  host: string;
  port: number;
  label: string;
  messageSize: number;
  /** Messages to publish (fewer if the time budget runs out). */
  messages: number;
  /** QoS 1 publishes in flight at once. */
  window: number;
  budgetMs: number;
  /** Wait after publishing, and after the subscriber left, before sampling. */
  settleMs: number;
  /** $SYS topic with the broker's own memory figure, if it has one. */
  sysTopic?: string;
  sample(): ResourceSample;
}

export interface SlowConsumerResult {
  published: number;
  acknowledged: number;
  publishSeconds: number;
  /** Bytes by the broker's own account ($SYS), while the subscriber is stuck / after it left. */
  accountedWhileSlow?: number;
  accountedAfter?: number;
  rssWhileSlowKb: number;
  rssAfterKb: number;
  rssBeforeKb: number;
  hwmKb: number;
  notes: string[];
}

interface Client {
  socket: net.Socket;
  closed: boolean;
  /** Resolves with the next packet of `type` (high nibble). */
  next(type: number): Promise<Uint8Array>;
  onPacket?: (type: number, body: Uint8Array) => void;
}

function open(host: string, port: number, clientId: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, noDelay: true });
    const waiting = new Map<number, (b: Uint8Array) => void>();
    const c: Client = {
      socket,
      closed: false,
      next: (type) => new Promise((r) => waiting.set(type, r)),
    };
    const reader = new FrameReader((type, _flags, buf, start, end) => {
      const body = buf.subarray(start, end);
      const w = waiting.get(type);
      if (w !== undefined) {
        waiting.delete(type);
        w(body.slice());
      }
      c.onPacket?.(type, body);
    });
    socket.on("data", (d: Uint8Array) => reader.push(d));
    socket.on("close", () => (c.closed = true));
    socket.on("error", (e: Error) => {
      if (!c.closed) reject(e);
    });
    socket.once("connect", async () => {
      socket.write(encodeConnect({ clientId, clean: true, keepAlive: 0 }));
      const ack = await c.next(2);
      if (ack[1] !== 0) reject(new Error(`${clientId}: CONNACK ${ack[1]}`));
      else resolve(c);
    });
  });
}

async function subscribe(c: Client, filter: string, qos: 0 | 1): Promise<void> {
  c.socket.write(encodeSubscribe(1, [{ filter, qos }]));
  await c.next(9);
}

export async function runSlowConsumer(spec: SlowConsumerSpec): Promise<SlowConsumerResult> {
  const notes: string[] = [];
  const rssBeforeKb = spec.sample().mem.rssKb;
  const topic = `bench/slow/${spec.label}`;
  const slow = await open(spec.host, spec.port, `${spec.label}-slow`);
  await subscribe(slow, topic, 1);
  slow.socket.pause(); // never reads again

  // the broker's own figure, latest value and when it came
  let sys: { value: number; at: number } | undefined;
  const monitor = await open(spec.host, spec.port, `${spec.label}-monitor`);
  if (spec.sysTopic !== undefined) {
    const want = Buffer.from(spec.sysTopic);
    monitor.onPacket = (type, body) => {
      if (type !== 3) return;
      const len = (body[0] << 8) | body[1];
      if (len !== want.length || !Buffer.from(body.subarray(2, 2 + len)).equals(want)) return;
      sys = { value: Number(Buffer.from(body.subarray(2 + len)).toString()), at: performance.now() };
    };
    await subscribe(monitor, spec.sysTopic, 0);
  }
  const freshSys = async (since: number): Promise<number | undefined> => {
    const end = performance.now() + 3000;
    while (performance.now() < end) {
      if (sys !== undefined && sys.at > since) return sys.value;
      await sleep(50);
    }
    return undefined;
  };

  const pub = await open(spec.host, spec.port, `${spec.label}-pub`);
  const frame = encodePublish(topic, 1, new Uint8Array(spec.messageSize).fill(0x5a));
  let published = 0, acknowledged = 0;
  let wake: (() => void) | undefined;
  pub.onPacket = (type) => {
    if (type !== 4) return;
    acknowledged++;
    wake?.();
  };
  const t0 = performance.now();
  while (published < spec.messages && !pub.closed && performance.now() - t0 < spec.budgetMs) {
    if (published - acknowledged >= spec.window) {
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 200);
      });
      wake = undefined;
      continue;
    }
    const id = (published % 65535) + 1;
    const bytes = frame.bytes.slice();
    bytes[frame.packetIdOffset] = id >> 8;
    bytes[frame.packetIdOffset + 1] = id & 255;
    pub.socket.write(bytes);
    published++;
  }
  while (acknowledged < published && !pub.closed && performance.now() - t0 < spec.budgetMs + 5000) await sleep(20);
  const publishSeconds = (performance.now() - t0) / 1000;
  if (pub.closed) notes.push("the broker closed the publisher");
  if (acknowledged < published) notes.push(`${published - acknowledged} of ${published} publishes not acknowledged`);

  await sleep(spec.settleMs);
  const stuck = performance.now();
  const accountedWhileSlow = spec.sysTopic !== undefined ? await freshSys(stuck) : undefined;
  const rssWhileSlowKb = spec.sample().mem.rssKb;

  slow.socket.destroy();
  await sleep(spec.settleMs);
  const left = performance.now();
  const accountedAfter = spec.sysTopic !== undefined ? await freshSys(left) : undefined;
  const after = spec.sample().mem;
  pub.socket.destroy();
  monitor.socket.destroy();
  if (spec.sysTopic !== undefined && accountedWhileSlow === undefined) notes.push(`no ${spec.sysTopic} received`);
  return {
    published,
    acknowledged,
    publishSeconds,
    accountedWhileSlow,
    accountedAfter,
    rssBeforeKb,
    rssWhileSlowKb,
    rssAfterKb: after.rssKb,
    hwmKb: after.hwmKb,
    notes,
  };
}
