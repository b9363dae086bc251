/**
 * The HTTP side of an MQTT-over-WebSocket listener, shared by the Bun and Deno adapters: which
 * requests are upgraded, with which subprotocol, and the clear 4xx the others get. The framing
 * after the upgrade is Bun.serve's under Bun and src/websocket-frames.ts under Deno; MQTT
 * packets then flow as a byte stream through the core's framer.
 */
export type UpgradeDecision =
  | { upgrade: true; protocol: "mqtt" | "mqttv3.1" }
  | { upgrade: false; status: number; body: string; headers: Record<string, string> };

const refuse = (status: number, body: string, headers: Record<string, string> = {}): UpgradeDecision => ({
  upgrade: false,
  status,
  body: body + "\n",
  headers: { "content-type": "text/plain; charset=utf-8", ...headers },
});

/** `path` is the listener's path ("" = any). */
export function decideUpgrade(
  method: string,
  pathname: string,
  header: (name: string) => string | null,
  path: string,
): UpgradeDecision {
  if (path !== "" && pathname !== path) {
    return refuse(404, `no MQTT WebSocket endpoint at ${pathname}: connect to ${path}`);
  }
  const upgrade = (header("upgrade") ?? "").toLowerCase();
  if (upgrade !== "websocket") {
    return refuse(
      426,
      "this is an MQTT over WebSocket endpoint: connect with an MQTT client over WebSocket (subprotocol mqtt)",
      { upgrade: "websocket" },
    );
  }
  if (method !== "GET") return refuse(405, `a WebSocket upgrade is a GET request, not ${method}`, { allow: "GET" });
  const offered = (header("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim().toLowerCase());
  // [MQTT-6.0.0-3] the client offers "mqtt"; [MQTT-6.0.0-4] the server selects "mqtt".
  // "mqttv3.1" is what MQTT 3.1 clients (MQIsdp) offer instead.
  if (offered.includes("mqtt")) return { upgrade: true, protocol: "mqtt" };
  if (offered.includes("mqttv3.1")) return { upgrade: true, protocol: "mqttv3.1" };
  return refuse(400, "offer the WebSocket subprotocol mqtt (Sec-WebSocket-Protocol: mqtt; MQTT 3.1 clients: mqttv3.1)");
}
