/**
 * The Prometheus text exposition format (version 0.0.4): for each metric family a `# HELP`
 * and a `# TYPE` line, then its samples `name{label="value"} number`. Label values escape
 * backslash, double quote and newline; HELP text escapes backslash and newline.
 */
import type { Histogram } from "./histogram.ts";

export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export type Labels = Record<string, string>;
export type Sample = [Labels, number] | number;

const escLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
const escHelp = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");

function num(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function labels(l: Labels | undefined): string {
  if (l === undefined) return "";
  const parts = Object.entries(l).map(([k, v]) => `${k}="${escLabel(v)}"`);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

export class Exposition {
  private lines: string[] = [];

  private head(name: string, type: string, help: string) {
    this.lines.push(`# HELP ${name} ${escHelp(help)}`, `# TYPE ${name} ${type}`);
  }

  private samples(name: string, samples: Sample | Sample[]) {
    const list = Array.isArray(samples) && (samples.length === 0 || Array.isArray(samples[0])) ? samples as Sample[] : [samples as Sample];
    for (const s of list) {
      if (typeof s === "number") this.lines.push(`${name} ${num(s)}`);
      else this.lines.push(`${name}${labels(s[0])} ${num(s[1])}`);
    }
  }

  /** A value that only goes up (name ends in _total). */
  counter(name: string, help: string, samples: Sample | Sample[]): this {
    this.head(name, "counter", help);
    this.samples(name, samples);
    return this;
  }

  gauge(name: string, help: string, samples: Sample | Sample[]): this {
    this.head(name, "gauge", help);
    this.samples(name, samples);
    return this;
  }

  histogram(name: string, help: string, h: Histogram, l?: Labels): this {
    this.head(name, "histogram", help);
    let cum = 0;
    for (let i = 0; i < h.bounds.length; i++) {
      cum += h.counts[i];
      this.lines.push(`${name}_bucket${labels({ ...l, le: num(h.bounds[i]) })} ${cum}`);
    }
    cum += h.counts[h.bounds.length];
    this.lines.push(`${name}_bucket${labels({ ...l, le: "+Inf" })} ${cum}`);
    this.lines.push(`${name}_sum${labels(l)} ${num(h.sum)}`, `${name}_count${labels(l)} ${h.count}`);
    return this;
  }

  toString(): string {
    return this.lines.join("\n") + "\n";
  }
}
