/**
 * Listeners as the broker opens them: each `--listen` URL (config.listen, completed by
 * resolveConfig) with its effective settings, the global options overridden by the URL's
 * query. Per-listener settings are the Config keys in `listenerOptions`; adding one there
 * (the auth work's allow-anonymous, password-file, acl-file) makes it settable both ways.
 */
import { checkListenUrl, type Config, ConfigError, flagName, type ListenerOption, listenerOptions } from "./config.ts";
import { authority, type Scheme } from "./listen-url.ts";

export type ListenerSettings = Pick<Config, ListenerOption>;

export interface ListenerSpec extends ListenerSettings {
  /** Normalized URL without the query: how logs and messages name the listener. */
  readonly name: string;
  readonly scheme: Scheme;
  readonly host: string;
  readonly port: number;
  /** WebSocket path ("" = any). */
  readonly path: string;
  readonly tls: boolean;
}

/** One spec per listener, checked; a ConfigError names the listener, the option and the fix. */
export function listenerSpecs(config: Config): ListenerSpec[] {
  const specs = config.listen.map((raw) => {
    const u = checkListenUrl(raw, "--listen");
    const settings = {} as Record<ListenerOption, unknown>;
    for (const k of listenerOptions) settings[k] = u.options[k] ?? config[k];
    // the global --proxy-protocol is for the TCP listeners; elsewhere only an explicit ?proxy-protocol counts (and is refused)
    if (u.scheme !== "mqtt") settings.proxyProtocol = u.options.proxyProtocol ?? false;
    const spec: ListenerSpec = {
      ...(settings as ListenerSettings),
      name: `${u.scheme}://${authority(u.host, u.port)}${u.path}`,
      scheme: u.scheme,
      host: u.host,
      port: u.port,
      path: u.path,
      tls: u.scheme === "mqtts" || u.scheme === "wss",
    };
    check(spec);
    return spec;
  });
  const seen = new Map<string, string>();
  for (const s of specs) {
    const key = authority(s.host, s.port);
    if (s.port !== 0 && seen.has(key)) {
      throw new ConfigError(`listeners ${seen.get(key)} and ${s.name} use the same address ${key}: give each its own port`);
    }
    seen.set(key, s.name);
  }
  return specs;
}

function check(s: ListenerSpec): void {
  const need = (what: ListenerOption, why: string) =>
    new ConfigError(`listener ${s.name} needs --${flagName(what)} ${why} (or ?${flagName(what)}=... in its URL)`);
  if (s.tls) {
    if (!s.certfile) throw need("certfile", "<file.pem>: the server certificate for TLS");
    if (!s.keyfile) throw need("keyfile", "<file.pem>: the private key of --certfile");
    if (s.requireCertificate && !s.cafile) throw need("cafile", "<ca.pem> with --require-certificate: the CA client certificates must chain to");
    if (s.useIdentityAsUsername && !s.requireCertificate) {
      throw need("requireCertificate", "with --use-identity-as-username: the identity comes from a verified client certificate");
    }
  }
  if (s.proxyProtocol && s.scheme !== "mqtt") {
    throw new ConfigError(
      `--proxy-protocol on ${s.name}: the PROXY protocol is supported on mqtt:// listeners only; ` +
        `terminate TLS in the proxy and forward plain TCP with send-proxy-v2, or remove ?proxy-protocol from this URL`,
    );
  }
}
