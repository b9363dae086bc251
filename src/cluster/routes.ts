/**
 * The other nodes' routes: filter -> nodes, the cluster route table as this node sees it
 * (its own routes are its Router's). A publish asks `match(topic)` which nodes hold an
 * ordinary subscription that matches, and which nodes hold members of each matching shared
 * group. Matches are cached per topic and the cache is dropped on every change, as the
 * Router does.
 */
import { TopicTrie } from "../routing/topic-trie.ts";
import { parseShared } from "../routing/topic.ts";

export interface RemoteMatch {
  /** Nodes with an ordinary subscription matching the topic. */
  nodes: string[];
  /** `$share/{group}/{filter}` -> nodes with members of that group. */
  shares: Map<string, string[]>;
}

const NONE: RemoteMatch = Object.freeze({ nodes: [], shares: new Map() }) as RemoteMatch;
const CACHE_LIMIT = 10_000;

export class RemoteRoutes {
  private plain = new TopicTrie<string>();
  /** inner filter -> key `${share}\0${node}` -> [share, node] */
  private shared = new TopicTrie<[string, string]>();
  private byNode = new Map<string, Set<string>>();
  private cache = new Map<string, RemoteMatch>();

  /** How many (node, filter) routes are known. */
  get size(): number {
    let n = 0;
    for (const s of this.byNode.values()) n += s.size;
    return n;
  }

  nodes(): string[] {
    return [...this.byNode.keys()];
  }

  filtersOf(node: string): string[] {
    return [...(this.byNode.get(node) ?? [])];
  }

  add(node: string, filter: string): void {
    let set = this.byNode.get(node);
    if (!set) this.byNode.set(node, set = new Set());
    if (set.has(filter)) return;
    set.add(filter);
    this.cache.clear();
    const share = parseShared(filter);
    if (share instanceof Error) return;
    if (share) this.shared.add(share.filter, `${filter}\0${node}`, [filter, node]);
    else this.plain.add(filter, node, node);
  }

  remove(node: string, filter: string): void {
    const set = this.byNode.get(node);
    if (!set || !set.delete(filter)) return;
    if (set.size === 0) this.byNode.delete(node);
    this.cache.clear();
    const share = parseShared(filter);
    if (share instanceof Error) return;
    if (share) this.shared.remove(share.filter, `${filter}\0${node}`);
    else this.plain.remove(filter, node);
  }

  /** Replace everything known of one node. */
  reset(node: string, filters: Iterable<string>): void {
    this.dropNode(node);
    for (const f of filters) this.add(node, f);
  }

  dropNode(node: string): void {
    const set = this.byNode.get(node);
    if (!set) return;
    for (const f of [...set]) this.remove(node, f);
  }

  match(topic: string): RemoteMatch {
    if (this.byNode.size === 0) return NONE;
    let m = this.cache.get(topic);
    if (m) return m;
    const nodes = new Set<string>();
    this.plain.match(topic, (node) => nodes.add(node));
    const shares = new Map<string, string[]>();
    this.shared.match(topic, (_k, [share, node]) => {
      const list = shares.get(share);
      if (list) list.push(node);
      else shares.set(share, [node]);
    });
    m = nodes.size === 0 && shares.size === 0 ? NONE : { nodes: [...nodes], shares };
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(topic, m);
    return m;
  }
}
