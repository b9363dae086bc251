/**
 * Binary-safe encodings of the stored values.
 *
 * A message (or will) is one blob: a JSON header, "\n", then the raw payload bytes. JSON
 * escapes control characters inside strings, so the first 0x0A always ends the header, and
 * the payload needs no escaping at all. Measured against JSON with a base64 payload (Bun and
 * Deno, encode + decode): same speed at 1 KiB, 4x (Bun) / 1.6x (Deno) faster at 64 KiB, and
 * 25 % smaller on the wire and in Redis. correlationData, the only other binary field, is
 * small and goes in the header as base64.
 */
import { Buffer } from "node:buffer";
import type {
  MessageProperties,
  OutgoingEntry,
  QoS,
  SessionRecord,
  StoredMessage,
  StoredSubscription,
  StoredWill,
  SubscriptionOptions,
} from "../../src/persistence/persistence.ts";

const NL = 0x0a;

function blob(header: unknown, payload: Uint8Array): Buffer {
  const head = JSON.stringify(header);
  const headLen = Buffer.byteLength(head);
  const out = Buffer.allocUnsafe(headLen + 1 + payload.byteLength);
  out.write(head, 0, "utf8");
  out[headLen] = NL;
  out.set(payload, headLen + 1);
  return out;
}

function unblob(buf: Buffer): { header: Record<string, unknown>; payload: Uint8Array } {
  const nl = buf.indexOf(NL);
  if (nl < 0) throw new Error("corrupt stored message: no header terminator");
  const header = JSON.parse(buf.toString("utf8", 0, nl)) as Record<string, unknown>;
  // Copy: a view would pin the reply buffer it was sliced from.
  return { header, payload: new Uint8Array(buf.subarray(nl + 1)) };
}

/** Length of the header part including its "\n": unique per message id (conditional deletes). */
export function headerLength(buf: Buffer): number {
  return buf.indexOf(NL) + 1;
}

type JsonProps = Omit<MessageProperties, "correlationData"> & {
  correlationData?: string;
  messageExpiryInterval?: number;
};

function propsOut(p: StoredWill["properties"] | undefined): JsonProps | undefined {
  if (p === undefined) return undefined;
  if (p.correlationData === undefined) return p as JsonProps;
  const cd = p.correlationData;
  return { ...p, correlationData: Buffer.from(cd.buffer, cd.byteOffset, cd.byteLength).toString("base64") };
}

function propsIn(p: unknown): StoredWill["properties"] | undefined {
  if (p === undefined || p === null) return undefined;
  const j = p as JsonProps;
  if (j.correlationData === undefined) return j as StoredWill["properties"];
  return { ...j, correlationData: new Uint8Array(Buffer.from(j.correlationData, "base64")) };
}

export function encodeMessage(m: StoredMessage): Buffer {
  return blob({
    id: m.id,
    topic: m.topic,
    qos: m.qos,
    retain: m.retain,
    receivedAt: m.receivedAt,
    expiresAt: m.expiresAt,
    properties: propsOut(m.properties),
  }, m.payload);
}

export function decodeMessage(buf: Buffer): StoredMessage {
  const { header: h, payload } = unblob(buf);
  const m: StoredMessage = {
    id: h.id as string,
    topic: h.topic as string,
    payload,
    qos: h.qos as QoS,
    retain: h.retain as boolean,
    receivedAt: h.receivedAt as number,
  };
  if (h.expiresAt !== undefined) m.expiresAt = h.expiresAt as number;
  const props = propsIn(h.properties);
  if (props !== undefined) m.properties = props;
  return m;
}

function encodeWill(w: StoredWill): Buffer {
  return blob({ topic: w.topic, qos: w.qos, retain: w.retain, delay: w.delay, properties: propsOut(w.properties) }, w.payload);
}

function decodeWill(buf: Buffer): StoredWill {
  const { header: h, payload } = unblob(buf);
  const w: StoredWill = {
    topic: h.topic as string,
    payload,
    qos: h.qos as QoS,
    retain: h.retain as boolean,
    delay: h.delay as number,
  };
  const props = propsIn(h.properties);
  if (props !== undefined) w.properties = props;
  return w;
}

/** Session record -> flat [field, value, ...] for HSET. */
export function encodeSession(r: SessionRecord): (string | Buffer)[] {
  const f: (string | Buffer)[] = ["v", String(r.protocolVersion), "x", String(r.expiryInterval)];
  if (r.disconnectedAt !== undefined) f.push("d", String(r.disconnectedAt));
  if (r.node !== undefined) f.push("n", r.node);
  if (r.willAt !== undefined) f.push("wa", String(r.willAt));
  if (r.will !== undefined) f.push("w", encodeWill(r.will));
  if (r.username !== undefined) f.push("u", r.username);
  return f;
}

export function decodeSession(clientId: string, h: Record<string, Buffer>): SessionRecord | undefined {
  if (h.v === undefined) return undefined;
  const r: SessionRecord = {
    clientId,
    protocolVersion: Number(h.v.toString()),
    expiryInterval: Number(h.x.toString()),
  };
  if (h.d !== undefined) r.disconnectedAt = Number(h.d.toString());
  if (h.n !== undefined) r.node = h.n.toString();
  if (h.wa !== undefined) r.willAt = Number(h.wa.toString());
  if (h.w !== undefined) r.will = decodeWill(h.w);
  if (h.u !== undefined) r.username = h.u.toString();
  return r;
}

export function encodeSubscription(s: StoredSubscription): string {
  const { filter: _filter, ...opts } = s;
  return JSON.stringify(opts);
}

export function decodeSubscription(filter: string, json: string): StoredSubscription {
  return { filter, ...(JSON.parse(json) as SubscriptionOptions) };
}

const STATE_CODE = { queued: "q", sent: "s", released: "r" } as const;
const STATE_NAME = { q: "queued", s: "sent", r: "released" } as const;

/** Outgoing entry without its message: "<qos><retain 0|1><state q|s|r>|<packetId>|<ids,...>". */
export function encodeEntry(e: OutgoingEntry): string {
  const ids = e.subscriptionIds === undefined ? "" : e.subscriptionIds.join(",");
  return `${e.qos}${e.retain ? 1 : 0}${STATE_CODE[e.state]}|${e.packetId ?? ""}|${ids}`;
}

export function decodeEntry(meta: string, msg: StoredMessage): OutgoingEntry {
  const bar1 = meta.indexOf("|", 3);
  const bar2 = meta.indexOf("|", bar1 + 1);
  const e: OutgoingEntry = {
    msg,
    qos: Number(meta[0]) as QoS,
    retain: meta[1] === "1",
    state: STATE_NAME[meta[2] as keyof typeof STATE_NAME],
  };
  if (bar2 > bar1 + 1) e.packetId = Number(meta.slice(bar1 + 1, bar2));
  if (bar2 < meta.length - 1) e.subscriptionIds = meta.slice(bar2 + 1).split(",").map(Number);
  return e;
}
