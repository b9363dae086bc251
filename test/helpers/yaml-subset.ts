/**
 * A strict reader for the subset of YAML that deploy/compose.yaml is written in (no YAML
 * library is installed and the registry is not used for one): block mappings by two-space
 * indentation, flow sequences `[a, "b"]` and flow mappings `{ k: v }` on one line, plain and
 * double-quoted scalars, comments. Anything else (block sequences, anchors, multi-line
 * strings, tabs, odd indentation, a key twice) throws with its line number, so that the
 * compose file stays readable by this parser and by people.
 */

export type Yaml = string | Yaml[] | { [k: string]: Yaml };

/** One value in flow style starting at s[i]: the value and the index after it. */
function flow(s: string, i: number, where: string): [Yaml, number] {
  const skip = () => {
    while (s[i] === " ") i++;
  };
  skip();
  if (s[i] === "[") {
    const out: Yaml[] = [];
    i++;
    skip();
    if (s[i] === "]") return [out, i + 1];
    for (;;) {
      const [v, j] = flow(s, i, where);
      out.push(v);
      i = j;
      skip();
      if (s[i] === ",") i++;
      else if (s[i] === "]") return [out, i + 1];
      else throw new Error(`${where}: expected ',' or ']' at column ${i + 1}`);
    }
  }
  if (s[i] === "{") {
    const out: Record<string, Yaml> = {};
    i++;
    skip();
    if (s[i] === "}") return [out, i + 1];
    for (;;) {
      skip();
      const m = /^([A-Za-z0-9_.-]+):\s/.exec(s.slice(i));
      if (!m) throw new Error(`${where}: expected 'key: ' at column ${i + 1}`);
      if (m[1] in out) throw new Error(`${where}: key ${m[1]} twice`);
      const [v, j] = flow(s, i + m[0].length, where);
      out[m[1]] = v;
      i = j;
      skip();
      if (s[i] === ",") i++;
      else if (s[i] === "}") return [out, i + 1];
      else throw new Error(`${where}: expected ',' or '}' at column ${i + 1}`);
    }
  }
  if (s[i] === '"') {
    let j = i + 1;
    while (j < s.length && s[j] !== '"') j += s[j] === "\\" ? 2 : 1;
    if (j >= s.length) throw new Error(`${where}: unterminated string`);
    return [JSON.parse(s.slice(i, j + 1)) as string, j + 1];
  }
  const m = /^[^,\]}\s"'&*!|>%@`#[{][^,\]}]*/.exec(s.slice(i));
  if (!m) throw new Error(`${where}: expected a value at column ${i + 1}`);
  return [m[0].trimEnd(), i + m[0].length];
}

/** A scalar or flow value that must take the rest of the line. */
function inline(text: string, where: string): Yaml {
  const [v, end] = flow(text, 0, where);
  if (text.slice(end).trim() !== "") throw new Error(`${where}: unexpected ${JSON.stringify(text.slice(end).trim())}`);
  return v;
}

export function parseYamlSubset(text: string): Record<string, Yaml> {
  const lines = text.split("\n").map((raw, n) => ({ raw, n: n + 1 }))
    .filter(({ raw }) => raw.trim() !== "" && !raw.trimStart().startsWith("#"));
  let pos = 0;
  const block = (indent: number): Record<string, Yaml> => {
    const out: Record<string, Yaml> = {};
    while (pos < lines.length) {
      const { raw, n } = lines[pos];
      const where = `line ${n}`;
      if (/\t/.test(raw)) throw new Error(`${where}: tab`);
      const ind = raw.length - raw.trimStart().length;
      if (ind < indent) return out;
      if (ind !== indent) throw new Error(`${where}: indented ${ind}, expected ${indent}`);
      const m = /^([A-Za-z0-9_.-]+):(?:\s+(.*))?$/.exec(raw.trim());
      if (!m) throw new Error(`${where}: expected 'key:' or 'key: value' (block sequences and other YAML are not used here)`);
      if (m[1] in out) throw new Error(`${where}: key ${m[1]} twice`);
      pos++;
      const rest = m[2]?.replace(/\s+#.*$/, "");
      if (rest !== undefined && rest !== "") out[m[1]] = inline(rest, where);
      else {
        const next = lines[pos];
        const nextInd = next ? next.raw.length - next.raw.trimStart().length : -1;
        if (nextInd <= indent) throw new Error(`${where}: ${m[1]} has no value`);
        if (nextInd !== indent + 2) throw new Error(`line ${next.n}: indented ${nextInd}, expected ${indent + 2}`);
        out[m[1]] = block(indent + 2);
      }
    }
    return out;
  };
  const doc = block(0);
  if (pos < lines.length) throw new Error(`line ${lines[pos].n}: unexpected indentation`);
  return doc;
}
