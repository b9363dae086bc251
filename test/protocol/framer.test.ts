/**
 * The Framer (src/protocol/framer.ts) reassembles packets split over reads in linear time
 * (issue 9 item 2): the bytes it copies, counted by framerStats, stay proportional to the bytes
 * fed however small the reads, where copying everything held on every read was quadratic.
 * Counted bytes, not wall time. And every split of a stream yields the same frames.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { type FrameConsumer, Framer, framerStats } from "../../src/protocol/framer.ts";
import { MqttError } from "../../src/protocol/reason-codes.ts";
import { frame, varint } from "../helpers/frames.ts";

class Collect implements FrameConsumer {
  frames: Array<{ bytes: number[]; bodyStart: number }> = [];
  onFrame(f: Uint8Array, bodyStart: number): boolean {
    this.frames.push({ bytes: [...f], bodyStart });
    return true;
  }
}

/** A PUBLISH frame of about `size` bytes whose payload bytes are not all alike. */
function bigPublish(size: number): Uint8Array {
  const body = [0, 3, 0x61, 0x2f, 0x62];
  for (let i = 0; body.length < size; i++) body.push(i & 255);
  return frame(0x30, body);
}

function feed(f: Framer, bytes: Uint8Array, chunk: number, c: FrameConsumer) {
  for (let p = 0; p < bytes.length; p += chunk) f.push(bytes.subarray(p, p + chunk), c);
}

describe("protocol: Framer", () => {
  it("a 1 MiB packet in 1 KiB reads is copied O(n): at most 2 bytes copied per byte fed (issue 9)", () => {
    const pkt = bigPublish(1 << 20);
    const f = new Framer(16 << 20);
    const c = new Collect();
    const before = framerStats.copied;
    feed(f, pkt, 1024, c);
    const copied = framerStats.copied - before;
    assert.equal(c.frames.length, 1);
    assert.deepEqual(c.frames[0].bytes, [...pkt]);
    // one copy in, plus the doublings (less than the frame); the old quadratic framer copied
    // 1,026 bytes per byte here
    assert.ok(copied <= 2 * pkt.length, `copied ${copied} bytes for a ${pkt.length}-byte packet`);
  });

  it("the same in 1-byte reads (a trickle): still linear", () => {
    const pkt = bigPublish(64 * 1024);
    const f = new Framer(16 << 20);
    const c = new Collect();
    const before = framerStats.copied;
    feed(f, pkt, 1, c);
    assert.equal(c.frames.length, 1);
    assert.deepEqual(c.frames[0].bytes, [...pkt]);
    assert.ok(framerStats.copied - before <= 2 * pkt.length, `copied ${framerStats.copied - before} bytes`);
  });

  it("an announcement alone holds only the bytes received, not the announced size", () => {
    const f = new Framer(16 << 20);
    const before = framerStats.copied;
    const start = Uint8Array.from([0x30, ...varint(15 << 20), 0, 1]);
    f.push(start, new Collect());
    assert.equal(f.buffered, start.length);
    assert.ok(framerStats.copied - before < 16, "the announced 15 MiB were not reserved or copied");
  });

  it("every split of a stream of several packets gives the same frames and body offsets", () => {
    const stream = Uint8Array.from([
      ...frame(0xc0, []),
      ...frame(0x30, [0, 1, 0x74, ...new Array(200).fill(7)]), // Remaining Length in 2 bytes
      ...frame(0x40, [0, 9]),
      ...frame(0x82, [0, 1, 0, 1, 0x61, 1]),
    ]);
    const want = new Collect();
    new Framer(1024).push(stream, want);
    assert.equal(want.frames.length, 4);
    assert.deepEqual(want.frames.map((x) => x.bodyStart), [2, 3, 2, 2]);
    for (let a = 1; a < stream.length; a++) {
      for (const b of [a + 1, a + 2, a + 7]) {
        if (b >= stream.length) continue;
        const got = new Collect();
        const f = new Framer(1024);
        f.push(stream.subarray(0, a), got);
        f.push(stream.subarray(a, b), got);
        f.push(stream.subarray(b), got);
        assert.deepEqual(got.frames, want.frames, `split at ${a} and ${b}`);
        assert.equal(f.buffered, 0);
      }
    }
  });

  it("a packet over the limit is refused from its fixed header: 0x95, nothing held", () => {
    const f = new Framer(1000);
    assert.throws(() => f.push(Uint8Array.from([0x30, ...varint(5000)]), new Collect()), (e) => e instanceof MqttError && e.code === 0x95);
  });

  it("a Remaining Length of 5 bytes or not in its shortest form is malformed: 0x81 [MQTT-1.5.5-1]", () => {
    for (const bad of [[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], [0x30, 0x80, 0x00], [0xc0, 0x80, 0x80, 0x00]]) {
      assert.throws(() => new Framer(1 << 20).push(Uint8Array.from(bad), new Collect()), (e) => e instanceof MqttError && e.code === 0x81, `${bad}`);
    }
  });

  it("a paused consumer: the rest is held unframed, take() gives it back whole", () => {
    const f = new Framer(1024);
    let n = 0;
    const pausing: FrameConsumer = { onFrame: () => ++n > 1 ? true : false };
    const stream = Uint8Array.from([...frame(0xc0, []), ...frame(0xc0, []), 0xc0]);
    f.push(stream, pausing);
    assert.equal(n, 1);
    f.append(Uint8Array.of(0x00));
    assert.deepEqual([...f.take()!], [0xc0, 0, 0xc0, 0]);
    assert.equal(f.buffered, 0);
  });
});
