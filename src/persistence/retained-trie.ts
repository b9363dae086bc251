/**
 * Retained messages in a topic trie: one node per topic level, the message on the node of its
 * last level. A lookup walks level by level: a literal level follows one child, `+` every
 * child, `#` the whole subtree including the node it hangs from (`a/#` matches `a`). At the
 * root, `+` and `#` skip children whose name starts with `$` [MQTT-4.7.2-1].
 * Empty branches are pruned on delete so the trie never outgrows what it stores.
 */
import type { StoredMessage } from "./persistence.ts";

class Node {
  readonly children = new Map<string, Node>();
  msg: StoredMessage | undefined;
  constructor(readonly parent: Node | undefined, readonly level: string) {}
}

export class RetainedTrie {
  private readonly root = new Node(undefined, "");
  private count = 0;
  private bytes = 0;

  get size(): number {
    return this.count;
  }

  /** Payload bytes of the stored messages together (the retained quota). */
  get payloadBytes(): number {
    return this.bytes;
  }

  /** The message stored for exactly this topic, expired or not. */
  peek(topic: string): StoredMessage | undefined {
    let node: Node | undefined = this.root;
    for (const level of topic.split("/")) {
      node = node.children.get(level);
      if (node === undefined) return undefined;
    }
    return node.msg;
  }

  put(msg: StoredMessage): void {
    let node = this.root;
    for (const level of msg.topic.split("/")) {
      let child = node.children.get(level);
      if (child === undefined) node.children.set(level, child = new Node(node, level));
      node = child;
    }
    if (node.msg === undefined) this.count++;
    this.bytes += msg.payload.length - (node.msg?.payload.length ?? 0);
    node.msg = msg;
  }

  delete(topic: string): void {
    let node: Node | undefined = this.root;
    for (const level of topic.split("/")) {
      node = node.children.get(level);
      if (node === undefined) return;
    }
    this.clear(node);
  }

  /** Messages matching the filter; expired ones (expiresAt < now) are removed, not returned. */
  match(filter: string, now: number): StoredMessage[] {
    const found: Node[] = [];
    this.walk(this.root, filter.split("/"), 0, found);
    const out: StoredMessage[] = [];
    for (const node of found) {
      const msg = node.msg!;
      if (msg.expiresAt !== undefined && msg.expiresAt < now) this.clear(node);
      else out.push(msg);
    }
    return out;
  }

  private walk(node: Node, levels: string[], i: number, found: Node[]): void {
    if (i === levels.length) {
      if (node.msg !== undefined) found.push(node);
      return;
    }
    const f = levels[i];
    if (f === "#") {
      if (node.msg !== undefined && i > 0) found.push(node); // parent level [MQTT-4.7.1-2]
      for (const child of node.children.values()) {
        if (i === 0 && child.level.startsWith("$")) continue;
        this.subtree(child, found);
      }
    } else if (f === "+") {
      for (const child of node.children.values()) {
        if (i === 0 && child.level.startsWith("$")) continue;
        this.walk(child, levels, i + 1, found);
      }
    } else {
      const child = node.children.get(f);
      if (child !== undefined) this.walk(child, levels, i + 1, found);
    }
  }

  private subtree(node: Node, found: Node[]): void {
    if (node.msg !== undefined) found.push(node);
    for (const child of node.children.values()) this.subtree(child, found);
  }

  /** Remove the message of a node and prune the branch up to the first node still in use. */
  private clear(node: Node): void {
    if (node.msg === undefined) return;
    this.bytes -= node.msg.payload.length;
    node.msg = undefined;
    this.count--;
    let n: Node = node;
    while (n.parent !== undefined && n.msg === undefined && n.children.size === 0) {
      n.parent.children.delete(n.level);
      n = n.parent;
    }
  }
}
