/**
 * The default Security: --allow-anonymous, --password-file and --acl-file, Mosquitto's files read
 * as-is (password-file.ts, acl-file.ts, acl.ts), MQTT 5 enhanced authentication with
 * SCRAM-SHA-256 against the same password file (scram.ts).
 *
 * - No user name: allowed when --allow-anonymous is on (the anonymous ACL section applies), else
 *   refused with 0x87 Not authorized (3.1.1: 0x05).
 * - A user name: checked against the password file; an unknown user and a wrong password are the
 *   same failure (0x86 Bad user name or password, 3.1.1: 0x04). Without a password file a user
 *   name is accepted as it is when --allow-anonymous is on (Mosquitto does the same), else refused.
 * - A user name taken from a verified client certificate (use-identity-as-username) is
 *   authenticated by the certificate; the password file is not consulted.
 * - reload() (SIGHUP) reads both files again and swaps them in at once; a file that does not
 *   parse leaves the previous rules in place (the error is thrown for the log). Listeners are
 *   told, the broker re-checks every session: new permissions at once, and connections whose
 *   password entry changed or disappeared are closed (stillValid).
 */
import { readFile } from "node:fs/promises";
import { RC } from "../protocol/reason-codes.ts";
import { ALLOW_ALL, type AuthExchange, type Authenticator, type AuthResult, type AuthStep, type Authorizer, type ConnectInfo, type Identity, type Security } from "./auth.ts";
import { AclFileError, parseAclFile } from "./acl-file.ts";
import { FileAcl } from "./acl.ts";
import { type PasswordFile, parsePasswordFile, verifyPassword } from "./password-file.ts";
import { SCRAM_SHA_256, ScramExchange } from "./scram.ts";

export interface FileSecurityOptions {
  /**
   * Clients without a user name may connect. A listener's own setting (--allow-anonymous, or
   * ?allow-anonymous= in its URL), which CONNECT brings along (ConnectInfo.allowAnonymous), wins.
   */
  allowAnonymous: boolean;
  /** "" or undefined: none. */
  passwordFile?: string;
  aclFile?: string;
  /** Reads a file (tests may inject); node:fs by default. */
  read?: (path: string) => Promise<string>;
  /** Where warnings about skipped lines go. */
  warn?: (message: string, fields: Record<string, unknown>) => void;
}

/** A file option that cannot be used: the message names the option, the file and the fix. */
export class SecurityFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SecurityFileError";
  }
}

const ALLOW_EVERYTHING: Authorizer = { permissions: () => ALLOW_ALL };

export class FileSecurity implements Security, Authenticator {
  private passwords: PasswordFile | undefined;
  private acl: Authorizer = ALLOW_EVERYTHING;
  private listeners = new Set<() => void>();

  private constructor(private readonly opts: FileSecurityOptions) {}

  static async load(opts: FileSecurityOptions): Promise<FileSecurity> {
    const s = new FileSecurity(opts);
    await s.reload(false);
    return s;
  }

  get authenticator(): Authenticator {
    return this;
  }

  get authorizer(): Authorizer {
    return this.acl;
  }

  /** Whether an ACL file is in force (otherwise every client may do anything). */
  get hasAcl(): boolean {
    return this.acl !== ALLOW_EVERYTHING;
  }

  changed(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Read both files again; on any error nothing changes and the error is thrown. */
  async reload(notify = true): Promise<void> {
    const o = this.opts;
    const read = o.read ?? ((p: string) => readFile(p, "utf8"));
    const load = async (option: string, path: string) => {
      try {
        return await read(path);
      } catch (e) {
        throw new SecurityFileError(`cannot read ${option} ${path}: ${(e as Error).message}; check the path and its permissions`);
      }
    };
    let passwords: PasswordFile | undefined;
    if (o.passwordFile) {
      passwords = parsePasswordFile(await load("--password-file", o.passwordFile));
      for (const w of passwords.warnings) o.warn?.("password file entry skipped", { file: o.passwordFile, detail: w });
    }
    let acl: Authorizer = ALLOW_EVERYTHING;
    if (o.aclFile) {
      const text = await load("--acl-file", o.aclFile);
      try {
        const parsed = parseAclFile(text);
        for (const w of parsed.warnings) o.warn?.("acl file line skipped", { file: o.aclFile, detail: w });
        acl = new FileAcl(parsed);
      } catch (e) {
        if (e instanceof AclFileError) throw new SecurityFileError(`invalid --acl-file ${o.aclFile}: ${e.message}; fix that line`);
        throw e;
      }
    }
    this.passwords = passwords;
    this.acl = acl;
    if (notify) for (const l of this.listeners) l();
  }

  async authenticate(c: ConnectInfo): Promise<AuthResult> {
    if (c.certificateIdentity !== undefined) return { ok: true, username: c.certificateIdentity };
    if (c.username === undefined) {
      return c.allowAnonymous ?? this.opts.allowAnonymous
        ? { ok: true }
        : { ok: false, code: RC.NOT_AUTHORIZED, reason: "anonymous clients are not allowed (--allow-anonymous false)" };
    }
    const pw = this.passwords;
    if (pw === undefined) {
      return c.allowAnonymous ?? this.opts.allowAnonymous
        ? { ok: true, username: c.username }
        : { ok: false, code: RC.BAD_USERNAME_OR_PASSWORD, reason: "bad user name or password" };
    }
    const entry = pw.users.get(c.username);
    if (await verifyPassword(entry, c.password)) return { ok: true, username: c.username, stamp: entry!.stamp };
    return { ok: false, code: RC.BAD_USERNAME_OR_PASSWORD, reason: "bad user name or password" };
  }

  exchange(method: string, c: ConnectInfo, reauth?: Identity): AuthExchange | undefined {
    if (method !== SCRAM_SHA_256) return undefined;
    const users = this.passwords?.users;
    const scram = new ScramExchange((u) => users?.get(u)?.scram, reauth ? reauth.username ?? "" : c.username);
    return {
      step: (data): AuthStep => {
        const r = scram.step(data);
        return r.kind === "success" ? { ...r, stamp: users?.get(r.username)?.stamp } : r;
      },
    };
  }

  stillValid(id: Identity, stamp: unknown): boolean {
    if (typeof stamp !== "string") return true; // anonymous, a certificate, or no password file
    return this.passwords?.users.get(id.username ?? "")?.stamp === stamp;
  }
}
