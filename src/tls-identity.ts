/**
 * The identity of a verified client certificate (Connection.identity), from the certificate as
 * node:tls-style APIs describe it (Bun's socket.getPeerCertificate(), node:tls under Deno): the
 * subject CN, else the first subject alternative name (the value after "DNS:", "email:", ...).
 */
export interface PeerCertificateInfo {
  subject?: { CN?: string | string[] } | null;
  subjectaltname?: string;
}

export function certificateIdentity(cert: PeerCertificateInfo | null | undefined): string | undefined {
  if (!cert) return undefined;
  const cn = cert.subject?.CN;
  const first = Array.isArray(cn) ? cn[0] : cn;
  if (first) return first;
  const san = cert.subjectaltname?.split(",")[0]?.trim();
  if (!san) return undefined;
  const colon = san.indexOf(":");
  return colon >= 0 ? san.slice(colon + 1) : san;
}
