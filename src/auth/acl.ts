/**
 * Mosquitto ACL semantics (Mosquitto 2.0's acl_file check) as an Authorizer.
 *
 * A check of (client, topic, read or write) walks, in order:
 *   1. the client's own rules (its `user` section; the anonymous section without a user name),
 *      deny rules first: the first rule whose filter matches the topic decides when it is a deny
 *      (refused) or grants the access asked (allowed); a matching rule that grants only the other
 *      access does not decide;
 *   2. when there are patterns and the client id or user name holds '+' or '#': refused (a client
 *      must not widen a pattern with a wildcard in its own name);
 *   3. the patterns, deny rules first, with every "%c" replaced by the client id and every "%u" by
 *      the user name (text substitution, as Mosquitto 2.0 does; a pattern with %u does not apply to
 *      a client without a user name), decided as in 1;
 *   4. nothing decided: refused.
 * Filters match topics with the usual rules, `$`-topics only by filters that start with '$'.
 *
 * The check runs per delivery (a subscription to '#' never receives a topic its client may not
 * read), so each client's answers are cached per topic (ClientAcl.cache, bounded); the cache is
 * per Permissions object, which the broker replaces when the rules change.
 *
 * SUBSCRIBE: Mosquitto grants every subscription and filters each delivery. Colibri filters each
 * delivery the same way and, beyond that, refuses a filter under which the client can read
 * nothing at all (no read rule overlaps it, or the overlap is inside one deny rule checked before
 * that read rule), so that the client is told (0x87 / 0x80) instead of waiting forever.
 */
import type { Authorizer, Identity, Permissions } from "./auth.ts";
import { type AclFile, type AclRule, DENY, READ, WRITE } from "./acl-file.ts";

/** A rule ready to match: its filter split into levels once. */
interface Compiled {
  readonly levels: string[];
  readonly access: number;
  /** The rule list it came from (0: the client's own rules, 1: patterns): for canSubscribe. */
  readonly group: 0 | 1;
}

function compile(rules: AclRule[], group: 0 | 1, id?: Identity): Compiled[] {
  const out: Compiled[] = [];
  for (const r of rules) {
    let topic = r.topic;
    if (id !== undefined) {
      if (id.username === undefined && topic.includes("%u")) continue;
      // one pass, left to right: a name holding "%c" is not substituted again
      topic = topic.replace(/%[cu]/g, (m) => (m === "%c" ? id.clientId : id.username!));
    }
    out.push({ levels: topic.split("/"), access: r.access, group });
  }
  return out;
}

/** Whether a topic (split into levels) matches a filter, with the `$`-rule. */
function matches(f: string[], t: string[], dollar: boolean): boolean {
  if (dollar && (f[0] === "+" || f[0] === "#")) return false;
  const n = f.length;
  for (let i = 0; i < n; i++) {
    const l = f[i];
    if (l === "#") return true; // also the parent level
    if (i >= t.length) return false;
    if (l !== "+" && l !== t[i]) return false;
  }
  return n === t.length;
}

const isWild = (l: string) => l === "+" || l === "#";
const dollarLiteral = (l: string) => l.charCodeAt(0) === 0x24;

/** The filter matching exactly the topics both filters match, or undefined when none. */
export function intersect(a: string[], b: string[]): string[] | undefined {
  const out: string[] = [];
  for (let i = 0; ; i++) {
    const x = a[i], y = b[i];
    if (i === 0 && x !== undefined && y !== undefined &&
      ((isWild(x) && dollarLiteral(y)) || (isWild(y) && dollarLiteral(x)))) return undefined;
    if (x === undefined && y === undefined) return out;
    // one filter ended: only a trailing '#' of the other matches that parent level
    if (x === undefined) return y === "#" && i === b.length - 1 ? out : undefined;
    if (y === undefined) return x === "#" && i === a.length - 1 ? out : undefined;
    if (x === "#") return out.concat(b.slice(i));
    if (y === "#") return out.concat(a.slice(i));
    if (x === "+") out.push(y);
    else if (y === "+" || y === x) out.push(x);
    else return undefined;
  }
}

/** Whether every topic `g` matches is matched by `d`. */
export function covers(d: string[], g: string[]): boolean {
  if (g.length > 0 && d.length > 0 && isWild(d[0]) && dollarLiteral(g[0])) return false;
  for (let i = 0; ; i++) {
    const x = d[i], y = g[i];
    if (x === "#") return true;
    if (x === undefined) return y === undefined;
    if (y === undefined || y === "#") return false;
    if (x !== "+" && (y === "+" || y !== x)) return false;
  }
}

const CACHE_LIMIT = 4096;
const R_KNOWN = 1, R_OK = 2, W_KNOWN = 4, W_OK = 8;

/** One client's compiled rules and its cached answers. */
class ClientAcl implements Permissions {
  private cache = new Map<string, number>();

  constructor(private readonly own: Compiled[], private readonly patterns: Compiled[]) {}

  private decide(topic: string, access: number): boolean {
    const t = topic.split("/");
    const dollar = topic.charCodeAt(0) === 0x24;
    for (const list of [this.own, this.patterns]) {
      for (const r of list) {
        if (!matches(r.levels, t, dollar)) continue;
        if (r.access === DENY) return false;
        if ((r.access & access) !== 0) return true;
      }
    }
    return false;
  }

  private check(topic: string, access: number): boolean {
    const known = access === READ ? R_KNOWN : W_KNOWN;
    const ok = access === READ ? R_OK : W_OK;
    let bits = this.cache.get(topic) ?? 0;
    if ((bits & known) === 0) {
      bits |= known | (this.decide(topic, access) ? ok : 0);
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(topic, bits);
    }
    return (bits & ok) !== 0;
  }

  canRead(topic: string): boolean {
    return this.check(topic, READ);
  }

  canPublish(topic: string): boolean {
    return this.check(topic, WRITE);
  }

  canSubscribe(filter: string): boolean {
    const f = filter.split("/");
    const order = [...this.own, ...this.patterns];
    for (let i = 0; i < order.length; i++) {
      const r = order[i];
      if ((r.access & READ) === 0) continue;
      const g = intersect(f, r.levels);
      if (g === undefined) continue;
      // refused only if that overlap is wholly inside a deny rule checked before this rule
      let hidden = false;
      for (let j = 0; j < i && !hidden; j++) hidden = order[j].access === DENY && covers(order[j].levels, g);
      if (!hidden) return true;
    }
    return false;
  }
}

/** Nothing is allowed (client rules and patterns both empty, or a dangerous name). */
const NOTHING: Permissions = Object.freeze({ canPublish: () => false, canRead: () => false, canSubscribe: () => false });

export class FileAcl implements Authorizer {
  constructor(private readonly file: AclFile) {}

  permissions(id: Identity): Permissions {
    const f = this.file;
    const own = compile(id.username === undefined ? f.anonymous : f.users.get(id.username) ?? [], 0);
    const dangerous = f.patterns.length > 0 &&
      (/[+#]/.test(id.clientId) || (id.username !== undefined && /[+#]/.test(id.username)));
    const patterns = dangerous ? [] : compile(f.patterns, 1, id);
    if (own.length === 0 && patterns.length === 0) return NOTHING;
    return new ClientAcl(own, patterns);
  }
}

export { READ, WRITE };
