/**
 * Test helpers for the world outside the broker: ports, processes, binaries, and the
 * mosquitto_pub / mosquitto_sub / mosquitto reference tools.
 *
 * Only node: built-ins, so the same file works under `deno test` and `bun test`.
 * Every process started here is killed when the test process exits, as a last resort;
 * tests should still stop what they start (`kill()` / `stop()` in `after`).
 */
import { Buffer } from "node:buffer";
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import process from "node:process";

/** Which runtime runs the tests. */
export function runtime(): "deno" | "bun" {
  const g = globalThis as { Bun?: unknown; Deno?: unknown };
  if (g.Bun !== undefined) return "bun";
  if (g.Deno !== undefined) return "deno";
  throw new Error("these tests run under `deno test` or `bun test` only");
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A fresh directory under the OS temp dir; remove it with `removeDir`. */
export function makeTempDir(prefix = "colibri-test-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------
// Ports

/**
 * A TCP port that was free a moment ago: bind port 0, read what the OS chose, close.
 * Never 1883 (the machine's own Mosquitto lives there).
 */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = net.createServer();
      server.once("error", reject);
      server.listen(0, host, () => {
        const address = server.address();
        const p = typeof address === "object" && address !== null ? address.port : 0;
        server.close(() => resolve(p));
      });
    });
    if (port !== 0 && port !== 1883) return port;
  }
}

function tryConnect(port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host });
    socket.once("connect", () => {
      socket.destroy();
      resolve();
    });
    socket.once("error", (err) => {
      socket.destroy();
      reject(err);
    });
  });
}

/** Resolves once something accepts TCP connections on host:port. */
export async function waitForPort(port: number, timeoutMs = 10_000, host = "127.0.0.1"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    try {
      await tryConnect(port, host);
      return;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() >= deadline) {
      throw new Error(`nothing accepted connections on ${host}:${port} within ${timeoutMs} ms (last error: ${last})`);
    }
    await sleep(50);
  }
}

// ---------------------------------------------------------------------------------
// Binaries

const SBIN_DIRS = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/** Absolute path of an executable found in PATH (or an sbin directory), else undefined. */
export function which(name: string): string | undefined {
  if (name.includes("/")) return isExecutable(name) ? name : undefined;
  const dirs = (process.env.PATH ?? "").split(":").filter((d) => d !== "").concat(SBIN_DIRS);
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isExecutable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

const ensured = new Map<string, Promise<string>>();
let aptUpdated: Promise<unknown> | undefined;

/**
 * Path of `name`, installing `debianPackage` with apt-get when it is missing.
 * scripts/test.sh installs everything up front; this is the fallback for running one
 * test file by hand. Rejects with what apt-get said when it cannot be had.
 */
export function ensureBinary(name: string, debianPackage: string): Promise<string> {
  let pending = ensured.get(name);
  if (pending === undefined) {
    pending = installBinary(name, debianPackage);
    ensured.set(name, pending);
    pending.catch(() => ensured.delete(name));
  }
  return pending;
}

async function installBinary(name: string, debianPackage: string): Promise<string> {
  const found = which(name);
  if (found !== undefined) return found;
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const [cmd, prefix] = process.getuid?.() === 0 ? ["apt-get", []] : ["sudo", ["-n", "apt-get"]];
  const apt = (args: string[]) => runCommand(cmd, [...prefix, ...args], { timeoutMs: 600_000, env });
  aptUpdated ??= apt(["update", "-qq"]).catch(() => undefined);
  await aptUpdated;
  let detail = "";
  try {
    const r = await apt(["install", "-y", "-qq", "--no-install-recommends", debianPackage]);
    detail = `apt-get exited ${r.code}: ${r.stderr.trim().slice(-500)}`;
  } catch (err) {
    detail = (err as Error).message;
  }
  const installed = which(name);
  if (installed !== undefined) return installed;
  throw new Error(
    `'${name}' is not installed and installing Debian package '${debianPackage}' did not provide it ` +
      `(${detail}). Run 'bash scripts/setup.sh' or 'apt-get install ${debianPackage}'.`,
  );
}

// ---------------------------------------------------------------------------------
// Processes

export interface CommandResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Kill the command and reject after this long (default 30 s). */
  timeoutMs?: number;
  /** Written to the command's stdin, which is then closed. */
  input?: string | Uint8Array;
  env?: Record<string, string | undefined>;
  cwd?: string;
}

/** Runs a command to completion. Resolves whatever the exit code; rejects on timeout or spawn failure. */
export function runCommand(cmd: string, args: string[], opts: RunOptions = {}): Promise<CommandResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env as NodeJS.ProcessEnv | undefined,
      stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    const out: Uint8Array[] = [];
    const err: Uint8Array[] = [];
    child.stdout?.on("data", (c: Uint8Array) => out.push(c));
    child.stderr?.on("data", (c: Uint8Array) => err.push(c));
    const text = (chunks: Uint8Array[]) => Buffer.concat(chunks).toString("utf8");
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`could not run ${cmd}: ${e.message}`));
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      const result = { code, signal, stdout: text(out), stderr: text(err) };
      if (timedOut) {
        reject(
          new Error(
            `${cmd} ${args.join(" ")} did not finish within ${timeoutMs} ms\n` +
              `stdout: ${result.stdout.slice(-1000)}\nstderr: ${result.stderr.slice(-1000)}`,
          ),
        );
      } else {
        resolve(result);
      }
    });
    if (opts.input !== undefined && child.stdin) {
      child.stdin.on("error", () => {}); // the command may exit without reading
      child.stdin.end(opts.input);
    }
  });
}

export interface ExitInfo {
  code: number | null;
  signal: string | null;
}

export interface SpawnOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Shown in error messages (default: the command's base name). */
  name?: string;
  /** Copy the process output to the test's stderr, prefixed with the name. */
  echo?: boolean;
  /** Own process group: kill() signals the whole group (wrappers such as `npm start`). */
  group?: boolean;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const child of live) {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
  });
}

/** A long-running process (a broker, HAProxy, ...) whose output can be awaited line by line. */
export class SpawnedProcess {
  readonly name: string;
  /** stdout and stderr lines, in arrival order. */
  readonly lines: string[] = [];
  readonly stdoutLines: string[] = [];
  readonly stderrLines: string[] = [];
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<ExitInfo>;
  exitInfo: ExitInfo | undefined;
  #child: ChildProcess;
  #listeners = new Set<() => void>();
  #spawnError: Error | undefined;

  constructor(cmd: string, args: string[], opts: SpawnOptions = {}) {
    this.name = opts.name ?? path.basename(cmd);
    installExitHook();
    this.#child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env as NodeJS.ProcessEnv | undefined,
      stdio: ["ignore", "pipe", "pipe"],
      detached: opts.group ?? false,
    });
    this.#group = opts.group ?? false;
    live.add(this.#child);
    this.exited = new Promise((resolve) => {
      this.#child.once("error", (err) => {
        this.#spawnError = err;
        this.#finish({ code: null, signal: null }, resolve);
      });
      this.#child.once("close", (code, signal) => this.#finish({ code, signal }, resolve));
    });
    this.#pipeLines(this.#child.stdout, this.stdoutLines, opts.echo);
    this.#pipeLines(this.#child.stderr, this.stderrLines, opts.echo);
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  #finish(info: ExitInfo, resolve: (i: ExitInfo) => void): void {
    if (this.exitInfo !== undefined) return;
    this.exitInfo = info;
    live.delete(this.#child);
    resolve(info);
    this.#notify();
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }

  #pipeLines(stream: NodeJS.ReadableStream | null, into: string[], echo?: boolean): void {
    if (stream === null) return;
    let partial = "";
    const push = (line: string) => {
      into.push(line);
      this.lines.push(line);
      if (echo) process.stderr.write(`[${this.name}] ${line}\n`);
    };
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      partial += chunk;
      const parts = partial.split("\n");
      partial = parts.pop() ?? "";
      for (const p of parts) push(p.replace(/\r$/, ""));
      if (parts.length) this.#notify();
    });
    stream.on("end", () => {
      if (partial !== "") push(partial);
      partial = "";
      this.#notify();
    });
  }

  /** The last `n` output lines, for error messages. */
  tail(n = 20): string {
    return this.lines.slice(-n).join("\n");
  }

  /**
   * Resolves with the match of the first output line (already printed or still to come)
   * matching `pattern`. Rejects on timeout or if the process exits first.
   */
  waitForLine(pattern: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      let scanned = 0;
      const check = () => {
        for (; scanned < this.lines.length; scanned++) {
          const m = this.lines[scanned].match(pattern);
          if (m) return done(() => resolve(m));
        }
        if (this.exitInfo !== undefined) {
          const why = this.#spawnError
            ? `could not be started (${this.#spawnError.message})`
            : `exited (code ${this.exitInfo.code}, signal ${this.exitInfo.signal})`;
          done(() => reject(new Error(`${this.name} ${why} before printing ${pattern}; last output:\n${this.tail()}`)));
        }
      };
      const timer = setTimeout(() => {
        done(() =>
          reject(new Error(`${this.name} did not print ${pattern} within ${timeoutMs} ms; last output:\n${this.tail()}`))
        );
      }, timeoutMs);
      const done = (settle: () => void) => {
        clearTimeout(timer);
        this.#listeners.delete(check);
        settle();
      };
      this.#listeners.add(check);
      check();
    });
  }

  /** Sends a signal without waiting. */
  signal(sig: NodeJS.Signals): void {
    if (this.running) this.#signal(sig);
  }

  /** Sends `sig` (default SIGTERM), escalates to SIGKILL after `graceMs`, resolves on exit. */
  #group = false;

  #signal(sig: NodeJS.Signals): void {
    // by pid (or process group): Deno's ChildProcess.kill() sends one signal per child and
    // ignores later calls, so a SIGHUP would swallow the SIGTERM that follows it
    const pid = this.#child.pid;
    if (pid) {
      try {
        process.kill(this.#group ? -pid : pid, sig);
        return;
      } catch {
        // gone already
      }
    }
    // by pid: Deno's ChildProcess.kill() sends only the first signal (then it counts the child
    // as killed and sends nothing more: a SIGHUP first, and a later SIGTERM never arrived)
    try {
      if (this.#child.pid) process.kill(this.#child.pid, sig);
      else this.#child.kill(sig);
    } catch {
      // gone already
    }
  }

  async kill(sig: NodeJS.Signals = "SIGTERM", graceMs = 3000): Promise<ExitInfo> {
    if (!this.running) return this.exitInfo!;
    this.#signal(sig);
    if (sig !== "SIGKILL") {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), graceMs)));
      const first = await Promise.race([this.exited, timedOut]);
      clearTimeout(timer);
      if (first === "timeout" && this.running) this.#signal("SIGKILL");
    }
    return await this.exited;
  }
}

/** Starts a long-running process; see SpawnedProcess. */
export function spawnProcess(cmd: string, args: string[], opts: SpawnOptions = {}): SpawnedProcess {
  return new SpawnedProcess(cmd, args, opts);
}

// ---------------------------------------------------------------------------------
// Mosquitto reference broker and clients

export interface MosquittoBroker {
  port: number;
  host: string;
  process: SpawnedProcess;
  configPath: string;
  stop(): Promise<void>;
}

/**
 * Starts a private Mosquitto on a free port (never 1883), anonymous access allowed,
 * no persistence. `extraConfig` lines are appended to the generated config file.
 */
export async function startMosquitto(opts: { port?: number; extraConfig?: string[]; echo?: boolean } = {}): Promise<MosquittoBroker> {
  const bin = await ensureBinary("mosquitto", "mosquitto");
  const port = opts.port ?? (await freePort());
  const host = "127.0.0.1";
  const dir = makeTempDir("colibri-mosquitto-");
  const configPath = path.join(dir, "mosquitto.conf");
  const config = [
    `listener ${port} ${host}`,
    "allow_anonymous true",
    "persistence false",
    "log_dest stderr",
    "log_type error",
    "log_type warning",
    "log_type notice",
    "log_type information",
    ...(opts.extraConfig ?? []),
  ];
  fs.writeFileSync(configPath, config.join("\n") + "\n");
  const proc = spawnProcess(bin, ["-c", configPath], { name: `mosquitto:${port}`, echo: opts.echo });
  try {
    await proc.waitForLine(/mosquitto version \S+ running/, 10_000);
    await waitForPort(port, 5000, host);
  } catch (err) {
    await proc.kill("SIGKILL");
    removeDir(dir);
    throw err;
  }
  return {
    port,
    host,
    process: proc,
    configPath,
    async stop() {
      await proc.kill();
      removeDir(dir);
    },
  };
}

export interface HaproxyBroker {
  port: number;
  process: SpawnedProcess;
  stop(): Promise<void>;
}

/**
 * Starts a private HAProxy in TCP mode on a free port (never 1883), balancing over `servers`,
 * each optionally sent the PROXY protocol header (`send-proxy` = v1, `send-proxy-v2`).
 */
export async function startHaproxy(opts: {
  servers: Array<{ port: number; host?: string; sendProxy?: "v1" | "v2" }>;
  port?: number;
  echo?: boolean;
}): Promise<HaproxyBroker> {
  const bin = await ensureBinary("haproxy", "haproxy");
  const port = opts.port ?? (await freePort());
  const dir = makeTempDir("colibri-haproxy-");
  const configPath = path.join(dir, "haproxy.cfg");
  const servers = opts.servers.map((s, i) => {
    const proxy = s.sendProxy === "v2" ? " send-proxy-v2" : s.sendProxy === "v1" ? " send-proxy" : "";
    return `  server s${i} ${s.host ?? "127.0.0.1"}:${s.port}${proxy}`;
  });
  fs.writeFileSync(configPath, [
    "global",
    "  maxconn 4096",
    "defaults",
    "  mode tcp",
    "  timeout connect 2s",
    "  timeout client 60s",
    "  timeout server 60s",
    "frontend mqtt",
    `  bind 127.0.0.1:${port}`,
    "  default_backend brokers",
    "backend brokers",
    "  balance roundrobin",
    ...servers,
  ].join("\n") + "\n");
  const proc = spawnProcess(bin, ["-db", "-f", configPath], { name: `haproxy:${port}`, echo: opts.echo });
  try {
    await waitForPort(port, 10_000);
  } catch (err) {
    await proc.kill("SIGKILL");
    removeDir(dir);
    throw new Error(`${(err as Error).message}; haproxy said:\n${proc.tail()}`);
  }
  return {
    port,
    process: proc,
    async stop() {
      await proc.kill();
      removeDir(dir);
    },
  };
}

export interface PubOptions {
  qos?: 0 | 1 | 2;
  retain?: boolean;
  /** Connect with MQTT 5 (default 3.1.1). */
  v5?: boolean;
  host?: string;
  clientId?: string;
  timeoutMs?: number;
  /** More mosquitto_pub arguments, e.g. ["-D", "publish", "user-property", "k", "v"]. */
  extraArgs?: string[];
}

/** Publishes one message with mosquitto_pub; rejects with its stderr if it fails. */
export async function mosquittoPub(
  port: number,
  topic: string,
  message: string | Uint8Array,
  opts: PubOptions = {},
): Promise<void> {
  const bin = await ensureBinary("mosquitto_pub", "mosquitto-clients");
  const host = opts.host ?? "127.0.0.1";
  const args = ["-h", host, "-p", String(port), "-t", topic, "-q", String(opts.qos ?? 0)];
  if (opts.retain) args.push("-r");
  if (opts.v5) args.push("-V", "mqttv5");
  if (opts.clientId !== undefined) args.push("-i", opts.clientId);
  args.push(...(opts.extraArgs ?? []));
  let input: Uint8Array | undefined;
  if (typeof message === "string" && message.length > 0) args.push("-m", message);
  else if (message.length === 0) args.push("-n");
  else {
    args.push("-s");
    input = message as Uint8Array;
  }
  const r = await runCommand(bin, args, { timeoutMs: opts.timeoutMs ?? 10_000, input });
  if (r.code !== 0) {
    throw new Error(`mosquitto_pub to ${host}:${port} topic '${topic}' failed (exit ${r.code}): ${(r.stderr + r.stdout).trim()}`);
  }
}

export interface SubMessage {
  topic: string;
  /** The payload decoded as UTF-8. */
  payload: string;
  bytes: Uint8Array;
  qos: number;
  retain: boolean;
}

export interface SubOptions {
  /** Stop after this many messages. Without it, collect until `timeoutMs` or `stop()`. */
  count?: number;
  qos?: 0 | 1 | 2;
  v5?: boolean;
  host?: string;
  clientId?: string;
  /** With `count`: reject if fewer arrive in time. Without: stop and resolve (default 5000). */
  timeoutMs?: number;
  /** More mosquitto_sub arguments, e.g. ["-c"] (persistent session) or ["--retained-only"]. */
  extraArgs?: string[];
}

/** The messages, once collected; plus `ready` (SUBACK received), the live list and `stop()`. */
export interface SubPromise extends Promise<SubMessage[]> {
  /** Resolves when the subscription is acknowledged: publish after this. */
  ready: Promise<void>;
  /** Messages received so far. */
  messages: SubMessage[];
  /** Stops the subscriber now and resolves with what it got. */
  stop(): Promise<SubMessage[]>;
  process: SpawnedProcess;
}

const FIELD = "\t";

/**
 * Subscribes with mosquitto_sub and collects messages.
 *
 *   const sub = mosquittoSub(port, "a/#", { count: 2 });
 *   await sub.ready;
 *   await mosquittoPub(port, "a/b", "hello");
 *   const messages = await sub;
 */
export function mosquittoSub(port: number, topic: string | string[], opts: SubOptions = {}): SubPromise {
  const host = opts.host ?? "127.0.0.1";
  const topics = Array.isArray(topic) ? topic : [topic];
  const timeoutMs = opts.timeoutMs ?? 5000;
  const messages: SubMessage[] = [];
  const label = `mosquitto_sub ${host}:${port} '${topics.join("', '")}'`;
  const bin = which("mosquitto_sub");
  const args = ["-d", "-h", host, "-p", String(port), "-q", String(opts.qos ?? 0)];
  for (const t of topics) args.push("-t", t);
  // One line per message: MSG <topic> <qos> <retain> <payload as hex>
  args.push("-F", ["MSG", "%t", "%q", "%r", "%x"].join(FIELD));
  if (opts.count !== undefined) args.push("-C", String(opts.count));
  if (opts.v5) args.push("-V", "mqttv5");
  if (opts.clientId !== undefined) args.push("-i", opts.clientId);
  args.push(...(opts.extraArgs ?? []));

  // mosquitto_sub block-buffers stdout into a pipe; stdbuf makes its debug lines
  // (the SUBACK we wait for) and messages arrive as they are printed.
  const stdbuf = which("stdbuf");
  const cmd = bin ?? "mosquitto_sub";
  const proc = stdbuf
    ? spawnProcess(stdbuf, ["-oL", cmd, ...args], { name: label })
    : spawnProcess(cmd, args, { name: label });
  let stopped = false;
  let scanned = 0;
  const collect = () => {
    for (; scanned < proc.stdoutLines.length; scanned++) {
      const line = proc.stdoutLines[scanned];
      if (!line.startsWith("MSG" + FIELD)) continue;
      const fields = line.split(FIELD);
      const hex = fields.pop() ?? "";
      const retain = fields.pop() === "1";
      const qos = Number(fields.pop());
      const t = fields.slice(1).join(FIELD);
      const bytes = new Uint8Array(Buffer.from(hex, "hex"));
      messages.push({ topic: t, payload: Buffer.from(bytes).toString("utf8"), bytes, qos, retain });
    }
  };
  const ready = proc.waitForLine(/received SUBACK/, timeoutMs).then(() => undefined);
  ready.catch(() => {});

  const result = (async () => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), timeoutMs)));
    const first = await Promise.race([proc.exited, timedOut]);
    clearTimeout(timer);
    if (first === "timeout") await proc.kill("SIGKILL");
    const exit = proc.exitInfo!;
    collect();
    if (stopped) return messages;
    if (opts.count !== undefined && messages.length < opts.count) {
      const why = first === "timeout" ? `within ${timeoutMs} ms` : `before it exited (code ${exit.code})`;
      throw new Error(
        `${label}: expected ${opts.count} message(s) ${why}, got ${messages.length}: ` +
          `${JSON.stringify(messages.map((m) => [m.topic, m.payload]))}\nlast output:\n${proc.tail(10)}`,
      );
    }
    if (first !== "timeout" && exit.code !== 0) {
      throw new Error(`${label} failed (exit ${exit.code}):\n${proc.tail(10)}`);
    }
    return messages;
  })();
  result.catch(() => {});

  const sub = result as SubPromise;
  sub.ready = ready;
  sub.process = proc;
  Object.defineProperty(sub, "messages", {
    get() {
      collect();
      return messages;
    },
  });
  sub.stop = async () => {
    stopped = true;
    await proc.kill("SIGKILL");
    return await result;
  };
  return sub;
}
