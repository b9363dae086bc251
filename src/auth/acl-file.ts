/**
 * Mosquitto ACL files (mosquitto.conf(5), acl_file), read with Mosquitto 2.0's rules:
 *
 *   # comment (a '#' in the first column)
 *   topic [read|write|readwrite|deny] <topic>     no access word: readwrite
 *   user <username>                               the topic lines after it are that user's
 *   pattern [read|write|readwrite|deny] <topic>   for every client, %c = client id, %u = user name
 *
 * `topic` lines before the first `user` line are the anonymous clients' (no user name). Words are
 * separated by spaces; the topic is the rest of the line (it may contain spaces), so `topic foo`
 * grants readwrite on "foo" and `topic read` grants readwrite on "read", as in Mosquitto. A user
 * named twice collects the rules of both sections. Within a user's (or the anonymous) rules and
 * within the patterns, deny rules are checked before the others; the user's rules come before
 * the patterns (acl.ts). Unknown keywords are skipped with a warning, as Mosquitto skips them;
 * an invalid access word or topic filter is an error naming the line.
 */
import { topicFilterError } from "../routing/topic.ts";

export const READ = 1;
export const WRITE = 2;
/** `deny`: the rule refuses read and write. */
export const DENY = 0;

export interface AclRule {
  /** The topic filter as written (patterns: with %c / %u still in it). */
  readonly topic: string;
  /** READ | WRITE, or DENY. */
  readonly access: number;
}

export interface AclFile {
  /** Rules of clients without a user name (the lines before the first `user`). */
  readonly anonymous: AclRule[];
  readonly users: Map<string, AclRule[]>;
  readonly patterns: AclRule[];
  readonly warnings: string[];
}

export class AclFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AclFileError";
  }
}

const ACCESS: Record<string, number> = { read: READ, write: WRITE, readwrite: READ | WRITE, deny: DENY };

/** Deny rules first (any matching deny refuses), the others in file order. */
function add(list: AclRule[], rule: AclRule): void {
  if (rule.access === DENY) {
    let i = 0;
    while (i < list.length && list[i].access === DENY) i++;
    list.splice(i, 0, rule);
  } else list.push(rule);
}

export function parseAclFile(text: string): AclFile {
  const anonymous: AclRule[] = [];
  const users = new Map<string, AclRule[]>();
  const patterns: AclRule[] = [];
  const warnings: string[] = [];
  let current: AclRule[] = anonymous;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].replace(/\s+$/, "");
    const at = `line ${i + 1}`;
    if (line === "" || line[0] === "#") continue;
    const words = line.split(" ");
    let w = 0;
    while (w < words.length && words[w] === "") w++;
    const keyword = words[w];
    if (keyword === undefined) continue;
    const rest = () => words.slice(w + 1).join(" ").replace(/^ +/, "");
    if (keyword === "user") {
      const name = rest();
      if (name === "") throw new AclFileError(`${at}: "user" without a user name`);
      let list = users.get(name);
      if (!list) users.set(name, list = []);
      current = list;
      continue;
    }
    if (keyword !== "topic" && keyword !== "pattern") {
      warnings.push(`${at}: unknown keyword ${JSON.stringify(keyword)} skipped (expected topic, pattern or user)`);
      continue;
    }
    let r = w + 1;
    while (r < words.length && words[r] === "") r++;
    const first = words[r];
    if (first === undefined) throw new AclFileError(`${at}: "${keyword}" without a topic`);
    const after = words.slice(r + 1).join(" ").replace(/^ +/, "");
    let access = READ | WRITE;
    let topic = first;
    if (after !== "") {
      if (!(first in ACCESS)) {
        throw new AclFileError(`${at}: invalid access ${JSON.stringify(first)}: expected read, write, readwrite or deny`);
      }
      access = ACCESS[first];
      topic = after;
    }
    const bad = topicFilterError(topic);
    if (bad) throw new AclFileError(`${at}: invalid topic ${JSON.stringify(topic)}: ${bad}`);
    if (keyword === "pattern") {
      if (!topic.includes("%c") && !topic.includes("%u")) warnings.push(`${at}: pattern ${JSON.stringify(topic)} has no %c or %u`);
      add(patterns, { topic, access });
    } else add(current, { topic, access });
  }
  return { anonymous, users, patterns, warnings };
}
