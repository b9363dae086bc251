/**
 * A trie of topic filters, one level per node, with `+` and `#` children kept apart so a
 * match walks at most (levels x 3) branches, never the whole table. Values are keyed (one
 * value per key per filter: a client id, or a node id in a cluster route table).
 * The `$`-rule [MQTT-4.7.2-1] is applied at the root: a topic starting with `$` does not
 * descend into the root's `+` or `#`.
 */
class TrieNode<V> {
  children: Map<string, TrieNode<V>> | undefined;
  plus: TrieNode<V> | undefined;
  hash: TrieNode<V> | undefined;
  values: Map<string, V> | undefined;

  isEmpty(): boolean {
    return !this.values?.size && !this.children?.size && !this.plus && !this.hash;
  }
}

export class TopicTrie<V> {
  private root = new TrieNode<V>();

  /** Insert or replace; returns true when the key was new for this filter. */
  add(filter: string, key: string, value: V): boolean {
    let node = this.root;
    for (const level of filter.split("/")) {
      if (level === "+") node = node.plus ??= new TrieNode();
      else if (level === "#") node = node.hash ??= new TrieNode();
      else {
        const ch = node.children ??= new Map();
        let next = ch.get(level);
        if (!next) ch.set(level, next = new TrieNode());
        node = next;
      }
    }
    const values = node.values ??= new Map();
    const isNew = !values.has(key);
    values.set(key, value);
    return isNew;
  }

  get(filter: string, key: string): V | undefined {
    let node: TrieNode<V> | undefined = this.root;
    for (const level of filter.split("/")) {
      if (!node) return undefined;
      node = level === "+" ? node.plus : level === "#" ? node.hash : node.children?.get(level);
    }
    return node?.values?.get(key);
  }

  /** Remove; prunes empty branches. Returns true when something was removed. */
  remove(filter: string, key: string): boolean {
    const levels = filter.split("/");
    const path: Array<[TrieNode<V>, string]> = [];
    let node: TrieNode<V> | undefined = this.root;
    for (const level of levels) {
      path.push([node, level]);
      node = level === "+" ? node.plus : level === "#" ? node.hash : node.children?.get(level);
      if (!node) return false;
    }
    if (!node.values?.delete(key)) return false;
    // prune
    for (let i = path.length - 1; i >= 0 && node.isEmpty(); i--) {
      const [parent, level] = path[i];
      if (level === "+") parent.plus = undefined;
      else if (level === "#") parent.hash = undefined;
      else parent.children!.delete(level);
      node = parent;
    }
    return true;
  }

  /**
   * Call fn for every (key, value) whose filter matches a topic name. The walk keeps its own
   * stack instead of recursing per level: a topic may have thousands of levels (up to
   * --max-topic-levels; the trie itself sets no limit), the call stack may not.
   */
  match(topic: string, fn: (key: string, value: V) => void): void {
    const levels = topic.split("/");
    const n = levels.length;
    const dollar = topic.charCodeAt(0) === 0x24;
    // pending (node, level index) pairs; each step pushes at most two, so the stack stays
    // within levels + 1 entries per branch taken
    const nodes: TrieNode<V>[] = [this.root];
    const depth: number[] = [0];
    while (nodes.length > 0) {
      const node = nodes.pop()!;
      const i = depth.pop()!;
      const skipWild = dollar && i === 0;
      // '#' matches this level and everything below, including the parent level [MQTT-4.7.1-2]
      if (node.hash && !skipWild) emit(node.hash, fn);
      if (i === n) {
        if (node.values) emit(node, fn);
        continue;
      }
      // '+' pushed first so that the literal child is walked first
      if (node.plus && !skipWild) {
        nodes.push(node.plus);
        depth.push(i + 1);
      }
      const child = node.children?.get(levels[i]);
      if (child) {
        nodes.push(child);
        depth.push(i + 1);
      }
    }
  }
}

function emit<V>(node: TrieNode<V>, fn: (k: string, v: V) => void) {
  if (node.values) for (const [k, v] of node.values) fn(k, v);
}
