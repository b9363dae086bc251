/**
 * PROXY protocol v1 (text) and v2 (binary), as HAProxy sends it with `send-proxy` /
 * `send-proxy-v2`: the proxy opens the connection to the broker and writes one header naming
 * the client it relays before any client byte. A listener with it enabled reads that header
 * first and shows the core the client's address (Connection.remote); a connection whose first
 * bytes are not a valid header is closed — anything that reaches the port directly, bypassing
 * the proxy, would otherwise be able to claim any address.
 *
 * Runtime-agnostic: it wraps the Acceptor of any byte-stream listener (main.ts does it for
 * mqtt:// listeners with --proxy-protocol). The connection is handed to the core at once, so
 * the core's CONNECT timeout also bounds a peer that never completes its header.
 */
import type { Acceptor, Connection, ConnectionEvents } from "./transport.ts";
import type { Logger } from "./log.ts";

export type Address = { address: string; port: number };

/** A complete header: its length, and the client it names (absent: keep the socket's peer). */
export interface ProxyHeader {
  length: number;
  source?: Address;
}

export class ProxyHeaderError extends Error {}

const V2_SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
const V1_PREFIX = [0x50, 0x52, 0x4f, 0x58, 0x59, 0x20]; // "PROXY "
/** A v1 line is at most 107 bytes, CRLF included. */
const V1_MAX = 107;

/**
 * The header at the start of `b`: undefined while it is incomplete, a ProxyHeaderError as soon
 * as the bytes cannot be one.
 */
export function parseProxyHeader(b: Uint8Array): ProxyHeader | undefined {
  if (b.length === 0) return undefined;
  if (b[0] === V2_SIGNATURE[0]) return parseV2(b);
  if (b[0] === V1_PREFIX[0]) return parseV1(b);
  throw new ProxyHeaderError("no PROXY protocol header (the connection did not come through the proxy)");
}

function expectPrefix(b: Uint8Array, prefix: number[], what: string): boolean {
  const n = Math.min(b.length, prefix.length);
  for (let i = 0; i < n; i++) if (b[i] !== prefix[i]) throw new ProxyHeaderError(`not a PROXY protocol ${what} header`);
  return b.length >= prefix.length;
}

function parseV2(b: Uint8Array): ProxyHeader | undefined {
  if (!expectPrefix(b, V2_SIGNATURE, "v2") || b.length < 16) return undefined;
  const version = b[12] >> 4;
  const command = b[12] & 0x0f;
  if (version !== 2) throw new ProxyHeaderError(`PROXY protocol v2 header with version ${version}`);
  if (command > 1) throw new ProxyHeaderError(`PROXY protocol v2 header with command ${command}`);
  const length = 16 + ((b[14] << 8) | b[15]);
  if (b.length < length) return undefined;
  // LOCAL (health checks by the proxy itself): the socket's own peer is the truth
  if (command === 0) return { length };
  const family = b[13] >> 4;
  const body = b.subarray(16, length);
  if (family === 1) { // AF_INET: src addr, dst addr (4 each), src port, dst port
    if (body.length < 12) throw new ProxyHeaderError(`PROXY protocol v2 IPv4 block of ${body.length} bytes`);
    return { length, source: { address: Array.from(body.subarray(0, 4)).join("."), port: (body[8] << 8) | body[9] } };
  }
  if (family === 2) { // AF_INET6: 16 + 16 + 2 + 2
    if (body.length < 36) throw new ProxyHeaderError(`PROXY protocol v2 IPv6 block of ${body.length} bytes`);
    return { length, source: { address: formatIPv6(body.subarray(0, 16)), port: (body[32] << 8) | body[33] } };
  }
  // AF_UNSPEC or AF_UNIX: no IP address to show; keep the socket's peer
  return { length };
}

function parseV1(b: Uint8Array): ProxyHeader | undefined {
  if (!expectPrefix(b, V1_PREFIX, "v1")) return undefined;
  let end = -1;
  for (let i = V1_PREFIX.length; i < Math.min(b.length, V1_MAX); i++) {
    if (b[i] === 0x0a) {
      end = i;
      break;
    }
  }
  if (end < 0) {
    if (b.length >= V1_MAX) throw new ProxyHeaderError(`PROXY protocol v1 line longer than ${V1_MAX} bytes`);
    return undefined;
  }
  if (b[end - 1] !== 0x0d) throw new ProxyHeaderError("PROXY protocol v1 line does not end with CRLF");
  const line = String.fromCharCode(...b.subarray(0, end - 1));
  const length = end + 1;
  const parts = line.split(" ");
  if (parts[1] === "UNKNOWN") return { length }; // the proxy could not tell: keep the socket's peer
  if (parts.length !== 6 || (parts[1] !== "TCP4" && parts[1] !== "TCP6")) {
    throw new ProxyHeaderError(`malformed PROXY protocol v1 line ${JSON.stringify(line)}`);
  }
  const [, proto, src, dst, sport, dport] = parts;
  const isAddress = proto === "TCP4" ? isIPv4 : isIPv6;
  if (!isAddress(src) || !isAddress(dst) || !isPort(sport) || !isPort(dport)) {
    throw new ProxyHeaderError(`malformed PROXY protocol v1 line ${JSON.stringify(line)}`);
  }
  return { length, source: { address: src, port: Number(sport) } };
}

function isIPv4(s: string): boolean {
  const p = s.split(".");
  return p.length === 4 && p.every((x) => /^\d{1,3}$/.test(x) && Number(x) <= 255);
}

function isIPv6(s: string): boolean {
  return s.includes(":") && /^[0-9a-fA-F:.]{2,45}$/.test(s);
}

function isPort(s: string): boolean {
  return /^\d{1,5}$/.test(s) && Number(s) <= 65535;
}

/** RFC 5952 text: lower case, the longest run of zero groups as "::"; IPv4-mapped as ::ffff:a.b.c.d. */
export function formatIPv6(b: Uint8Array): string {
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((b[i] << 8) | b[i + 1]);
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  let best = -1;
  let bestLen = 1; // a single zero group is not shortened
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/**
 * The acceptor of a listener with the PROXY protocol: the core gets the connection at once,
 * with `remote` the proxy's peer until the header names the client; no byte reaches the core
 * before the header is complete, and a connection without a valid header is closed.
 */
export function withProxyProtocol(inner: Acceptor, log: Logger, listener: string): Acceptor {
  return {
    accept(conn: Connection): ConnectionEvents {
      let client: Address | undefined;
      const proxied: Connection = {
        get remote() {
          return client ?? conn.remote;
        },
        get identity() {
          return conn.identity;
        },
        get bufferedAmount() {
          return conn.bufferedAmount;
        },
        write: (bytes) => conn.write(bytes),
        close: () => conn.close(),
        pauseReading: () => conn.pauseReading?.(),
        resumeReading: () => conn.resumeReading?.(),
      };
      const events = inner.accept(proxied);
      let header: Uint8Array | undefined = new Uint8Array(0); // bytes of the header so far; undefined once read
      let refused = false;
      return {
        data(bytes) {
          if (header === undefined) return events.data(bytes);
          if (refused) return;
          let buf = bytes;
          if (header.length > 0) {
            buf = new Uint8Array(header.length + bytes.length);
            buf.set(header);
            buf.set(bytes, header.length);
          }
          let h: ProxyHeader | undefined;
          try {
            h = parseProxyHeader(buf);
          } catch (e) {
            log.warn("connection refused: invalid PROXY protocol header", {
              listener, remote: conn.remote.address, why: (e as Error).message,
            });
            refused = true;
            conn.close();
            return;
          }
          if (h === undefined) {
            header = buf;
            return;
          }
          header = undefined;
          client = h.source;
          if (buf.length > h.length) events.data(buf.subarray(h.length));
        },
        drain: () => events.drain(),
        close: (err) => events.close(err),
      };
    },
  };
}
