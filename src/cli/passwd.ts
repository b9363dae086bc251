/**
 * `colibri passwd`: create and update password files (mosquitto_passwd's options and its `$7$`
 * lines, plus the SCRAM-SHA-256 line of each user for MQTT 5 enhanced authentication; see
 * auth/password-file.ts for the format).
 *
 *   bun run src/cli/passwd.ts [-c] [--no-scram] passwordfile username     asks for the password
 *   bun run src/cli/passwd.ts [-c] [--no-scram] -b passwordfile username password
 *   bun run src/cli/passwd.ts -D passwordfile username                    deletes the user
 *   (or: bun run src/main.ts passwd ..., deno run -P src/cli/passwd.ts ...)
 *
 * Lines of other users and comments are kept as they are; the user's lines are replaced where
 * the first of them was. The file is written to a temporary file and renamed over the old one;
 * a new file is created readable by its owner only (0600).
 */
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import { hashPbkdf2, hashScram, PBKDF2_ITERATIONS, SCRAM_ITERATIONS } from "../auth/password-file.ts";

export const PASSWD_USAGE = `usage: colibri passwd [-c | -D] [--no-scram] [-I iterations] passwordfile username
       colibri passwd [-c] [--no-scram] [-I iterations] -b passwordfile username password
 -c          create a new password file (an existing one is overwritten)
 -D          delete the user
 -b          batch mode: the password is on the command line
 --no-scram  write only the Mosquitto line ($7$), no SCRAM-SHA-256 line
 -I n        PBKDF2-SHA512 iterations of the $7$ line (default ${PBKDF2_ITERATIONS}, as mosquitto_passwd)
Without -b the password is read from the terminal (twice), or from the first line of stdin.`;

export class PasswdError extends Error {}

interface Options {
  create: boolean;
  remove: boolean;
  batch: boolean;
  scram: boolean;
  iterations: number;
  file: string;
  user: string;
  password?: string;
}

function parse(argv: string[]): Options {
  const o: Partial<Options> & { rest: string[] } = { create: false, remove: false, batch: false, scram: true, iterations: PBKDF2_ITERATIONS, rest: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "-c") o.create = true;
    else if (a === "-D") o.remove = true;
    else if (a === "-b") o.batch = true;
    else if (a === "--no-scram") o.scram = false;
    else if (a === "-I") {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 1 || n > 10_000_000) throw new PasswdError(`invalid value ${JSON.stringify(argv[i])} for -I: expected a whole number of iterations from 1 to 10000000`);
      o.iterations = n;
    } else if (a.startsWith("-") && a.length > 1) throw new PasswdError(`unknown option ${a}\n${PASSWD_USAGE}`);
    else o.rest.push(a);
  }
  if (o.create && o.remove) throw new PasswdError("-c and -D cannot be used together");
  const want = o.batch ? 3 : 2;
  if (o.rest.length !== want) throw new PasswdError(PASSWD_USAGE);
  const [file, user, password] = o.rest;
  if (user === "" || /[:\r\n]/.test(user)) throw new PasswdError(`invalid user name ${JSON.stringify(user)}: it must not be empty nor contain ':' or a line break`);
  if (password !== undefined && /[\r\n]/.test(password)) throw new PasswdError("the password must not contain a line break");
  return { ...(o as Options), file, user, password };
}

/** The file's lines with `user`'s replaced by `entries` (or removed); throws if `user` is absent and must be. */
export function updateLines(text: string, user: string, entries: string[] | undefined): string {
  const lines = text === "" ? [] : text.replace(/\n$/, "").split("\n");
  const out: string[] = [];
  let found = false;
  for (const line of lines) {
    const colon = line.indexOf(":");
    const mine = line[0] !== "#" && colon >= 0 && line.slice(0, colon) === user;
    if (!mine) {
      out.push(line);
      continue;
    }
    if (!found && entries) out.push(...entries);
    found = true;
  }
  if (!found) {
    if (!entries) throw new PasswdError(`user ${JSON.stringify(user)} is not in the password file`);
    out.push(...entries);
  }
  return out.length ? out.join("\n") + "\n" : "";
}

/** Reads a password from the terminal without echo, or the first line of a piped stdin. */
async function readPassword(prompt: string): Promise<string> {
  const stdin = process.stdin as typeof process.stdin & { setRawMode?: (raw: boolean) => void };
  const tty = stdin.isTTY && typeof stdin.setRawMode === "function";
  if (tty) {
    process.stderr.write(prompt);
    stdin.setRawMode!(true);
  }
  stdin.resume();
  try {
    return await new Promise<string>((resolve, reject) => {
      let buf = "";
      const onData = (chunk: Uint8Array | string) => {
        buf += typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk);
        if (tty && buf.includes("\u0003")) return done(new PasswdError("cancelled"));
        const nl = buf.search(/[\r\n]/);
        if (nl >= 0) done(undefined, buf.slice(0, nl));
      };
      const onEnd = () => done(buf === "" ? new PasswdError("no password given on stdin") : undefined, buf);
      const done = (e?: Error, v?: string) => {
        stdin.off("data", onData);
        stdin.off("end", onEnd);
        if (e) reject(e);
        else resolve(v!);
      };
      stdin.on("data", onData);
      stdin.on("end", onEnd);
    });
  } finally {
    if (tty) {
      stdin.setRawMode!(false);
      process.stderr.write("\n");
    }
    stdin.pause();
  }
}

export async function runPasswd(argv: string[]): Promise<string> {
  const o = parse(argv);
  let text = "";
  if (!o.create) {
    try {
      text = fs.readFileSync(o.file, "utf8");
    } catch (e) {
      throw new PasswdError(`cannot read ${o.file}: ${(e as Error).message} (use -c to create a new file)`);
    }
  }
  let entries: string[] | undefined;
  if (!o.remove) {
    let password = o.password;
    if (password === undefined) {
      password = await readPassword("Password: ");
      if (process.stdin.isTTY && password !== await readPassword("Reenter password: ")) throw new PasswdError("passwords do not match");
    }
    entries = [`${o.user}:${await hashPbkdf2(password, o.iterations)}`];
    if (o.scram) entries.push(`${o.user}:${await hashScram(password, SCRAM_ITERATIONS)}`);
  }
  const updated = updateLines(text, o.user, entries);
  const tmp = path.join(path.dirname(path.resolve(o.file)), `.${path.basename(o.file)}.${process.pid}.tmp`);
  let mode = 0o600;
  try {
    if (!o.create) mode = fs.statSync(o.file).mode & 0o777;
  } catch { /* a new file */ }
  fs.writeFileSync(tmp, updated, { mode });
  fs.chmodSync(tmp, mode);
  fs.renameSync(tmp, o.file);
  return o.remove ? `deleted ${o.user}` : `${o.create ? "created" : "updated"} ${o.user}`;
}

if ((import.meta as { main?: boolean }).main) {
  try {
    await runPasswd(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof PasswdError)) throw e;
    console.error(`colibri passwd: ${e.message}`);
    process.exit(1);
  }
}
