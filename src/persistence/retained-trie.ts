/**
 * Retained messages in a topic trie: one node per topic level, the message on the node of its
 * last level. A lookup walks level by level: a literal level follows one child, `+` every
 * child, `#` the whole subtree including the node it hangs from (`a/#` matches `a`). At the
 * root, `+` and `#` skip children whose name starts with `$` [MQTT-4.7.2-1].
 * Empty branches are pruned on delete so the trie never outgrows what it stores.
 */
import type { MessageHolder, StoredMessage } from "../message.ts";

class Node {
  readonly children = new Map<string, Node>();
  msg: StoredMessage | undefined;
  constructor(readonly parent: Node | undefined, readonly level: string) {}
}

export class RetainedTrie {
  private readonly root = new Node(undefined, "");
  private count = 0;
  private bytes = 0;
  /** The broker's accounting, told of every message kept and let go (MemoryPersistence.trackMemory). */
  private holder: MessageHolder | undefined;

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

  /** Count the stored messages with `h` from now on (and no longer with the previous one). */
  setHolder(h: MessageHolder): void {
    const all: Node[] = [];
    subtree(this.root, all);
    for (const node of all) {
      this.holder?.release(node.msg!);
      h.hold(node.msg!);
    }
    this.holder = h;
  }

  put(msg: StoredMessage): void {
    let node = this.root;
    for (const level of msg.topic.split("/")) {
      let child = node.children.get(level);
      if (child === undefined) node.children.set(level, child = new Node(node, level));
      node = child;
    }
    const old = node.msg;
    if (old === undefined) this.count++;
    this.bytes += msg.payload.length - (old?.payload.length ?? 0);
    node.msg = msg;
    if (this.holder !== undefined) {
      this.holder.hold(msg);
      if (old !== undefined) this.holder.release(old);
    }
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
    this.walk(filter.split("/"), found);
    const out: StoredMessage[] = [];
    for (const node of found) {
      const msg = node.msg!;
      if (msg.expiresAt !== undefined && msg.expiresAt < now) this.clear(node);
      else out.push(msg);
    }
    return out;
  }

  /**
   * The nodes holding a message that the filter matches. Iterative with an explicit stack (a
   * topic may be thousands of levels deep; recursion per level overflows the call stack).
   */
  private walk(levels: string[], found: Node[]): void {
    const nodes: Node[] = [this.root];
    const depth: number[] = [0];
    while (nodes.length > 0) {
      const node = nodes.pop()!;
      const i = depth.pop()!;
      if (i === levels.length) {
        if (node.msg !== undefined) found.push(node);
        continue;
      }
      const f = levels[i];
      if (f === "#") {
        if (node.msg !== undefined && i > 0) found.push(node); // parent level [MQTT-4.7.1-2]
        for (const child of node.children.values()) {
          if (i === 0 && child.level.startsWith("$")) continue;
          subtree(child, found);
        }
      } else if (f === "+") {
        for (const child of node.children.values()) {
          if (i === 0 && child.level.startsWith("$")) continue;
          nodes.push(child);
          depth.push(i + 1);
        }
      } else {
        const child = node.children.get(f);
        if (child !== undefined) {
          nodes.push(child);
          depth.push(i + 1);
        }
      }
    }
  }

  /** Remove the message of a node and prune the branch up to the first node still in use. */
  private clear(node: Node): void {
    const old = node.msg;
    if (old === undefined) return;
    this.bytes -= old.payload.length;
    node.msg = undefined;
    this.holder?.release(old);
    this.count--;
    let n: Node = node;
    while (n.parent !== undefined && n.msg === undefined && n.children.size === 0) {
      n.parent.children.delete(n.level);
      n = n.parent;
    }
  }
}

/** Every node holding a message at or below `top`, depth first, without recursion. */
function subtree(top: Node, found: Node[]): void {
  if (top.msg !== undefined) found.push(top);
  const open: Iterator<Node>[] = [top.children.values()];
  while (open.length > 0) {
    const r = open[open.length - 1].next();
    if (r.done) {
      open.pop();
      continue;
    }
    const node = r.value;
    if (node.msg !== undefined) found.push(node);
    if (node.children.size > 0) open.push(node.children.values());
  }
}
