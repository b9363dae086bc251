/**
 * A throwaway PKI made with the openssl command line in a temp directory, for TLS tests: a CA,
 * a server certificate for localhost / 127.0.0.1, a client certificate (CN device-42) signed by
 * the CA, and a client certificate from a second, untrusted CA. All X.509 v3 with the usual
 * extensions (rustls, under Deno, refuses v1 client certificates). P-256 keys: fast to make.
 *
 *   const pki = await makePki();   ...   pki.remove();
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { makeTempDir, removeDir, runCommand } from "./system.ts";

export interface Issued {
  cert: string;
  key: string;
}

export interface Pki {
  dir: string;
  /** CA certificate (PEM file): --cafile, and what clients trust. */
  ca: string;
  server: Issued;
  /** Signed by `ca`; CN device-42, SAN DNS:device-42.example. */
  client: Issued;
  /** Signed by another CA that the broker does not trust. */
  rogueClient: Issued;
  /** Issue one more certificate from this CA (e.g. a new server certificate to reload). */
  issue(name: string, subject: string, ext: string[]): Promise<Issued>;
  /** A new CA in the same directory, with its own server certificate for localhost. */
  newCa(name: string): Promise<{ ca: string; server: Issued }>;
  remove(): void;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  const r = await runCommand("openssl", args, { cwd: dir, timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`openssl ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
}

const KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

async function makeCa(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  await openssl(dir, [
    "req", "-x509", ...KEY, "-keyout", key, "-out", cert, "-days", "2", "-subj", `/CN=Colibri test ${name}`,
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  return { cert, key };
}

/** A random positive 64-bit serial number, in hex. */
function serial(): string {
  return "0x" + randomBytes(8).toString("hex").replace(/^./, (c) => (parseInt(c, 16) & 7).toString(16));
}

async function issueFrom(dir: string, ca: { cert: string; key: string }, name: string, subject: string, ext: string[]): Promise<Issued> {
  const key = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  const cert = path.join(dir, `${name}.crt`);
  const extFile = path.join(dir, `${name}.ext`);
  fs.writeFileSync(extFile, ["basicConstraints=CA:FALSE", ...ext].join("\n") + "\n");
  await openssl(dir, ["req", ...KEY, "-keyout", key, "-out", csr, "-subj", subject]);
  await openssl(dir, [
    // a random serial of its own: certificates are issued in parallel, and -CAcreateserial makes
    // them race on one serial file (one reads it while the other is still writing it)
    "x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-set_serial", serial(), "-out", cert, "-days", "2",
    "-extfile", extFile,
  ]);
  return { cert, key };
}

const SERVER_EXT = ["keyUsage=digitalSignature", "extendedKeyUsage=serverAuth", "subjectAltName=DNS:localhost,IP:127.0.0.1"];
const CLIENT_EXT = ["keyUsage=digitalSignature", "extendedKeyUsage=clientAuth"];

export async function makePki(): Promise<Pki> {
  const dir = makeTempDir("colibri-pki-");
  try {
    const ca = await makeCa(dir, "ca");
    const rogue = await makeCa(dir, "rogue-ca");
    const [server, client, rogueClient] = await Promise.all([
      issueFrom(dir, ca, "server", "/CN=localhost", SERVER_EXT),
      issueFrom(dir, ca, "client", "/CN=device-42", [...CLIENT_EXT, "subjectAltName=DNS:device-42.example"]),
      issueFrom(dir, rogue, "rogue-client", "/CN=intruder", CLIENT_EXT),
    ]);
    return {
      dir,
      ca: ca.cert,
      server,
      client,
      rogueClient,
      issue: (name, subject, ext) => issueFrom(dir, ca, name, subject, [...CLIENT_EXT, ...ext]),
      async newCa(name) {
        const other = await makeCa(dir, name);
        return { ca: other.cert, server: await issueFrom(dir, other, `${name}-server`, "/CN=localhost", SERVER_EXT) };
      },
      remove: () => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5 }),
    };
  } catch (e) {
    removeDir(dir);
    throw e;
  }
}

/** Overwrite `to`'s certificate and key files with `from`'s (a certificate rotation on disk). */
export function replaceFiles(to: Issued, from: Issued): void {
  fs.copyFileSync(from.cert, to.cert);
  fs.copyFileSync(from.key, to.key);
}
