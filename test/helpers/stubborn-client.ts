/**
 * A client that keeps sending and reads late, run as a process of its own under Bun (whose
 * node:net `pause()` and `allowHalfOpen` really stop reading / keep sending; in-process clients
 * under Deno read eagerly and would hide a TCP reset): what a busy client looks like to a broker
 * that disconnects it. Input on stdin, one JSON object; output one JSON line.
 *
 *   echo '{"first": hex, "burst": hex}' | bun test/helpers/stubborn-client.ts <port> <mode> <pause ms>
 *
 * mode "after-connack": send `first` (a CONNECT), read until one whole packet (the CONNACK) has
 * arrived, stop reading, send `burst`. mode "at-once": stop reading, send `first` and `burst`.
 * Then read nothing for <pause ms>, read until the server closes, and print
 * {"received": hex of every byte after the CONNACK (at-once: every byte), "error": code or null}.
 *
 * mode "flood": half-open (the server's FIN does not end this side), send `first`, then 64 KiB
 * chunks until a write fails or `limit` bytes went out; print {"sent": bytes, "error": code}.
 */
import net from "node:net";
import process from "node:process";
import { Buffer } from "node:buffer";

const [port, mode, pauseText] = process.argv.slice(2);
const pauseMs = Number(pauseText);
const input: Buffer[] = [];
for await (const c of process.stdin) input.push(c as Buffer);
const args = JSON.parse(Buffer.concat(input).toString()) as { first: string; burst?: string; limit?: number };
const first = Buffer.from(args.first, "hex");
const burst = Buffer.from(args.burst ?? "", "hex");

const chunks: Buffer[] = [];
let error: string | null = null;
let connackLen = -1; // bytes of the CONNACK to skip (after-connack mode)
let sent = 0;

const socket = net.connect({ port: Number(port), host: "127.0.0.1", allowHalfOpen: mode === "flood" });
socket.on("error", (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
socket.on("end", () => {});
socket.on("close", () => {
  if (mode === "flood") return;
  const all = Buffer.concat(chunks);
  const received = mode === "after-connack" ? all.subarray(Math.max(0, connackLen)) : all;
  process.stdout.write(JSON.stringify({ received: received.toString("hex"), error }) + "\n");
  process.exit(0);
});

function later() {
  setTimeout(() => socket.resume(), pauseMs);
}

async function flood() {
  socket.write(first);
  const chunk = Buffer.alloc(64 * 1024, 0xc0);
  while (error === null && sent < (args.limit ?? 0)) {
    await new Promise<void>((r) => socket.write(chunk, () => r()));
    sent += chunk.length;
  }
  process.stdout.write(JSON.stringify({ sent, error }) + "\n");
  process.exit(0);
}

socket.on("connect", () => {
  if (mode === "flood") {
    void flood();
  } else if (mode === "at-once") {
    socket.pause();
    socket.write(Buffer.concat([first, burst]));
    later();
  } else {
    socket.write(first);
  }
});

socket.on("data", (d: Buffer) => {
  chunks.push(d);
  if (mode !== "after-connack" || connackLen >= 0) return;
  const all = Buffer.concat(chunks);
  if (all.length < 2 || all.length < 2 + all[1]) return; // CONNACK: one length byte
  connackLen = 2 + all[1];
  socket.pause();
  socket.write(burst);
  later();
});
