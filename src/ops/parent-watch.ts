/**
 * --exit-with-parent: stop when the launcher that started the broker goes away. `npm start &`
 * or `npx deno task start &` hand the shell the PID of npm; SIGTERM to it ends npm (and the
 * `sh -c` it ran) but not its children, so the broker would go on as an orphan. The launcher
 * chain is the broker's ancestors within its own process group (a shell gives each job one,
 * with the launcher as its leader): when one of them is gone, or the broker's parent changed,
 * the broker shuts down as on SIGTERM. Ancestors outside the group (the shell, a terminal, a
 * supervisor) are not watched, so `nohup npm start &` outlives the terminal as it should.
 *
 * The chain is read from /proc (Linux; Deno allows it under -A only). Without /proc only the
 * parent is watched (process.ppid, which both runtimes keep current).
 */
import { readFileSync } from "node:fs";
import process from "node:process";

interface Stat {
  ppid: number;
  pgrp: number;
}

/** Fields of /proc/<pid>/stat after the command name (which may itself hold spaces). */
function readStat(pid: number | "self"): Stat | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return { ppid: Number(f[1]), pgrp: Number(f[2]) };
  } catch {
    return undefined;
  }
}

/** Ancestors to watch, nearest first, each with the parent it had at start. */
export function launcherChain(): { pid: number; ppid?: number }[] {
  const parent = process.ppid;
  const me = readStat("self");
  const first = readStat(parent);
  if (me === undefined || first === undefined) return [{ pid: parent }];
  const chain = [{ pid: parent, ppid: first.ppid }];
  let st = first;
  let pid = parent;
  // up to the group's leader, only while still inside the broker's own process group
  while (pid !== me.pgrp && st.pgrp === me.pgrp && st.ppid > 1 && chain.length < 16) {
    pid = st.ppid;
    const next = readStat(pid);
    if (next === undefined || next.pgrp !== me.pgrp) break;
    chain.push({ pid, ppid: next.ppid });
    st = next;
  }
  return chain;
}

/**
 * Calls `gone` (once) when the launcher chain breaks; returns the function that stops
 * watching. The group leader is only checked to exist (it may outlive its own parent). Read
 * the chain as early as possible and pass it in: read after start-up, it may already be
 * broken (a launcher killed as soon as the broker said it listens) and look whole.
 */
export function watchParent(gone: (why: string) => void, everyMs = 1000, chain = launcherChain()): () => void {
  const leader = readStat("self")?.pgrp;
  const timer = setInterval(() => {
    let why: string | undefined;
    if (process.ppid !== chain[0].pid) why = `parent ${chain[0].pid} exited`;
    for (const a of chain) {
      if (why !== undefined || a.ppid === undefined) break;
      const st = readStat(a.pid);
      if (st === undefined) why = `launcher ${a.pid} exited`;
      else if (a.pid !== leader && st.ppid !== a.ppid) why = `launcher ${a.pid} lost its parent ${a.ppid}`;
    }
    if (why === undefined) return;
    clearInterval(timer);
    gone(why);
  }, everyMs);
  (timer as { unref?: () => void }).unref?.();
  return () => clearInterval(timer);
}
