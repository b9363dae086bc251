/**
 * A strict parser of the Prometheus text exposition format (0.0.4), for tests that scrape
 * /metrics: it throws, naming the line, on anything a Prometheus server would reject or that
 * the format's rules forbid (a sample before its family's TYPE, a bad name or label, an
 * unescaped quote, a value that is not a number, a series twice, a counter not ending in
 * _total, histogram buckets out of order or not cumulative, a +Inf bucket unlike _count).
 */

export interface Series {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  help: string;
  samples: Series[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

function parseValue(s: string, where: string): number {
  if (s === "+Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  if (s === "NaN") return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new Error(`${where}: value ${JSON.stringify(s)} is not a number`);
  return Number(s);
}

/** `{a="x",b="y\"z"}` starting at s[i] === "{": the labels and the index after "}". */
function parseLabels(s: string, i: number, where: string): [Record<string, string>, number] {
  const labels: Record<string, string> = {};
  i++; // {
  for (;;) {
    if (s[i] === "}") return [labels, i + 1];
    const eq = s.indexOf("=", i);
    if (eq < 0) throw new Error(`${where}: label without '='`);
    const name = s.slice(i, eq);
    if (!LABEL.test(name) || name.startsWith("__")) throw new Error(`${where}: bad label name ${JSON.stringify(name)}`);
    if (name in labels) throw new Error(`${where}: label ${name} twice`);
    if (s[eq + 1] !== '"') throw new Error(`${where}: label ${name} value not quoted`);
    let j = eq + 2;
    let v = "";
    for (;;) {
      const c = s[j];
      if (c === undefined) throw new Error(`${where}: unterminated label value`);
      if (c === '"') break;
      if (c === "\\") {
        const n = s[j + 1];
        if (n === "\\") v += "\\";
        else if (n === '"') v += '"';
        else if (n === "n") v += "\n";
        else throw new Error(`${where}: bad escape \\${n} in a label value`);
        j += 2;
        continue;
      }
      if (c === "\n") throw new Error(`${where}: newline in a label value`);
      v += c;
      j++;
    }
    labels[name] = v;
    i = j + 1;
    if (s[i] === ",") i++;
    else if (s[i] !== "}") throw new Error(`${where}: expected ',' or '}' after label ${name}`);
  }
}

/** The family a sample name belongs to (histogram and summary samples carry suffixes). */
function familyOf(sample: string, families: Map<string, Family>): Family | undefined {
  const direct = families.get(sample);
  if (direct) return direct;
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!sample.endsWith(suffix)) continue;
    const f = families.get(sample.slice(0, -suffix.length));
    if (f && (f.type === "histogram" || (f.type === "summary" && suffix !== "_bucket"))) return f;
  }
  return undefined;
}

export function parseExposition(text: string): Map<string, Family> {
  if (!text.endsWith("\n")) throw new Error("exposition does not end with a newline");
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  const lines = text.slice(0, -1).split("\n");
  let pendingHelp: { name: string; help: string } | undefined;
  lines.forEach((line, n) => {
    const where = `line ${n + 1} (${JSON.stringify(line.slice(0, 80))})`;
    if (line === "") throw new Error(`${where}: empty line`);
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) throw new Error(`${where}: a comment that is neither HELP nor TYPE`);
      const [, kind, name, rest] = m;
      if (!NAME.test(name)) throw new Error(`${where}: bad metric name`);
      if (kind === "HELP") {
        if (families.has(name) || pendingHelp) throw new Error(`${where}: HELP out of place`);
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ""))) throw new Error(`${where}: bad escape in HELP`);
        pendingHelp = { name, help: rest.replace(/\\n/g, "\n").replace(/\\\\/g, "\\") };
        return;
      }
      if (!TYPES.has(rest)) throw new Error(`${where}: unknown type ${rest}`);
      if (families.has(name)) throw new Error(`${where}: TYPE of ${name} twice`);
      if (!pendingHelp || pendingHelp.name !== name) throw new Error(`${where}: TYPE without its HELP line before it`);
      if (rest === "counter" && !name.endsWith("_total")) throw new Error(`${where}: counter ${name} does not end in _total`);
      families.set(name, { name, type: rest as Family["type"], help: pendingHelp.help, samples: [] });
      pendingHelp = undefined;
      return;
    }
    if (pendingHelp) throw new Error(`${where}: sample after a HELP without TYPE`);
    const nameEnd = line.search(/[{ ]/);
    if (nameEnd <= 0) throw new Error(`${where}: no sample name`);
    const name = line.slice(0, nameEnd);
    if (!NAME.test(name)) throw new Error(`${where}: bad sample name`);
    let labels: Record<string, string> = {};
    let i = nameEnd;
    if (line[i] === "{") [labels, i] = parseLabels(line, i, where);
    if (line[i] !== " ") throw new Error(`${where}: expected one space before the value`);
    const parts = line.slice(i + 1).split(" ");
    if (parts.length > 2 || parts[0] === "") throw new Error(`${where}: expected 'value [timestamp]'`);
    const value = parseValue(parts[0], where);
    const f = familyOf(name, families);
    if (!f) throw new Error(`${where}: sample of ${name} before (or without) its TYPE line`);
    if (f.samples.length > 0 && familyOf(lines[n - 1].split(/[{ ]/)[0], families) !== f) {
      throw new Error(`${where}: samples of ${f.name} are not together`);
    }
    const key = name + JSON.stringify(Object.entries(labels).sort());
    if (seen.has(key)) throw new Error(`${where}: series twice`);
    seen.add(key);
    if (f.type === "counter" && !(value >= 0)) throw new Error(`${where}: negative counter`);
    f.samples.push({ name, labels, value });
  });
  if (pendingHelp) throw new Error(`HELP for ${pendingHelp.name} without TYPE at the end`);
  for (const f of families.values()) if (f.type === "histogram") checkHistogram(f);
  return families;
}

function checkHistogram(f: Family): void {
  const groups = new Map<string, Series[]>();
  for (const s of f.samples) {
    const { le: _le, ...rest } = s.labels;
    const k = JSON.stringify(Object.entries(rest).sort());
    (groups.get(k) ?? groups.set(k, []).get(k)!).push(s);
  }
  for (const list of groups.values()) {
    const buckets = list.filter((s) => s.name === `${f.name}_bucket`);
    const count = list.find((s) => s.name === `${f.name}_count`);
    const sum = list.find((s) => s.name === `${f.name}_sum`);
    if (!count || !sum || buckets.length === 0) throw new Error(`histogram ${f.name}: needs _bucket, _sum and _count`);
    let lastLe = -Infinity;
    let lastCount = 0;
    for (const b of buckets) {
      if (b.labels.le === undefined) throw new Error(`histogram ${f.name}: bucket without le`);
      const le = parseValue(b.labels.le, `${f.name} le`);
      if (!(le > lastLe)) throw new Error(`histogram ${f.name}: le ${b.labels.le} out of order`);
      if (b.value < lastCount) throw new Error(`histogram ${f.name}: bucket le=${b.labels.le} not cumulative`);
      lastLe = le;
      lastCount = b.value;
    }
    if (lastLe !== Infinity) throw new Error(`histogram ${f.name}: no +Inf bucket`);
    if (lastCount !== count.value) throw new Error(`histogram ${f.name}: +Inf bucket ${lastCount} != _count ${count.value}`);
  }
}

/** The value of one series (labels must match exactly); throws when it is not there. */
export function valueOf(fams: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const f = familyOf(name, fams);
  const want = JSON.stringify(Object.entries(labels).sort());
  const s = f?.samples.find((x) => x.name === name && JSON.stringify(Object.entries(x.labels).sort()) === want);
  if (!s) throw new Error(`no series ${name}${JSON.stringify(labels)} in the scrape`);
  return s.value;
}
