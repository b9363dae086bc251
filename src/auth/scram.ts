/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677), server side, as an MQTT 5 enhanced authentication
 * exchange (Authentication Method "SCRAM-SHA-256"):
 *
 *   CONNECT  data = client-first-message         "n,,n=alice,r=<client nonce>"
 *   AUTH 0x18 data = server-first-message         "r=<client nonce><server nonce>,s=<salt>,i=4096"
 *   AUTH 0x18 data = client-final-message         "c=biws,r=<both nonces>,p=<proof>"
 *   CONNACK 0x00 data = server-final-message      "v=<server signature>"
 *
 * Re-authentication runs the same messages from AUTH 0x19 and ends with AUTH 0x00. The server
 * keeps only StoredKey and ServerKey (password-file.ts), never the password. An unknown user (or
 * one without a SCRAM credential) gets a server-first-message with a salt derived from the name
 * under a per-process secret, so the exchange looks the same as for a real user (same salt for
 * the same name, every time) and fails only at the proof: the answer never says whether the user
 * exists. Channel binding is not offered: a gs2 header asking for it ("p=") is refused.
 */
import crypto from "node:crypto";
import { Buffer } from "node:buffer";
import type { AuthExchange, AuthStep } from "./auth.ts";
import { hmac, SCRAM_ITERATIONS, type ScramCredential, sameBytes, sha256 } from "./password-file.ts";

export const SCRAM_SHA_256 = "SCRAM-SHA-256";

/** A per-process secret for the salts of users that do not exist. */
const FAKE_SECRET = new Uint8Array(crypto.randomBytes(32));

const utf8 = new TextDecoder("utf-8", { fatal: true });
const text = (b: Uint8Array | undefined) => {
  try {
    return b === undefined ? undefined : utf8.decode(b);
  } catch {
    return undefined;
  }
};
const bytes = (s: string) => new TextEncoder().encode(s);
const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

/** saslname (RFC 5802 §5.1): "=2C" is ',' and "=3D" is '='; any other '=' is invalid. */
function saslName(s: string): string | undefined {
  if (/=(?!2C|3D)/.test(s)) return undefined;
  return s.replace(/=2C/g, ",").replace(/=3D/g, "=");
}

/** "a=1,b=2" -> Map; undefined when an attribute is not of the form x=value. */
function attributes(parts: string[]): Map<string, string> | undefined {
  const m = new Map<string, string>();
  for (const p of parts) {
    if (p.length < 2 || p[1] !== "=") return undefined;
    if (!m.has(p[0])) m.set(p[0], p.slice(2));
  }
  return m;
}

const fail = (reason: string): AuthStep => ({ kind: "failure", reason });

/**
 * One SCRAM-SHA-256 conversation. `lookup` gives the credential of a user (undefined: unknown
 * user or no SCRAM credential); `expectUser`, when set, is the only user name accepted (the
 * connection's own on re-authentication, or the CONNECT's User Name).
 */
export class ScramExchange implements AuthExchange {
  private state: "first" | "final" | "done" = "first";
  private user = "";
  private cred: ScramCredential | undefined;
  private firstBare = "";
  private serverFirst = "";
  private gs2 = "";
  private nonce = "";

  constructor(
    private readonly lookup: (user: string) => ScramCredential | undefined,
    private readonly expectUser?: string,
  ) {}

  step(data: Uint8Array | undefined): AuthStep {
    if (this.state === "first") return this.first(text(data));
    if (this.state === "final") return this.final(text(data));
    return fail("SCRAM exchange already finished");
  }

  private first(msg: string | undefined): AuthStep {
    this.state = "final";
    if (msg === undefined) return fail("SCRAM client-first-message missing or not UTF-8");
    const parts = msg.split(",");
    // gs2-header: "n" or "y" (no channel binding), an optional "a=" authzid, then the bare message
    if ((parts[0] !== "n" && parts[0] !== "y") || parts.length < 4) return fail("SCRAM client-first-message malformed or asks for channel binding");
    if (parts[1] !== "" && !parts[1].startsWith("a=")) return fail("SCRAM gs2 header malformed");
    const bare = parts.slice(2);
    if (bare[0].startsWith("m=")) return fail("SCRAM mandatory extension not supported");
    const a = attributes(bare);
    const name = a?.get("n") === undefined ? undefined : saslName(a.get("n")!);
    const cnonce = a?.get("r");
    if (!name || !cnonce || /[^\x21-\x2b\x2d-\x7e]/.test(cnonce)) return fail("SCRAM client-first-message without a valid user name or nonce");
    const authzid = parts[1] === "" ? undefined : saslName(parts[1].slice(2));
    if (authzid !== undefined && authzid !== name) return fail("SCRAM authorization identity differs from the user name");
    this.gs2 = `${parts[0]},${parts[1]},`;
    this.firstBare = bare.join(",");
    this.user = name;
    this.cred = this.expectUser !== undefined && this.expectUser !== name ? undefined : this.lookup(name);
    const salt = this.cred?.salt ?? hmac(FAKE_SECRET, bytes(name)).subarray(0, 16);
    const iterations = this.cred?.iterations ?? SCRAM_ITERATIONS;
    this.nonce = cnonce + b64(new Uint8Array(crypto.randomBytes(18)));
    this.serverFirst = `r=${this.nonce},s=${b64(salt)},i=${iterations}`;
    return { kind: "continue", data: bytes(this.serverFirst) };
  }

  private final(msg: string | undefined): AuthStep {
    this.state = "done";
    if (msg === undefined) return fail("SCRAM client-final-message missing or not UTF-8");
    const p = msg.lastIndexOf(",p=");
    if (p < 0) return fail("SCRAM client-final-message without a proof");
    const withoutProof = msg.slice(0, p);
    const a = attributes(withoutProof.split(","));
    const proof = Buffer.from(msg.slice(p + 3), "base64");
    if (!a || a.get("c") !== b64(bytes(this.gs2)) || a.get("r") !== this.nonce || proof.length !== 32) {
      return fail("SCRAM client-final-message does not continue this exchange");
    }
    const authMessage = `${this.firstBare},${this.serverFirst},${withoutProof}`;
    const cred = this.cred;
    // the same work whether or not the user exists
    const storedKey = cred?.storedKey ?? hmac(FAKE_SECRET, "stored key");
    const signature = hmac(storedKey, authMessage);
    const clientKey = new Uint8Array(32);
    for (let i = 0; i < 32; i++) clientKey[i] = proof[i] ^ signature[i];
    if (!sameBytes(sha256(clientKey), storedKey) || cred === undefined) return fail("SCRAM proof does not match");
    const serverSignature = hmac(cred.serverKey, authMessage);
    return { kind: "success", username: this.user, data: bytes(`v=${b64(serverSignature)}`) };
  }
}
