/**
 * Mosquitto password files, read as-is, and the SCRAM credentials Colibri keeps beside them.
 *
 * One entry per line, `username:hash`, split at the first ':'; empty lines and lines starting
 * with '#' are skipped. The hashes:
 *   $7$<iterations>$<salt>$<hash>   PBKDF2-HMAC-SHA512, 64-byte hash (mosquitto_passwd's default
 *                                   since 2.0; 101 iterations, 12-byte salt)
 *   $6$<salt>$<hash>                SHA-512 over the password bytes then the salt (Mosquitto 1.x,
 *                                   `mosquitto_passwd -H sha512`)
 *   $scram-sha-256$<iterations>$<salt>$<StoredKey>$<ServerKey>
 *                                   Colibri's SCRAM-SHA-256 credential (RFC 5802 §3, RFC 7677) of
 *                                   the same user, on a line of its own: what MQTT 5 enhanced
 *                                   authentication needs, and a password hash in its own right
 *                                   (PBKDF2-HMAC-SHA256 under the salt -> ClientKey -> StoredKey).
 * Salts and hashes are standard base64. A user may have both a Mosquitto line and a SCRAM line:
 * `colibri passwd` writes both. Mosquitto 2.0 reading such a file logs "Invalid password hash
 * type for user ..., removing entry" for each SCRAM line and keeps using the `$7$` one.
 * Like Mosquitto, an entry it cannot use (another hash type, a plain-text password) is left out
 * with a warning; the rest of the file still counts.
 */
import { Buffer } from "node:buffer";
import crypto from "node:crypto";

export interface PasswordHash {
  kind: "pbkdf2-sha512" | "sha512";
  iterations: number;
  salt: Uint8Array;
  hash: Uint8Array;
}

export interface ScramCredential {
  iterations: number;
  salt: Uint8Array;
  storedKey: Uint8Array;
  serverKey: Uint8Array;
}

export interface UserEntry {
  password?: PasswordHash;
  scram?: ScramCredential;
  /** The user's lines as written: a change of any of them is a change of credentials. */
  stamp: string;
}

export interface PasswordFile {
  users: Map<string, UserEntry>;
  /** Lines left out, each saying which and why (the caller logs them). */
  warnings: string[];
}

/** mosquitto_passwd's defaults (PW_DEFAULT_ITERATIONS, salt length). */
export const PBKDF2_ITERATIONS = 101;
const SALT_BYTES = 12;
/** RFC 7677 §4: at least 4096 iterations for SCRAM-SHA-256. */
export const SCRAM_ITERATIONS = 4096;
const SCRAM_SALT_BYTES = 16;

const B64 = /^[A-Za-z0-9+/]+={0,2}$/;

function b64(s: string | undefined): Uint8Array | undefined {
  if (s === undefined || !B64.test(s)) return undefined;
  return new Uint8Array(Buffer.from(s, "base64"));
}

function positive(s: string | undefined): number | undefined {
  if (s === undefined || !/^\d{1,9}$/.test(s)) return undefined;
  const n = Number(s);
  return n > 0 ? n : undefined;
}

/** `$...` hash text -> what it holds, or why it cannot be used. */
export function parseHash(text: string): PasswordHash | ScramCredential | string {
  const f = text.split("$");
  if (f[0] !== "" || f.length < 2) return "not a hashed password (create it with colibri passwd or mosquitto_passwd)";
  if (f[1] === "7") {
    const iterations = positive(f[2]), salt = b64(f[3]), hash = b64(f[4]);
    if (!iterations || !salt || !hash || f.length !== 5) return "malformed $7$ (PBKDF2-SHA512) hash";
    return { kind: "pbkdf2-sha512", iterations, salt, hash };
  }
  if (f[1] === "6") {
    const salt = b64(f[2]), hash = b64(f[3]);
    if (!salt || !hash || f.length !== 4) return "malformed $6$ (SHA512) hash";
    return { kind: "sha512", iterations: 1, salt, hash };
  }
  if (f[1] === "scram-sha-256") {
    const iterations = positive(f[2]), salt = b64(f[3]), storedKey = b64(f[4]), serverKey = b64(f[5]);
    if (!iterations || !salt || storedKey?.length !== 32 || serverKey?.length !== 32 || f.length !== 6) {
      return "malformed $scram-sha-256$ credential";
    }
    return { iterations, salt, storedKey, serverKey };
  }
  return `unknown hash type $${f[1]}$`;
}

export function parsePasswordFile(text: string): PasswordFile {
  const users = new Map<string, UserEntry>();
  const warnings: string[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].replace(/\r$/, "");
    if (line.trim() === "" || line[0] === "#") continue;
    const at = `line ${i + 1}`;
    const colon = line.indexOf(":");
    if (colon <= 0) {
      warnings.push(`${at}: no "username:hash", skipped`);
      continue;
    }
    const name = line.slice(0, colon);
    const h = parseHash(line.slice(colon + 1).trimEnd());
    if (typeof h === "string") {
      warnings.push(`${at}: user ${JSON.stringify(name)}: ${h}; entry left out`);
      continue;
    }
    let e = users.get(name);
    if (!e) users.set(name, e = { stamp: "" });
    e.stamp += line + "\n";
    if ("kind" in h) {
      if (e.password) warnings.push(`${at}: user ${JSON.stringify(name)} has a password line already; this one is ignored`);
      else e.password = h;
    } else if (e.scram) warnings.push(`${at}: user ${JSON.stringify(name)} has a SCRAM line already; this one is ignored`);
    else e.scram = h;
  }
  return { users, warnings };
}

// --- verification -------------------------------------------------------------------------

function pbkdf2(password: Uint8Array, salt: Uint8Array, iterations: number, len: number, digest: string): Promise<Uint8Array> {
  return new Promise((resolve, reject) =>
    crypto.pbkdf2(password, salt, iterations, len, digest, (e, k) => (e ? reject(e) : resolve(new Uint8Array(k))))
  );
}

/** Constant-time comparison (length differences aside, which carry no secret here). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

export function hmac(key: Uint8Array, data: Uint8Array | string): Uint8Array {
  return new Uint8Array(crypto.createHmac("sha256", key).update(data).digest());
}

export function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(crypto.createHash("sha256").update(data).digest());
}

/** SCRAM's Normalize(): the NFKC step of SASLprep (ASCII passwords are unchanged). */
export function normalizePassword(password: Uint8Array | string): Uint8Array {
  const s = typeof password === "string" ? password : new TextDecoder().decode(password);
  return new TextEncoder().encode(s.normalize("NFKC"));
}

/** SaltedPassword -> (StoredKey, ServerKey) (RFC 5802 §3). */
export async function scramKeys(password: Uint8Array | string, salt: Uint8Array, iterations: number) {
  const salted = await pbkdf2(normalizePassword(password), salt, iterations, 32, "sha256");
  return { storedKey: sha256(hmac(salted, "Client Key")), serverKey: hmac(salted, "Server Key") };
}

const DUMMY: PasswordHash = {
  kind: "pbkdf2-sha512", iterations: PBKDF2_ITERATIONS, salt: new Uint8Array(SALT_BYTES), hash: new Uint8Array(64),
};

/**
 * Whether `password` matches the user's entry. An unknown user (entry undefined) costs the same
 * work as a known one and fails, so the time taken does not tell whether the user exists.
 */
export async function verifyPassword(entry: UserEntry | undefined, password: Uint8Array | undefined): Promise<boolean> {
  const pw = password ?? new Uint8Array(0);
  const h = entry?.password ?? (entry?.scram ? undefined : DUMMY);
  let ok: boolean;
  if (h !== undefined) {
    const got = h.kind === "sha512"
      ? new Uint8Array(crypto.createHash("sha512").update(pw).update(h.salt).digest())
      : await pbkdf2(pw, h.salt, h.iterations, h.hash.length, "sha512");
    ok = sameBytes(got, h.hash);
  } else {
    const s = entry!.scram!;
    ok = sameBytes((await scramKeys(pw, s.salt, s.iterations)).storedKey, s.storedKey);
  }
  return ok && entry !== undefined && password !== undefined;
}

// --- creation (colibri passwd) ------------------------------------------------------------

const enc = (b: Uint8Array) => Buffer.from(b).toString("base64");

/** A `$7$` hash as mosquitto_passwd writes it. */
export async function hashPbkdf2(password: string, iterations = PBKDF2_ITERATIONS): Promise<string> {
  const salt = new Uint8Array(crypto.randomBytes(SALT_BYTES));
  const hash = await pbkdf2(new TextEncoder().encode(password), salt, iterations, 64, "sha512");
  return `$7$${iterations}$${enc(salt)}$${enc(hash)}`;
}

/** A `$scram-sha-256$` credential. */
export async function hashScram(password: string, iterations = SCRAM_ITERATIONS): Promise<string> {
  const salt = new Uint8Array(crypto.randomBytes(SCRAM_SALT_BYTES));
  const k = await scramKeys(password, salt, iterations);
  return `$scram-sha-256$${iterations}$${enc(salt)}$${enc(k.storedKey)}$${enc(k.serverKey)}`;
}
