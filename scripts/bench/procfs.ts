/**
 * Reads process and machine facts from /proc (Linux only): CPU time and RSS of a pid, which
 * process owns a listening port, the open-files limit, and a description of the machine.
 */
import fs from "node:fs";
import { execFileSync } from "node:child_process";

let clockTicks = 0;

/** USER_HZ, the unit of utime/stime in /proc/<pid>/stat. */
export function ticksPerSecond(): number {
  if (clockTicks === 0) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/**
 * Deno only lets a program read /proc with --allow-all; under `deno run -P` we fall back to
 * `cat` (run permission) for the few files sampled per run.
 */
let viaCat = false;

function readText(path: string): string | undefined {
  if (!viaCat) {
    try {
      return fs.readFileSync(path, "utf8");
    } catch (e) {
      const name = (e as Error).name;
      if (name !== "NotCapable" && name !== "PermissionDenied") return undefined;
      viaCat = true;
    }
  }
  try {
    return execFileSync("cat", [path], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  } catch {
    return undefined;
  }
}

/** Fields of /proc/<pid>/stat after the parenthesised command name (field 3 is index 0). */
function statFields(pid: number): string[] | undefined {
  const s = readText(`/proc/${pid}/stat`);
  if (s === undefined) return undefined;
  return s.slice(s.lastIndexOf(")") + 2).split(" ");
}

/** utime + stime of the whole process (all threads), in seconds. */
export function cpuSeconds(pid: number): number {
  const f = statFields(pid);
  if (f === undefined) return NaN;
  return (Number(f[11]) + Number(f[12])) / ticksPerSecond();
}

export interface MemorySample {
  rssKb: number;
  hwmKb: number;
}

export function memory(pid: number): MemorySample {
  const s = readText(`/proc/${pid}/status`) ?? "";
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(s);
    return m === null ? NaN : Number(m[1]);
  };
  return { rssKb: field("VmRSS"), hwmKb: field("VmHWM") };
}

export function isAlive(pid: number): boolean {
  return statFields(pid) !== undefined;
}

/** Socket inodes of listening TCP sockets bound to `port` (IPv4 and IPv6 tables). */
function listeningInodes(port: number): Set<string> {
  const out = new Set<string>();
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const lines = (readText(table) ?? "").split("\n").slice(1);
    for (const line of lines) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      if (f[3] === "0A" && f[1].endsWith(`:${hex}`)) out.add(f[9]);
    }
  }
  return out;
}

/** `root` and all its descendants, found through the ppid field of every /proc/<pid>/stat. */
function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[] = [];
  try {
    entries = fs.readdirSync("/proc");
  } catch {
    return [root];
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(Number(name));
    if (f === undefined) continue;
    const ppid = Number(f[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(name));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length > 0) {
    const p = todo.pop() as number;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/**
 * The pid, among `root` and its descendants (or among all processes), that holds the socket
 * listening on `port`; for a broker, the process whose CPU and memory we report even if a
 * launcher forked or exec'd.
 */
export function listenerPid(root: number | "any", port: number): number | undefined {
  const inodes = listeningInodes(port);
  if (inodes.size === 0 || viaCat) return undefined;
  let pids: number[];
  try {
    pids = root === "any" ? fs.readdirSync("/proc").filter((n) => /^\d+$/.test(n)).map(Number) : processTree(root);
  } catch {
    return undefined;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m !== null && inodes.has(m[1])) return pid;
    }
  }
  return undefined;
}

/** Soft limit on open files for this process (what children inherit). */
export function openFilesLimit(): number {
  const m = /^Max open files\s+(\S+)/m.exec(readText("/proc/self/limits") ?? "");
  if (m === null) return NaN;
  return m[1] === "unlimited" ? Infinity : Number(m[1]);
}

export interface MachineInfo {
  cpuModel: string;
  cpus: number;
  memTotalGb: number;
  kernel: string;
}

export function machineInfo(): MachineInfo {
  const cpuinfo = readText("/proc/cpuinfo") ?? "";
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo);
  const cpus = (cpuinfo.match(/^processor\s*:/gm) ?? []).length;
  const mem = /^MemTotal:\s+(\d+) kB/m.exec(readText("/proc/meminfo") ?? "");
  const version = (readText("/proc/sys/kernel/osrelease") ?? "").trim();
  return {
    cpuModel: model === null ? "unknown" : model[1].trim(),
    cpus,
    memTotalGb: mem === null ? NaN : Number(mem[1]) / 1048576,
    kernel: version,
  };
}

/** CPU seconds all CPUs spent busy since boot (everything but idle and iowait), from /proc/stat. */
export function systemBusySeconds(): number {
  const line = (readText("/proc/stat") ?? "").split("\n")[0];
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  if (f.length < 4) return NaN;
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return (total - f[3] - (f[4] ?? 0)) / ticksPerSecond();
}
