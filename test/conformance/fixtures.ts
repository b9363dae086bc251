/** Builders and helpers shared by the persistence conformance suite. */
import { it } from "node:test";
import type {
  OutgoingEntry,
  Persistence,
  SessionRecord,
  StoredMessage,
} from "../../src/persistence/persistence.ts";

export interface PersistenceSuiteOptions {
  /** Runs once after the whole suite (e.g. delete every key the run created). */
  cleanup?: () => Promise<void>;
  /** A second instance on the same store as `p` (shared stores: enables the peer tests). */
  peer?: (p: Persistence) => Promise<Persistence>;
  /** Keys/containers the store behind `p` holds (enables the no-orphan tests). */
  countKeys?: (p: Persistence) => Promise<number>;
  /** Message bodies the store behind `p` holds (enables the stored-once tests). */
  countBodies?: (p: Persistence) => Promise<number>;
  /**
   * Copies of a body a message queued for these sessions costs (default 1: stored once). A
   * store partitioned by session (Redis Cluster: once per session group) says how many.
   */
  bodyCopies?: (clientIds: string[]) => number;
}

export type Make = () => Promise<Persistence>;

/** Run `fn` against a fresh, empty store, closing it afterwards. */
export async function withStore(make: Make, fn: (p: Persistence) => Promise<void>): Promise<void> {
  const p = await make();
  try {
    await fn(p);
  } finally {
    await p.close();
  }
}

type Body = (p: Persistence) => Promise<void>;
type TestOptions = { skip?: string | false };

/**
 * `it` with a fresh store per test: t(title, fn) or t(title, { skip }, fn). A case that needs
 * a hook the backend does not offer (`skip` names it) is not registered at all, so the suite
 * never reports skipped tests: it runs what the backend can be asked.
 */
export function storeTest(make: Make): {
  (title: string, fn: Body): void;
  (title: string, options: TestOptions, fn: Body): void;
} {
  return (title: string, a: Body | TestOptions, b?: Body): void => {
    if (typeof a !== "function" && a.skip) return;
    const fn = typeof a === "function" ? a : b!;
    it(title, () => withStore(make, fn));
  };
}

let seq = 0;

export function msg(over: Partial<StoredMessage> = {}): StoredMessage {
  seq++;
  return {
    id: `n1:${seq}`,
    topic: "t/x",
    payload: new TextEncoder().encode(`m${seq}`),
    qos: 1,
    retain: false,
    receivedAt: 1_700_000_000_000 + seq,
    ...over,
  };
}

export function entry(m: StoredMessage, over: Partial<OutgoingEntry> = {}): OutgoingEntry {
  return { msg: m, qos: m.qos, retain: false, state: "queued", ...over };
}

export function session(clientId: string, over: Partial<SessionRecord> = {}): SessionRecord {
  return { clientId, protocolVersion: 5, expiryInterval: 3600, ...over };
}

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** Every byte value, bytes that are not valid UTF-8, and a NUL. */
export function awkwardBytes(): Uint8Array {
  const b = new Uint8Array(256 + 6);
  for (let i = 0; i < 256; i++) b[i] = i;
  b.set([0xc3, 0x28, 0xff, 0xfe, 0x0a, 0x00], 256);
  return b;
}

export function ids(list: OutgoingEntry[]): string[] {
  return list.map((e) => e.msg.id);
}

/** Milliseconds a promise took to settle, and whether it rejected. */
export async function timed(p: Promise<unknown>): Promise<{ ms: number; error?: Error }> {
  const t0 = Date.now();
  try {
    await p;
    return { ms: Date.now() - t0 };
  } catch (e) {
    return { ms: Date.now() - t0, error: e as Error };
  }
}
