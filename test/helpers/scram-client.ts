/**
 * The client side of SCRAM-SHA-256 (RFC 5802 / RFC 7677), written from the RFC for the tests
 * (independent of src/auth/scram.ts, so that the two check each other).
 *
 *   const s = new ScramClient("alice", "secret");
 *   CONNECT authenticationData = s.first()
 *   AUTH 0x18 from the server -> s.final(serverFirst) -> AUTH 0x18 to the server
 *   CONNACK authenticationData -> s.verify(serverFinal) === true
 */
import { Buffer } from "node:buffer";
import crypto from "node:crypto";

const hmac = (key: Uint8Array, data: string) => crypto.createHmac("sha256", key).update(data).digest();

export class ScramClient {
  readonly nonce = crypto.randomBytes(18).toString("base64");
  private bare: string;
  private authMessage = "";
  private salted: Buffer | undefined;

  constructor(readonly user: string, readonly password: string) {
    this.bare = `n=${user.replace(/=/g, "=3D").replace(/,/g, "=2C")},r=${this.nonce}`;
  }

  first(): Buffer {
    return Buffer.from(`n,,${this.bare}`);
  }

  /** The attributes of a server-first-message. */
  static parse(msg: Uint8Array): Record<string, string> {
    return Object.fromEntries(Buffer.from(msg).toString().split(",").map((kv) => [kv[0], kv.slice(2)]));
  }

  final(serverFirst: Uint8Array): Buffer {
    const sf = Buffer.from(serverFirst).toString();
    const a = ScramClient.parse(serverFirst);
    if (!a.r.startsWith(this.nonce)) throw new Error(`server nonce ${a.r} does not extend ours`);
    this.salted = crypto.pbkdf2Sync(this.password.normalize("NFKC"), Buffer.from(a.s, "base64"), Number(a.i), 32, "sha256");
    const withoutProof = `c=${Buffer.from("n,,").toString("base64")},r=${a.r}`;
    this.authMessage = `${this.bare},${sf},${withoutProof}`;
    const clientKey = hmac(this.salted, "Client Key");
    const storedKey = crypto.createHash("sha256").update(clientKey).digest();
    const signature = hmac(storedKey, this.authMessage);
    const proof = Buffer.alloc(32);
    for (let i = 0; i < 32; i++) proof[i] = clientKey[i] ^ signature[i];
    return Buffer.from(`${withoutProof},p=${proof.toString("base64")}`);
  }

  /** Whether the server-final-message proves the server knows our credentials. */
  verify(serverFinal: Uint8Array | undefined): boolean {
    if (!serverFinal || !this.salted) return false;
    const expected = hmac(hmac(this.salted, "Server Key"), this.authMessage).toString("base64");
    return Buffer.from(serverFinal).toString() === `v=${expected}`;
  }
}
