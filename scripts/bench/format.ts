/** Human-readable numbers for the tables. */
import { type Unit } from "./scenarios.ts";

function sig(n: number): string {
  const a = Math.abs(n);
  return a >= 100 ? n.toFixed(0) : a >= 10 ? n.toFixed(1) : n.toFixed(2);
}

export function formatValue(v: number, unit: Unit): string {
  if (!Number.isFinite(v)) return "–";
  switch (unit) {
    case "msg/s":
    case "deliveries/s":
      return v >= 1e6 ? `${sig(v / 1e6)}M` : v >= 1e3 ? `${sig(v / 1e3)}k` : sig(v);
    case "µs":
      return v >= 1000 ? `${sig(v / 1000)} ms` : `${v.toFixed(0)} µs`;
    case "KB/conn":
      return `${sig(v)} KB`;
    case "MB":
      return `${sig(v)} MB`;
    case "s":
      return `${sig(v)} s`;
    case "ms":
      return `${sig(v)} ms`;
    case "ratio":
      return `×${v.toFixed(2)}`;
    case "cmd/msg":
      return `${sig(v)} cmd/msg`;
    case "B/msg":
      return `${sig(v)} B/msg`;
  }
}

/** "1.04–4.16 ms": the unit once when both ends share it. */
export function formatRange(min: number, max: number, unit: Unit): string {
  const a = formatValue(min, unit);
  const b = formatValue(max, unit);
  const sp = a.lastIndexOf(" ");
  if (sp > 0 && b.endsWith(a.slice(sp))) return `${a.slice(0, sp)}–${b}`;
  return `${a}–${b}`;
}

export function formatRatio(r: number): string {
  if (!Number.isFinite(r)) return "";
  return `×${r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(2) : r.toFixed(2)}`;
}

export function formatPct(v: number | undefined): string {
  return v === undefined || !Number.isFinite(v) ? "–" : `${v.toFixed(0)} %`;
}

export function formatMb(kb: number | undefined): string {
  return kb === undefined || !Number.isFinite(kb) ? "–" : `${(kb / 1024).toFixed(0)} MB`;
}
