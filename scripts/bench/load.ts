/**
 * The load generator proper: P publishers and S subscribers on raw sockets, in closed-loop mode
 * (each publisher keeps at most `window` messages not yet delivered to every subscriber that
 * should get them) or fixed-rate mode (a 1 ms ticker sends whatever is due). PUBLISH frames are
 * encoded once per topic and patched per message (packet id, publisher, sequence, timestamp);
 * all messages due at one moment go out in a single write.
 *
 * Payload layout (big endian): publisher index u32 | sequence u32 | send time u32 µs | filler.
 */
import { MqttClient } from "./client.ts";
import { encodePublish, type PublishFrame } from "./mqtt-encode.ts";
import { type Connector } from "./transport.ts";
import { DeliveryTracker, type DeliveryCheck } from "./tracker.ts";
import { Histogram } from "./histogram.ts";
import { inPool } from "./pool.ts";
import { sleep } from "./ports.ts";
import { generatorCpu, machineBusy } from "./gen-cpu.ts";
import { type ResourceSample } from "./brokers.ts";

export type LoadMode = { kind: "closed"; window: number } | { kind: "fixed"; rate: number };

export interface LoadSpec {
  /** Client id prefix; must be unique per run. */
  label: string;
  pubs: number;
  subs: number;
  qos: 0 | 1 | 2;
  payloadSize: number;
  /** Topics publisher p publishes to; with several, each message picks one at random. */
  pubTopics(p: number): string[];
  subFilters(s: number): string[];
  /** Deliveries each message must produce. */
  fanout: number;
  mode: LoadMode;
  /** Clean-session flag of the subscribers (publishers are always clean). */
  subClean: boolean;
  warmupMs: number;
  measureMs: number;
  drainMs: number;
  connectConcurrency: number;
}

export interface LoadTarget {
  host: string;
  port: number;
  /** Where the subscribers connect (another node of a cluster); default `port`. */
  subPort?: number;
  connector: Connector;
  sample(): ResourceSample;
  /** CPU seconds of processes serving the broker (Redis), kept out of "other". */
  helperCpu?(): number;
}

export interface LatencySummary {
  p50: number;
  p99: number;
  max: number;
  samples: number;
}

export interface LoadResult {
  /** Deliveries per second received during the measurement window. */
  rate: number;
  /** Messages per second published during the measurement window. */
  publishRate: number;
  sent: number;
  delivered: number;
  check: DeliveryCheck;
  /** QoS 1/2 publishes never completed (PUBACK / PUBCOMP missing) at the end of the drain. */
  unacked: number;
  /** Times the closed loop gave up waiting for deliveries (1 s without progress). */
  stalls: number;
  disconnects: number;
  protocolErrors: string[];
  latency: LatencySummary;
  brokerCpuPct: number;
  genCpuPct: number;
  /** CPU used by everything else on the machine during the window (% of one CPU). */
  otherCpuPct: number;
  /** CPU of the helper processes during the window (% of one CPU). */
  helperCpuPct: number;
  brokerRssKb: number;
  setupMs: number;
  drainMs: number;
}

const MAX_BATCH = 512;
const STALL_MS = 1000;
/** Packet ids in use by one publisher stay below this (the id space is 65535). */
const MAX_UNACKED = 60000;

const nowUs = (): number => Math.floor(performance.now() * 1000) >>> 0;

interface Template {
  frame: PublishFrame;
  /** `MAX_BATCH` copies of the frame back to back, for single-topic publishers. */
  repeated: Uint8Array | null;
}

function template(topic: string, qos: 0 | 1 | 2, payloadSize: number, repeat: boolean): Template {
  const payload = new Uint8Array(Math.max(12, payloadSize)).fill(0x2e);
  const frame = encodePublish(topic, qos, payload);
  let repeated: Uint8Array | null = null;
  if (repeat) {
    const n = frame.bytes.length;
    repeated = new Uint8Array(n * MAX_BATCH);
    for (let i = 0; i < MAX_BATCH; i++) repeated.set(frame.bytes, i * n);
  }
  return { frame, repeated };
}

function patch(out: Uint8Array, off: number, f: PublishFrame, pub: number, seq: number, ts: number): void {
  const k = f.packetIdOffset;
  if (k >= 0) {
    const id = (seq % 65535) + 1;
    out[off + k] = id >> 8;
    out[off + k + 1] = id & 0xff;
  }
  const p = off + f.payloadOffset;
  out[p] = pub >>> 24;
  out[p + 1] = (pub >> 16) & 0xff;
  out[p + 2] = (pub >> 8) & 0xff;
  out[p + 3] = pub & 0xff;
  out[p + 4] = seq >>> 24;
  out[p + 5] = (seq >> 16) & 0xff;
  out[p + 6] = (seq >> 8) & 0xff;
  out[p + 7] = seq & 0xff;
  out[p + 8] = ts >>> 24;
  out[p + 9] = (ts >> 16) & 0xff;
  out[p + 10] = (ts >> 8) & 0xff;
  out[p + 11] = ts & 0xff;
}

class Publisher {
  sent = 0;
  completed = 0;
  delivered = 0;
  forgiven = 0;
  client!: MqttClient;
  private rnd: number;

  constructor(readonly index: number, readonly templates: Template[]) {
    this.rnd = ((index + 1) * 2654435761) | 0 || 1;
  }

  private random(n: number): number {
    let x = this.rnd | 0;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rnd = x;
    return (x >>> 0) % n;
  }

  /** Deliveries still owed for what this publisher sent. */
  outstanding(fanout: number): number {
    return Math.max(0, this.sent * fanout - this.delivered - this.forgiven);
  }

  send(k: number, tracker: DeliveryTracker): void {
    const ts = nowUs();
    let seq = this.sent;
    tracker.reserve(this.index, seq + k);
    const t = this.templates;
    let out: Uint8Array;
    if (t.length === 1 && t[0].repeated !== null) {
      const f = t[0].frame;
      const n = f.bytes.length;
      out = t[0].repeated.slice(0, n * k);
      for (let i = 0; i < k; i++) patch(out, i * n, f, this.index, seq++, ts);
    } else {
      const picks = new Array<PublishFrame>(k);
      let size = 0;
      for (let i = 0; i < k; i++) {
        const f = t[t.length === 1 ? 0 : this.random(t.length)].frame;
        picks[i] = f;
        size += f.bytes.length;
      }
      out = new Uint8Array(size);
      let off = 0;
      for (let i = 0; i < k; i++) {
        const f = picks[i];
        out.set(f.bytes, off);
        patch(out, off, f, this.index, seq++, ts);
        off += f.bytes.length;
      }
    }
    this.sent = seq;
    this.client.write(out);
  }
}

export async function runLoad(spec: LoadSpec, target: LoadTarget): Promise<LoadResult> {
  const { pubs: P, subs: S, fanout, qos } = spec;
  const tracker = new DeliveryTracker(P, S, fanout);
  const hist = new Histogram();
  const protocolErrors: string[] = [];
  let deliveries = 0;
  let measuring = false;
  let sending = false;
  let disconnects = 0;
  let readNow = -1;
  let pumpQueued = false;

  const templateCache = new Map<string, Template>();
  const publishers: Publisher[] = [];
  for (let p = 0; p < P; p++) {
    const topics = spec.pubTopics(p);
    const ts = topics.map((topic) => {
      let t = templateCache.get(topic);
      if (t === undefined) {
        t = template(topic, qos, spec.payloadSize, topics.length === 1);
        templateCache.set(topic, t);
      }
      return t;
    });
    publishers.push(new Publisher(p, ts));
  }

  const windowDeliveries = spec.mode.kind === "closed" ? spec.mode.window * fanout : Infinity;
  const minBatch = spec.mode.kind === "closed" ? Math.max(1, Math.floor(spec.mode.window / 4)) : 1;

  const pump = (): void => {
    pumpQueued = false;
    if (!sending || spec.mode.kind !== "closed") return;
    for (const p of publishers) {
      const owed = p.outstanding(fanout);
      let k = Math.floor((windowDeliveries - owed) / fanout);
      if (qos > 0) k = Math.min(k, MAX_UNACKED - (p.sent - p.completed));
      if (k <= 0 || (k < minBatch && owed > 0)) continue;
      while (k > 0) {
        const n = Math.min(k, MAX_BATCH);
        p.send(n, tracker);
        k -= n;
      }
    }
  };
  const schedulePump = (): void => {
    if (pumpQueued || !sending) return;
    pumpQueued = true;
    setImmediate(pump);
  };

  const t0 = performance.now();
  const subscribers: MqttClient[] = [];
  const connectOne = async (c: MqttClient, id: string, clean: boolean, port = target.port): Promise<void> => {
    await c.open(target.connector, target.host, port, { clientId: id, clean, keepAlive: 0 });
  };
  const allClients: MqttClient[] = [];
  try {
    await inPool(S, spec.connectConcurrency, async (s) => {
      const c = new MqttClient({
        message(buf, start, end) {
          if (end - start < 12) {
            tracker.record(s, P, 0);
            return;
          }
          const pub = ((buf[start] << 24) | (buf[start + 1] << 16) | (buf[start + 2] << 8) | buf[start + 3]) >>> 0;
          const seq = ((buf[start + 4] << 24) | (buf[start + 5] << 16) | (buf[start + 6] << 8) | buf[start + 7]) >>> 0;
          if (!tracker.record(s, pub, seq)) return;
          publishers[pub].delivered++;
          deliveries++;
          if (measuring) {
            const ts = ((buf[start + 8] << 24) | (buf[start + 9] << 16) | (buf[start + 10] << 8) | buf[start + 11]) >>> 0;
            if (readNow < 0) readNow = nowUs();
            hist.record((readNow - ts) >>> 0);
          }
        },
        afterRead() {
          readNow = -1;
          schedulePump();
        },
        lost() {
          disconnects++;
        },
      });
      subscribers[s] = c;
      allClients.push(c);
      await connectOne(c, `${spec.label}-s${s}`, spec.subClean, target.subPort);
      await c.subscribe(spec.subFilters(s).map((filter) => ({ filter, qos })));
    });
    await inPool(P, spec.connectConcurrency, async (i) => {
      const p = publishers[i];
      p.client = new MqttClient({
        completed() {
          p.completed++;
        },
        afterRead: schedulePump,
        lost() {
          disconnects++;
        },
      });
      allClients.push(p.client);
      await connectOne(p.client, `${spec.label}-p${i}`, true);
    });
  } catch (e) {
    for (const c of allClients) c.close();
    throw e;
  }
  const setupMs = performance.now() - t0;

  // Watchdog: in closed-loop mode, lost QoS 0 messages would hold the window forever.
  let lastDeliveries = -1;
  let quietSince = performance.now();
  let stalls = 0;
  const watchdog = setInterval(() => {
    const now = performance.now();
    if (deliveries !== lastDeliveries) {
      lastDeliveries = deliveries;
      quietSince = now;
      return;
    }
    if (!sending || spec.mode.kind !== "closed" || now - quietSince < STALL_MS) return;
    let forgave = false;
    for (const p of publishers) {
      const owed = p.outstanding(fanout);
      if (owed > 0) {
        p.forgiven += owed;
        forgave = true;
      }
    }
    if (forgave) stalls++;
    quietSince = now;
    schedulePump();
  }, 100);

  // Fixed rate: a 1 ms ticker sends what is due, spread evenly over the publishers.
  let ticker: ReturnType<typeof setInterval> | undefined;
  const sendStart = performance.now();
  sending = true;
  if (spec.mode.kind === "fixed") {
    const perPub = spec.mode.rate / P;
    ticker = setInterval(() => {
      if (!sending) return;
      const due = (perPub * (performance.now() - sendStart)) / 1000;
      for (const p of publishers) {
        // Never run more than 100k messages (or 64 MB) ahead of the broker.
        if (p.outstanding(fanout) > 100000 * fanout || p.client.buffered() > 64 << 20) continue;
        let k = Math.floor(due) - p.sent;
        if (qos > 0) k = Math.min(k, MAX_UNACKED - (p.sent - p.completed));
        while (k > 0) {
          const n = Math.min(k, MAX_BATCH);
          p.send(n, tracker);
          k -= n;
        }
      }
    }, 1);
  } else {
    pump();
  }

  const sentNow = (): number => publishers.reduce((n, p) => n + p.sent, 0);
  await sleep(spec.warmupMs);
  const a = { deliveries, sent: sentNow(), broker: target.sample(), gen: generatorCpu(), busy: machineBusy(), helper: target.helperCpu?.() ?? 0, at: performance.now() };
  measuring = true;
  await sleep(spec.measureMs);
  measuring = false;
  const b = { deliveries, sent: sentNow(), broker: target.sample(), gen: generatorCpu(), busy: machineBusy(), helper: target.helperCpu?.() ?? 0, at: performance.now() };
  sending = false;
  if (ticker !== undefined) clearInterval(ticker);

  const drainStart = performance.now();
  const settled = (): boolean =>
    publishers.every((p) => p.sent * fanout - p.delivered <= 0 && (qos === 0 || p.completed >= p.sent));
  while (!settled() && performance.now() - drainStart < spec.drainMs) await sleep(10);
  const drainMs = performance.now() - drainStart;
  await sleep(100); // give late duplicates a chance to show up
  clearInterval(watchdog);

  for (const c of allClients) {
    protocolErrors.push(...c.errors);
    c.close();
  }
  const sent = publishers.map((p) => p.sent);
  const secs = (b.at - a.at) / 1000;
  return {
    rate: (b.deliveries - a.deliveries) / secs,
    publishRate: (b.sent - a.sent) / secs,
    sent: sent.reduce((x, y) => x + y, 0),
    delivered: deliveries,
    check: tracker.check(sent),
    unacked: qos === 0 ? 0 : publishers.reduce((n, p) => n + Math.max(0, p.sent - p.completed), 0),
    stalls,
    disconnects,
    protocolErrors: [...new Set(protocolErrors)],
    latency: { p50: hist.quantile(0.5), p99: hist.quantile(0.99), max: hist.max, samples: hist.count },
    brokerCpuPct: ((b.broker.cpu - a.broker.cpu) / ((b.broker.at - a.broker.at) / 1000)) * 100,
    genCpuPct: ((b.gen - a.gen) / secs) * 100,
    otherCpuPct: Math.max(
      0,
      ((b.busy - a.busy - (b.gen - a.gen) - (b.broker.cpu - a.broker.cpu) - (b.helper - a.helper)) / secs) * 100,
    ),
    helperCpuPct: ((b.helper - a.helper) / secs) * 100,
    brokerRssKb: b.broker.mem.rssKb,
    setupMs,
    drainMs,
  };
}
