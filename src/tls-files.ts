/**
 * The PEM files of a TLS listener (--certfile, --keyfile, --cafile), read and checked before a
 * runtime sees them, so that a wrong file is refused with a message that names the option, the
 * file and the fix instead of a TLS library error (at start: exit; on SIGHUP: logged, the old
 * certificate stays).
 */
import { readFileSync } from "node:fs";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { ConfigError } from "./config.ts";
import type { ListenerSpec } from "./listener-spec.ts";
import type { TlsMaterial } from "./transport.ts";

type Read = (path: string) => string;

export function loadTlsMaterial(spec: ListenerSpec, read: Read = (p) => readFileSync(p, "utf8")): TlsMaterial {
  const file = (option: string, path: string): string => {
    try {
      return read(path);
    } catch (e) {
      throw new ConfigError(
        `cannot read ${option} ${JSON.stringify(path)} (listener ${spec.name}): ${(e as Error).message}; give the path of a readable PEM file`,
      );
    }
  };
  const certificate = (option: string, path: string, pem: string, what: string): X509Certificate => {
    try {
      return new X509Certificate(pem);
    } catch (e) {
      throw new ConfigError(
        `${option} ${JSON.stringify(path)} (listener ${spec.name}) is not a PEM certificate (${(e as Error).message}); ` +
          `give ${what} in PEM format (-----BEGIN CERTIFICATE-----)`,
      );
    }
  };
  const cert = file("--certfile", spec.certfile);
  const x509 = certificate("--certfile", spec.certfile, cert, "the server certificate");
  const key = file("--keyfile", spec.keyfile);
  let matches: boolean;
  try {
    matches = x509.checkPrivateKey(createPrivateKey(key));
  } catch (e) {
    throw new ConfigError(
      `--keyfile ${JSON.stringify(spec.keyfile)} (listener ${spec.name}) is not a PEM private key (${(e as Error).message}); ` +
        "give the unencrypted private key in PEM format (-----BEGIN PRIVATE KEY-----)",
    );
  }
  if (!matches) {
    throw new ConfigError(
      `--keyfile ${JSON.stringify(spec.keyfile)} is not the key of --certfile ${JSON.stringify(spec.certfile)} ` +
        `(listener ${spec.name}); give the private key the certificate was issued for`,
    );
  }
  let ca: string | undefined;
  if (spec.cafile) {
    ca = file("--cafile", spec.cafile);
    certificate("--cafile", spec.cafile, ca, "the CA certificate(s) that sign client certificates");
  }
  return { cert, key, ca, requireCertificate: spec.requireCertificate };
}
