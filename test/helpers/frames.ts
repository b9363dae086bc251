/**
 * Hand-made packet bytes, for what mqtt-packet refuses to generate (malformed, reserved bits,
 * wrong protocol names), and the shared "closed without a word" assertion.
 */
import assert from "node:assert/strict";
import type { RawClient } from "./raw-client.ts";

export const u16 = (n: number): number[] => [n >> 8, n & 255];
export const bytes = (s: string): number[] => [...new TextEncoder().encode(s)];
/** A length-prefixed UTF-8 string (or raw bytes). */
export const str = (s: string | number[]): number[] => {
  const b = typeof s === "string" ? bytes(s) : s;
  return [...u16(b.length), ...b];
};

export function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let d = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) d |= 128;
    out.push(d);
  } while (n > 0);
  return out;
}

/** Fixed header (first byte + remaining length) around a body. */
export const frame = (first: number, body: number[]): Uint8Array => Uint8Array.from([first, ...varint(body.length), ...body]);

/** The server closed the connection and sent nothing at all before. */
export async function expectSilentClose(c: RawClient): Promise<void> {
  await c.waitClose();
  assert.equal(c.unread.length, 0, `expected no packet before the close, got ${c.unread.length}`);
}
