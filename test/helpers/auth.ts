/**
 * Brokers with a password file and an ACL file, for the authentication and authorization
 * tests: files written by the real mosquitto_passwd (or colibri passwd), the real FileSecurity.
 *
 *   const b = await startSecureBroker({ users: { alice: "secret" }, acl: "user alice\ntopic a/#\n" });
 *   ... b.port, b.dir, b.security.reload(), b.close()
 */
import fs from "node:fs";
import path from "node:path";
import type { Config } from "../../src/config.ts";
import { FileSecurity } from "../../src/auth/file-security.ts";
import { startBroker, type TestBroker } from "./broker.ts";
import { ensureBinary, makeTempDir, removeDir, runCommand } from "./system.ts";

/** Adds (or creates the file with) a user, with the real mosquitto_passwd. */
export async function mosquittoPasswd(file: string, user: string, password: string, opts: { sha512?: boolean } = {}): Promise<void> {
  const bin = await ensureBinary("mosquitto_passwd", "mosquitto");
  const args = [...(opts.sha512 ? ["-H", "sha512"] : []), ...(fs.existsSync(file) ? [] : ["-c"]), "-b", file, user, password];
  const r = await runCommand(bin, args);
  if (r.code !== 0) throw new Error(`mosquitto_passwd ${args.join(" ")} failed: ${r.stderr}${r.stdout}`);
}

/** Runs `colibri passwd` (src/cli/passwd.ts) in this runtime, as a separate process. */
export async function colibriPasswd(args: string[], input?: string) {
  const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
  const cmd = isBun ? "node_modules/.bin/bun" : "node_modules/.bin/deno";
  const pre = isBun ? ["run", "src/cli/passwd.ts"] : ["run", "-P", "src/cli/passwd.ts"];
  return await runCommand(cmd, [...pre, ...args], { input });
}

export interface SecureBroker extends TestBroker {
  dir: string;
  passwordFile: string;
  aclFile: string;
  security: FileSecurity;
}

export interface SecureOptions {
  /** Users written with mosquitto_passwd (the $7$ default), or colibri passwd ($7$ + SCRAM). */
  users?: Record<string, string>;
  tool?: "mosquitto_passwd" | "colibri";
  /** ACL file text; undefined: no ACL file. */
  acl?: string;
  allowAnonymous?: boolean;
  config?: Partial<Config>;
}

export async function startSecureBroker(o: SecureOptions): Promise<SecureBroker> {
  const dir = makeTempDir("colibri-auth-");
  const passwordFile = path.join(dir, "passwd");
  const aclFile = path.join(dir, "acl");
  for (const [user, pw] of Object.entries(o.users ?? {})) {
    if (o.tool !== "colibri") await mosquittoPasswd(passwordFile, user, pw);
    else {
      const r = await colibriPasswd([...(fs.existsSync(passwordFile) ? [] : ["-c"]), "-b", passwordFile, user, pw]);
      if (r.code !== 0) throw new Error(`colibri passwd failed: ${r.stderr}`);
    }
  }
  if (o.acl !== undefined) fs.writeFileSync(aclFile, o.acl);
  const security = await FileSecurity.load({
    allowAnonymous: o.allowAnonymous ?? true,
    passwordFile: o.users ? passwordFile : "",
    aclFile: o.acl !== undefined ? aclFile : "",
  });
  const b = await startBroker({ authFailureDelayMs: 50, allowAnonymous: o.allowAnonymous ?? true, ...o.config }, { security });
  return {
    ...b,
    dir,
    passwordFile,
    aclFile,
    security,
    async close() {
      await b.close();
      removeDir(dir);
    },
  };
}
